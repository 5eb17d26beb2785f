"""`scripts/cluster`: N web and M worker processes on one PostgreSQL and one Redis."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deerflow_site.bridge import Executor, call_sync
from runs.models import Run
from tests.cluster import ON_PRODUCTION_STACK, Cluster, is_running, start_cluster
from tests.fixtures import sdk_client, token_for

pytestmark = [
    pytest.mark.skipif(not ON_PRODUCTION_STACK, reason="the cluster needs PostgreSQL and Redis"),
    pytest.mark.multiprocess,
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def cluster(process_env: dict[str, str], tmp_path: Path) -> Iterator[Cluster]:
    started = start_cluster(env=process_env, log_dir=tmp_path, web=2, workers=1)
    yield started
    started.stop()


async def test_cluster_prints_every_process_and_serves_runs_across_them(
    cluster: Cluster, user: Any, closing: Any
) -> None:
    assert len(cluster.web_urls) == 2 and len(cluster.worker_pids) == 1
    key = await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE)
    first, second = (sdk_client(closing, url + "/api", key) for url in cluster.web_urls)
    thread = await first.threads.create()

    run = await first.runs.create(thread["thread_id"], "echo", input={"messages": []})
    result = await second.runs.join(thread["thread_id"], run["run_id"])

    assert "messages" in result
    stored = await Run.objects.aget(pk=run["run_id"])
    assert stored.status == Run.Status.SUCCESS
    assert f":{cluster.worker_pids[0]}:" in stored.worker_id


def test_ctrl_c_stops_every_process_and_exits_zero(cluster: Cluster) -> None:
    pids = [*cluster.web_pids, *cluster.worker_pids]
    assert all(is_running(pid) for pid in pids)

    assert cluster.stop() == 0

    assert not [pid for pid in pids if is_running(pid)], cluster.output()
    assert "cluster: stopped" in cluster.output()
