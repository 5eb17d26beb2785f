"""The embedded install as a newcomer meets it: `scripts/serve`, then `manage.py` with nothing
exported, and the secret key that makes that work only where it is safe."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live import REPO_ROOT, _free_port, spawn

# Variables a newcomer has not set: the test process's own settings must not leak into theirs.
NOT_EXPORTED = ("SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "DJANGO_")
NOT_EXPORTED_PREFIXES = ("DEERFLOW_", "CORS_", "CSRF_")


def newcomer_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any of the server's settings, the var dir moved."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(NOT_EXPORTED + NOT_EXPORTED_PREFIXES)
    }
    return {**env, "DEERFLOW_VAR_DIR": str(var_dir), "PYTHONUNBUFFERED": "1", **extra}


def import_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Import the real settings in a fresh interpreter; prints SECRET_KEY."""
    return subprocess.run(
        [sys.executable, "-c", "from deerflow_site import settings; print(settings.SECRET_KEY)"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def var_dir_with_key(tmp_path: Path) -> Path:
    """A var dir holding the key file `scripts/serve` makes."""
    (tmp_path / "secret_key").write_text("key-made-by-scripts-serve\n")
    return tmp_path


def test_embedded_install_reads_the_key_scripts_serve_made(var_dir_with_key):
    result = import_settings(newcomer_env(var_dir_with_key))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "key-made-by-scripts-serve"


def test_an_exported_secret_key_wins_over_the_key_file(var_dir_with_key):
    result = import_settings(newcomer_env(var_dir_with_key, SECRET_KEY="exported"))
    assert result.stdout.strip() == "exported", result.stderr


@pytest.mark.parametrize(
    "deployment",
    [
        {"DATABASE_URL": "postgres://deerflow@db.invalid:5432/deerflow"},
        {"REDIS_URL": "redis://redis.invalid:6379/0"},
    ],
    ids=["postgresql", "redis"],
)
def test_a_deployment_without_secret_key_is_refused_even_with_a_key_file(
    var_dir_with_key, deployment
):
    result = import_settings(newcomer_env(var_dir_with_key, **deployment))
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_embedded_install_without_a_key_file_is_refused_and_says_where_the_key_goes(tmp_path):
    result = import_settings(newcomer_env(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
    assert "scripts/serve" in result.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, list[str]]]:
    """`scripts/serve` as a newcomer runs it, in token mode as when other machines call it.

    Yields (site URL, var dir, the lines it printed before daphne started).
    """
    tmp_path = tmp_path_factory.mktemp("serve")
    port = _free_port()
    site = f"http://127.0.0.1:{port}"
    with serving(tmp_path, site, PORT=str(port), DEERFLOW_AUTH_MODE="token") as lines:
        yield site, tmp_path / "var", lines


@contextlib.contextmanager
def serving(tmp_path: Path, site: str, **extra: str) -> Iterator[list[str]]:
    """`scripts/serve` run with `extra` in a newcomer's environment (its var dir under
    `tmp_path`), once `site` answers: the lines it printed until then."""
    env = newcomer_env(tmp_path / "var", **extra)
    log_path = tmp_path / "serve.log"
    process = spawn(["bash", "scripts/serve"], env=env, log_path=log_path, new_session=True)
    try:
        _wait_for_ok(site, process, log_path)
        yield log_path.read_text().splitlines()
    finally:
        process.terminate()
        process.wait(10)


def _wait_for_ok(site: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        for _ in range(900):  # about 90 s: the first migrate on two busy cores is slow
            if process.poll() is not None:
                pytest.fail(f"scripts/serve exited {process.returncode}:\n{log_path.read_text()}")
            try:
                if client.get(site + "/api/ok").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            process_wait(process, 0.1)
    pytest.fail(f"scripts/serve never answered:\n{log_path.read_text()}")


def process_wait(process: subprocess.Popen[bytes], seconds: float) -> None:
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        pass


@pytest.mark.live
def test_scripts_serve_prints_the_urls_it_serves(served):
    site, _, lines = served
    printed = "\n".join(lines)
    for url in (
        f"{site}/",
        f"{site}/playground/",
        f"{site}/api",
        f"{site}/api/docs",
        f"{site}/admin/",
    ):
        assert re.search(rf"\s{re.escape(url)}(\s|$)", printed), printed


@pytest.mark.live
@pytest.mark.parametrize(("bind", "reachable"), [("0.0.0.0", "127.0.0.1"), ("::", "[::1]")])
def test_scripts_serve_links_a_reachable_address_for_a_wildcard_bind(tmp_path, bind, reachable):
    """A wildcard bind (`HOST=0.0.0.0` or `::`, every interface) is no address a browser can
    open: the links name the loopback address of its family, which answers."""
    port = _free_port()
    site = f"http://{reachable}:{port}"
    with serving(tmp_path, site, HOST=bind, PORT=str(port), DEERFLOW_AUTH_MODE="token") as lines:
        printed = "\n".join(lines)
    links = re.findall(r"http://\S+", printed)
    assert f"{site}/playground/" in links, printed
    assert all(link.startswith(f"{site}/") or link == site for link in links), printed


@pytest.mark.live
def test_manage_py_works_beside_scripts_serve_with_nothing_exported(served):
    site, var_dir, _ = served
    env = newcomer_env(var_dir, DJANGO_SUPERUSER_PASSWORD="a-long-admin-password-1")

    def manage(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    token = manage("drf_create_token", "admin").split()[2]
    with httpx.Client(base_url=site, trust_env=False) as client:
        assert client.post("/api/threads/count", json={}).status_code == 401
        answer = client.post(
            "/api/threads/count", json={}, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 200, answer.text


@pytest.mark.live
def test_scripts_serve_on_a_taken_port_says_so_and_exits_without_announcing(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            ["bash", "scripts/serve"],
            cwd=REPO_ROOT,
            env=newcomer_env(tmp_path / "var", PORT=str(port)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    assert result.returncode != 0
    assert "serving on" not in result.stdout
    [said] = [line for line in result.stderr.splitlines() if str(port) in line]
    assert said.startswith("Not serving:") and "in use" in said, result.stderr
