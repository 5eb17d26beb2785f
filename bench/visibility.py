"""Thread visibility, measured: the ways to write "threads this user may view" on many threads.

    .venv/bin/python bench/visibility.py                     # SQLite and PostgreSQL
    .venv/bin/python bench/visibility.py --databases sqlite --threads 20000

Seeds `--threads` threads over `--users` owners (each with the owner's three guardian rows, as
the server writes them), shares `--shared` threads of others with the measured user directly
and as many through a group of theirs, then times each variant (median of `--repeat` runs, in
ms) for: the newest page of 20 visible threads, their count, and one thread by id. Prints a
table; the variants are the statements, not the server (no HTTP).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

USER_PERMS = "threads_threaduserobjectpermission"
GROUP_PERMS = "threads_threadgroupobjectpermission"
MEMBERS = "auth_user_groups"
VIEW = """(SELECT p.id FROM auth_permission p JOIN django_content_type c ON c.id = p.content_type_id
          WHERE c.app_label = 'threads' AND p.codename = 'view_thread')"""
BY_USER_IN = (
    f"SELECT content_object_id FROM {USER_PERMS} WHERE user_id = %(u)s AND permission_id = {VIEW}"
)
BY_GROUP_IN = f"""SELECT g.content_object_id FROM {GROUP_PERMS} g JOIN {MEMBERS} m
    ON m.group_id = g.group_id WHERE m.user_id = %(u)s AND g.permission_id = {VIEW}"""
EXISTS_USER = f"""EXISTS (SELECT 1 FROM {USER_PERMS} u WHERE u.content_object_id = t.thread_id
    AND u.user_id = %(u)s AND u.permission_id = {VIEW})"""
EXISTS_GROUP = f"""EXISTS (SELECT 1 FROM {GROUP_PERMS} g JOIN {MEMBERS} m ON m.group_id = g.group_id
    WHERE g.content_object_id = t.thread_id AND m.user_id = %(u)s AND g.permission_id = {VIEW})"""

#: name → the WHERE condition on `t` (threads_thread), or a full id subquery for UNION.
CONDITIONS = {
    "guardian rows only (IN), before": f"t.thread_id IN ({BY_USER_IN})"
    f" OR t.thread_id IN ({BY_GROUP_IN})",
    "owner OR IN (shares), chosen for lists": f"t.owner_id = %(u)s OR t.thread_id IN ({BY_USER_IN})"
    f" OR t.thread_id IN ({BY_GROUP_IN})",
    "owner OR EXISTS (shares)": f"t.owner_id = %(u)s OR {EXISTS_USER} OR {EXISTS_GROUP}",
    "UNION of owner, user shares, group shares": f"""t.thread_id IN (
        SELECT thread_id FROM threads_thread WHERE owner_id = %(u)s
        UNION {BY_USER_IN} UNION {BY_GROUP_IN})""",
}


SHARED_NOT_OWNED = f"""SELECT thread_id, created_at FROM threads_thread
    WHERE owner_id <> %(u)s AND thread_id IN ({BY_USER_IN} UNION {BY_GROUP_IN})"""
#: The owner's threads and the shares as separate branches, each an index seek.
UNION_ALL = {
    "page of 20": f"""SELECT thread_id FROM (
        SELECT thread_id, created_at FROM threads_thread WHERE owner_id = %(u)s
        UNION ALL {SHARED_NOT_OWNED}) v ORDER BY created_at DESC, thread_id DESC LIMIT 20""",
    "count": f"""SELECT (SELECT COUNT(*) FROM threads_thread WHERE owner_id = %(u)s)
        + (SELECT COUNT(*) FROM ({SHARED_NOT_OWNED}) s)""",
}


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("SECRET_KEY", "bench-visibility")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deerflow_site.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def seed(threads: int, users: int, shared: int) -> int:
    """Rows as the server writes them; returns the measured user's id (owner of 1/users)."""
    from django.contrib.auth.models import Group, Permission, User
    from django.db import connection, transaction
    from django.utils import timezone

    owners = [User.objects.create(username=f"u{n}") for n in range(users)]
    me = owners[0]
    team = Group.objects.create(name="team")
    me.groups.add(team)
    perms = {
        p.codename: p.pk
        for p in Permission.objects.filter(
            content_type__app_label="threads", codename__endswith="_thread"
        )
    }
    now = timezone.now().isoformat() if connection.vendor == "sqlite" else timezone.now()
    thread_rows, perm_rows = [], []
    for n in range(threads):
        owner = owners[n % users]
        thread_id = f"t{n:08d}"
        thread_rows.append((thread_id, owner.pk, "{}", "idle", "{}", "{}", now, now))
        for codename in ("view_thread", "change_thread", "delete_thread"):
            perm_rows.append((owner.pk, perms[codename], thread_id))
    mine_shared = [f"t{n:08d}" for n in range(1, threads, users)][: 2 * shared]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO threads_thread (thread_id, owner_id, metadata, status, config,"
            " interrupts, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            thread_rows,
        )
        cursor.executemany(
            f"INSERT INTO {USER_PERMS} (user_id, permission_id, content_object_id)"
            " VALUES (%s, %s, %s)",
            perm_rows + [(me.pk, perms["view_thread"], t) for t in mine_shared[:shared]],
        )
        cursor.executemany(
            f"INSERT INTO {GROUP_PERMS} (group_id, permission_id, content_object_id)"
            " VALUES (%s, %s, %s)",
            [(team.pk, perms["view_thread"], t) for t in mine_shared[shared:]],
        )
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
        else:
            cursor.execute("ANALYZE")
    return me.pk


def timed(sql: str, params: dict[str, Any], repeat: int) -> tuple[float, Any]:
    from django.db import connection

    samples, result = [], None
    with connection.cursor() as cursor:
        for _ in range(repeat):
            began = time.perf_counter()
            cursor.execute(sql, params)
            result = cursor.fetchall()
            samples.append(time.perf_counter() - began)
    return 1000 * statistics.median(samples), result


def measure(user_id: int, repeat: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    expected: dict[str, Any] = {}
    for name, condition in CONDITIONS.items():
        params = {"u": user_id, "t": "t00000000"}
        page = (
            f"SELECT t.thread_id FROM threads_thread t WHERE {condition}"
            " ORDER BY t.created_at DESC, t.thread_id DESC LIMIT 20"
        )
        count = f"SELECT COUNT(*) FROM threads_thread t WHERE {condition}"
        one = (
            f"SELECT t.thread_id FROM threads_thread t WHERE t.thread_id = %(t)s AND ({condition})"
        )
        row: dict[str, float] = {}
        for label, sql in (("page of 20", page), ("count", count), ("one thread", one)):
            row[label], result = timed(sql, params, repeat)
            if name != "guardian rows only (IN), before":
                assert expected.setdefault(label, result) == result, (name, label)
        results[name] = row
    row = {}
    for label, sql in UNION_ALL.items():
        row[label], result = timed(sql, {"u": user_id}, repeat)
        assert expected[label] == result, ("union all", label, result, expected[label])
    row["one thread"] = results["owner OR EXISTS (shares)"]["one thread"]
    results["UNION ALL: owner branch, shares branch"] = row
    return results


def run_on(database_url: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    setup_django(database_url)
    user_id = seed(args.threads, args.users, args.shared)
    return measure(user_id, args.repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--threads", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--shared", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one database per process: Django is set up once
        for name, row in run_on(args.child, args).items():
            cells = " | ".join(f"{row[k]:.2f}" for k in ("page of 20", "count", "one thread"))
            print(f"| {name} | {cells} |")
        return
    import subprocess

    from servers import postgres_and_redis

    with tempfile.TemporaryDirectory(prefix="deerflow-visibility-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o711)
        for database in args.databases.split(","):
            print(f"\n{database}: {args.threads} threads, {args.users} owners; median ms")
            print("| variant | page of 20 | count | one thread |\n|---|---:|---:|---:|")
            child = [sys.executable, __file__, *sys.argv[1:], "--child"]
            if database == "sqlite":
                subprocess.run([*child, f"sqlite:///{workdir / 'v.sqlite3'}"], check=True)
            else:
                with postgres_and_redis(workdir, name="visibility") as env:
                    subprocess.run([*child, env["DATABASE_URL"]], check=True)


if __name__ == "__main__":
    main()
