"""A `runs_worker` process that starts while its Redis hangs (SIGSTOPped: it takes connections and
answers nothing) serves at once: it claims and executes runs from the database, the record, and
joins its layer groups once Redis answers again.

The worker gets a Redis of its own (test_cancel_without_layer's fixture), so that stopping it
leaves the suite's own alone.
"""

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
import redis

from runs.engine import bus
from runs.models import Run
from tests.cluster import ON_PRODUCTION_STACK
from tests.engine_support import make_thread, pending_run
from tests.live import CommandProcess, StartWatch, wait_until
from tests.test_cancel_without_layer import own_redis  # noqa: F401 (a fixture)

pytestmark = [
    pytest.mark.skipif(not ON_PRODUCTION_STACK, reason="stops a Redis: the PostgreSQL phase"),
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
]

#: A worker blocked on the hung Redis uses no CPU; one that starts, however slowly on a loaded
#: machine, uses some. Well under the Redis socket's timeout (30 s, deerflow_site.settings),
#: which a start that waited on the hung Redis would take.
STALLED_SECONDS = 12.0


def wakeup_group_members(redis_url: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return client.zrange(bus.layer()._group_key(bus.WAKEUP_GROUP), 0, -1)
    finally:
        client.close()


def test_a_worker_started_with_redis_hung_serves_and_joins_its_groups_once_it_answers(
    user: Any,
    own_redis: Any,  # noqa: F811 (the fixture)
    start_worker_process: Callable[..., CommandProcess],
) -> None:
    redis_server, redis_url = own_redis
    run = pending_run(thread=make_thread(user=user), user=user, input={})
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        worker = start_worker_process(
            "--concurrency",
            "1",
            REDIS_URL=redis_url,
            DEERFLOW_RUN_LEASE_SECONDS="1",
            DEERFLOW_RUN_POLL_SECONDS="0.1",
        )
        wait_until(
            lambda: Run.objects.filter(pk=run.pk, status=Run.Status.SUCCESS).exists(),
            "the worker to execute the run with Redis hung",
            watch=StartWatch(worker.pid, stall_seconds=STALLED_SECONDS),
            log=worker.log,
        )
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    wait_until(
        lambda: wakeup_group_members(redis_url),
        "the worker to join its wake-up group once Redis answers",
        log=worker.log,
    )
