"""Aegra (`aegra-api` from PyPI, FastAPI on PostgreSQL), the open peer, as a server under test.

Aegra needs Python >= 3.12 and so lives in its own venv, bench/.venv-aegra, from the pins in
bench/requirements-aegra.txt. It is started as `aegra serve` starts it (uvicorn on
`aegra_api.main:app`, no reload), with AUTH_TYPE=noop, on a throwaway PostgreSQL from
scripts/services.py, serving bench/langgraph.json. Without Redis (REDIS_BROKER_ENABLED=false) it
runs every run as an asyncio task in its one process: its single-instance layout. It applies its
own migrations (alembic) at start-up.

When no Python >= 3.12 is found, `prepare` raises ServerSkipped with where it looked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from servers import (
    BENCH_DIR,
    HOST,
    LANGGRAPH_CONFIG,
    REFERENCE_ENV,
    Server,
    ServerError,
    _spawn,
    _stop,
    _wait_ready,
    free_port,
    log,
)

AEGRA_VENV = BENCH_DIR / ".venv-aegra"
AEGRA_REQUIREMENTS = BENCH_DIR / "requirements-aegra.txt"
MIN_PYTHON = (3, 12)
#: Interpreter names tried on PATH, in order (3.12 first: the version Aegra is built on).
PYTHON_NAMES = ("python3.12", "python3.13", "python3.14")
INSTALL_TIMEOUT = 900.0


class ServerSkipped(RuntimeError):
    """A server cannot run on this machine (the reason is the message); the others go on."""


def _usable(python: str) -> bool:
    """Whether `python` runs, is >= MIN_PYTHON, and can make a venv with pip."""
    check = f"import sys, venv, ensurepip; print(sys.version_info[:2] >= {MIN_PYTHON!r})"
    try:
        out = subprocess.run(
            [python, "-c", check], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == "True"


def _candidates() -> Iterator[str]:
    for name in PYTHON_NAMES:
        found = shutil.which(name)
        if found:
            yield found
    roots = [Path.home() / ".pyenv"]
    pyenv = shutil.which("pyenv")
    if pyenv:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0 and out.stdout.strip():
                roots.insert(0, Path(out.stdout.strip()))
    for root in roots:
        versions = sorted((root / "versions").glob("3.1[2-9]*/bin/python3"))
        yield from (str(v) for v in versions)
    uv = shutil.which("uv")
    if uv:  # finds installed interpreters only: it downloads nothing
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [uv, "python", "find", "--no-python-downloads", ">=3.12"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if out.returncode == 0 and out.stdout.strip():
                yield out.stdout.strip()


def find_python(explicit: str | None) -> str:
    """A Python >= 3.12 to build the Aegra venv with: `explicit`, else the first usable of
    python3.12/3.13/3.14 on PATH, pyenv's versions, and `uv python find`.

    Raises ServerSkipped naming where it looked when there is none.
    """
    if explicit:
        if _usable(explicit):
            return explicit
        raise ServerSkipped(f"--aegra-python {explicit} is not a Python >= 3.12 with venv")
    tried = []
    for candidate in _candidates():
        if _usable(candidate):
            return candidate
        tried.append(candidate)
    raise ServerSkipped(
        "no Python >= 3.12 found (Aegra needs one): looked for "
        f"{', '.join(PYTHON_NAMES)} on PATH, pyenv versions and `uv python find`"
        + (f"; unusable: {', '.join(tried)}" if tried else "")
        + ". Install one, or pass --aegra-python PATH"
    )


def prepare(explicit_python: str | None) -> Path:
    """bench/.venv-aegra made (or kept, when its interpreter and pins are unchanged); its python."""
    python = find_python(explicit_python)
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True
    ).stdout
    wanted = hashlib.sha256((version + AEGRA_REQUIREMENTS.read_text()).encode()).hexdigest()
    stamp = AEGRA_VENV / ".bench-stamp"
    venv_python = AEGRA_VENV / "bin" / "python"
    if stamp.exists() and stamp.read_text().strip() == wanted and venv_python.exists():
        return venv_python
    log(f"aegra: installing {AEGRA_REQUIREMENTS.name} into {AEGRA_VENV} with {python}")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    for command in (
        [python, "-m", "venv", "--clear", str(AEGRA_VENV)],
        [str(venv_python), "-m", "pip", "install", "--quiet", "-r", str(AEGRA_REQUIREMENTS)],
    ):
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT
        )
        if done.returncode != 0:
            raise ServerError(
                f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
    stamp.write_text(wanted + "\n")
    return venv_python


def versions() -> dict[str, str]:
    """Versions of Aegra and of the langgraph it runs, when its venv exists."""
    python = AEGRA_VENV / "bin" / "python"
    if not python.exists():
        return {}
    script = (
        "import json, sys, platform; from importlib.metadata import version; "
        "print(json.dumps({'python': platform.python_version(), "
        "**{n: version(n) for n in sys.argv[1:]}}))"
    )
    names = ["aegra-api", "langgraph", "langgraph-checkpoint-postgres", "uvicorn"]
    out = subprocess.run([str(python), "-c", script, *names], capture_output=True, text=True)
    with contextlib.suppress(ValueError):
        return json.loads(out.stdout)
    return {}


def _env(database_url: str, port: int) -> dict[str, str]:
    """A clean environment: nothing of the caller's shell reaches Aegra's settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.update(REFERENCE_ENV)  # no tracing, no analytics: loopback only
    env.update(
        AUTH_TYPE="noop",
        ENV_MODE="LOCAL",
        DATABASE_URL=database_url,
        REDIS_BROKER_ENABLED="false",
        AEGRA_CONFIG=str(LANGGRAPH_CONFIG),
        HOST=HOST,
        PORT=str(port),
        OTEL_TARGETS="",
        ENABLE_PROMETHEUS_METRICS="false",
    )
    return env


@contextlib.contextmanager
def aegra_server(workdir: Path, *, python: Path, database_url: str) -> Iterator[Server]:
    """Aegra on HOST:<free port>, ready (GET /ready is 200: database and checkpointer up)."""
    home = workdir / "aegra"
    home.mkdir()
    logfile = workdir / "aegra.log"
    port = free_port()
    command = [
        str(python), "-m", "uvicorn", "aegra_api.main:app", "--host", HOST, "--port", str(port),
    ]  # fmt: skip
    process = _spawn(command, cwd=home, env=_env(database_url, port), logfile=logfile)
    try:
        base_url = f"http://{HOST}:{port}"
        _wait_ready(f"{base_url}/ready", [process], logfile)
        yield Server(
            name="aegra",
            description="Aegra (uvicorn, local executor: runs as asyncio tasks), PostgreSQL",
            base_url=base_url,
            web=process,
            logs=[logfile],
        )
    finally:
        _stop(process)
