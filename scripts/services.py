"""Run a command against a throwaway PostgreSQL and Redis on 127.0.0.1.

    .venv/bin/python scripts/services.py [--workdir DIR] -- COMMAND [ARG...]

Starts both servers on free ports with their data in a new temporary directory, runs COMMAND with
DATABASE_URL and REDIS_URL added to its environment, then stops the servers and removes their data,
whatever happened. The exit code is COMMAND's, or EXIT_UNAVAILABLE (75) when a server could not be
started, so that a caller can tell "no PostgreSQL/Redis here" from "the tests failed".

The servers are driven by the executors of pytest-postgresql and pytest-redis. The PostgreSQL
superuser is `postgres` with trust authentication on loopback (no password), so Django's test
runner can create and drop its `test_` database. Environment: PG_CTL and REDIS_SERVER override the
binaries; DEERFLOW_PG_OS_USER is the OS account PostgreSQL runs as when we are root.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import port_for
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor
from pytest_redis.executor import RedisExecutor

EXIT_UNAVAILABLE = 75  # EX_TEMPFAIL
HOST = "127.0.0.1"
DB_NAME = "deerflow"
DB_USER = "postgres"
PREFERRED_PG_MAJOR = "15"
# A throwaway cluster needs no durability; skipping fsync makes migrations and flushes much faster.
POSTGRES_OPTIONS = (
    f"-c listen_addresses={HOST} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
)
START_TIMEOUT = 60


class Unavailable(Exception):
    """A server could not be found or started."""


def log(message: str) -> None:
    print(f"services: {message}", file=sys.stderr, flush=True)


def find_pg_ctl() -> str:
    if os.environ.get("PG_CTL"):
        explicit = shutil.which(os.environ["PG_CTL"])
        if not explicit:
            raise Unavailable(f"PG_CTL={os.environ['PG_CTL']} is not an executable")
        return explicit
    # Debian keeps each major version's server binaries off PATH, under /usr/lib/postgresql/N/bin.
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda path: (path.parts[-3] == PREFERRED_PG_MAJOR, path.parts[-3].zfill(4)),
    )
    if installed:
        return str(installed[-1])
    on_path = shutil.which("pg_ctl")
    if on_path:
        return on_path
    raise Unavailable("pg_ctl not found (Debian: apt-get install postgresql)")


def find_redis_server() -> str:
    found = shutil.which(os.environ.get("REDIS_SERVER") or "redis-server")
    if not found:
        raise Unavailable("redis-server not found (Debian: apt-get install redis-server)")
    return found


def pg_ctl_as_unprivileged_user(pg_ctl: str, pg_dir: Path) -> str:
    """Return a pg_ctl that PostgreSQLExecutor can run from here.

    initdb and postgres refuse to run as root. PostgreSQLExecutor runs every pg_ctl command
    itself (initdb, start, status, stop) through the one executable it is given, so when we are
    root we give it a tiny shell wrapper that re-runs the real pg_ctl as an unprivileged OS user
    (`postgres`, via runuser), and hand pg_dir (data, socket and log) to that user. The
    environment passes through runuser, so mirakuru's marker variable still finds the server.
    """
    if os.geteuid() != 0:
        return pg_ctl
    os_user = os.environ.get("DEERFLOW_PG_OS_USER", "postgres")
    try:
        account = pwd.getpwnam(os_user)
    except KeyError as exc:
        raise Unavailable(
            f"running as root, and there is no {os_user!r} OS user to run PostgreSQL as"
        ) from exc
    runuser = shutil.which("runuser")
    if runuser is None:
        raise Unavailable("running as root, and runuser (util-linux) is missing")
    os.chown(pg_dir, account.pw_uid, account.pw_gid)
    pg_dir.parent.chmod(0o711)  # mkdtemp made it 0700: let that user reach pg_dir
    wrapper = pg_dir.parent / "pg_ctl"
    wrapper.write_text(
        "#!/bin/sh\n"
        "cd / || exit 1\n"  # the caller's directory may be unreadable for that user
        f'exec {runuser} -u {shlex.quote(os_user)} -- {shlex.quote(pg_ctl)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def start_postgres(workdir: Path, port: int, pg_ctl: str) -> tuple[PostgreSQLExecutor, str]:
    pg_dir = workdir / "pg"
    pg_dir.mkdir()
    executor = PostgreSQLExecutor(
        executable=pg_ctl_as_unprivileged_user(pg_ctl, pg_dir),
        host=HOST,
        port=port,
        datadir=str(pg_dir / "data"),
        unixsocketdir=str(pg_dir),
        logfile=str(pg_dir / "postgresql.log"),
        startparams="-w",
        dbname=DB_NAME,
        user=DB_USER,
        postgres_options=POSTGRES_OPTIONS,
        timeout=START_TIMEOUT,
    )
    try:
        executor.start()
        DatabaseJanitor(user=DB_USER, host=HOST, port=port, dbname=DB_NAME).init()
    except Exception as exc:
        logfile = Path(executor.logfile)
        if logfile.exists():
            sys.stderr.write(logfile.read_text(errors="replace")[-4000:])
        if executor.running():
            stop_quietly("PostgreSQL", executor.stop)
        raise Unavailable(f"PostgreSQL did not start: {exc!r}") from exc
    log(f"PostgreSQL {executor.version} on {HOST}:{port}, data in {pg_dir}")
    return executor, f"postgres://{DB_USER}@{HOST}:{port}/{DB_NAME}"


def start_redis(workdir: Path, port: int, redis_server: str) -> tuple[RedisExecutor, str]:
    redis_dir = workdir / "redis"
    redis_dir.mkdir()
    executor = RedisExecutor(
        executable=redis_server,
        databases=16,
        redis_timeout=0,  # never drop idle clients
        loglevel="notice",
        host=HOST,
        port=port,
        datadir=redis_dir,
        startup_timeout=START_TIMEOUT,
        save='""',  # no snapshots: a throwaway server, and shutdown never waits on a save
    )
    try:
        executor.start()
    except Exception as exc:
        stop_quietly("Redis", executor.stop)
        raise Unavailable(f"Redis did not start: {exc!r}") from exc
    log(f"Redis {executor.version} on {HOST}:{port}, data in {redis_dir}")
    return executor, f"redis://{HOST}:{port}/0"


def stop_quietly(name: str, stop: Callable[[], object]) -> None:
    try:
        stop()
    except Exception as exc:  # keep going: the other server must be stopped too
        log(f"stopping {name} failed: {exc!r}")


def run_command(command: list[str], env: dict[str, str]) -> int:
    """Run command to its end; a SIGTERM or SIGHUP sent to us is passed on to it."""
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    while True:
        try:
            returncode = child.wait()
            break
        except KeyboardInterrupt:
            # Ctrl-C reached the child too (same process group): let it finish its teardown.
            continue
    return 128 - returncode if returncode < 0 else returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir", type=Path, help="where to make the temporary directory (default: TMPDIR)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")

    # SIGTERM before the command runs: unwind through the finally below.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="services-", dir=args.workdir))
    postgres: PostgreSQLExecutor | None = None
    redis: RedisExecutor | None = None
    try:
        pg_port = port_for.select_random()
        redis_port = port_for.select_random(exclude_ports=[pg_port])
        try:
            pg_ctl, redis_server = find_pg_ctl(), find_redis_server()
            postgres, database_url = start_postgres(workdir, pg_port, pg_ctl)
            redis, redis_url = start_redis(workdir, redis_port, redis_server)
        except Unavailable as exc:
            log(str(exc))
            return EXIT_UNAVAILABLE
        log(f"DATABASE_URL={database_url}")
        log(f"REDIS_URL={redis_url}")
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
        return run_command(command, env)
    finally:
        if redis is not None:
            stop_quietly("Redis", redis.stop)
        if postgres is not None:
            stop_quietly("PostgreSQL", postgres.stop)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
