"""A run whose end cannot be written (the database refuses it: SQLite's "database is locked", a
PostgreSQL gone) is ended by the reaper once its lease expires; a `/wait` on it answers the run's
error, never an empty body that looks like success, even when the run's stateless thread was
deleted with it meanwhile (`on_completion="delete"`, the reaper's `run_ended`)."""

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import AsyncRequestFactory
from django.utils import timezone

from deerflow_site.bridge import Executor, call_sync
from runs.engine import fanout, queue
from runs.engine.queue import WORKER_LOST
from runs.engine.signals import send_run_ended
from runs.models import Run
from runs.selectors import RUN_GONE, final_answer
from runs.stream_views import create_and_wait
from tests.fixtures import token_for
from tests.test_direct_start import direct_worker  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

ECHO = {"assistant_id": "echo", "input": {"messages": [{"role": "user", "content": "hi"}]}}


def refuse_successful_ends() -> None:
    """A trigger that fails every `success` written to a run, as a locked database does."""
    table = Run._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER refuse_end BEFORE UPDATE OF status ON {table}"
                " WHEN NEW.status = 'success' BEGIN SELECT RAISE(ABORT, 'database is locked'); END"
            )
            return
        cursor.execute(
            "CREATE FUNCTION refuse_end() RETURNS trigger AS $$ BEGIN"
            " RAISE EXCEPTION 'database is locked'; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            f"CREATE TRIGGER refuse_end BEFORE UPDATE OF status ON {table} FOR EACH ROW"
            " WHEN (NEW.status = 'success') EXECUTE FUNCTION refuse_end()"
        )


def allow_ends() -> None:
    """Drop the trigger, if any."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("DROP TRIGGER IF EXISTS refuse_end")
            return
        cursor.execute(f"DROP TRIGGER IF EXISTS refuse_end ON {Run._meta.db_table}")
        cursor.execute("DROP FUNCTION IF EXISTS refuse_end()")


@pytest.fixture
async def ends_refused() -> Any:
    """Successful ends refused until `allow_ends`, and allowed again after the test whatever
    happens (the tables outlive a test's data)."""
    await call_sync(refuse_successful_ends, on=Executor.THREAD_SENSITIVE)
    yield
    await call_sync(allow_ends, on=Executor.THREAD_SENSITIVE)


@pytest.fixture(autouse=True)
async def stop_listening() -> Any:
    yield
    await fanout.stop_listening()


async def test_a_stateless_wait_on_a_run_whose_end_was_not_written_answers_its_error(
    user: Any,
    direct_worker: Any,  # noqa: F811
    ends_refused: None,
) -> None:
    worker = await direct_worker()
    token = await call_sync(token_for, user, on=Executor.THREAD_SENSITIVE)
    request = AsyncRequestFactory().post(
        "/api/runs/wait",
        json.dumps(ECHO),
        "application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    response = await create_and_wait(request, None)
    assert response.status_code == 200, response.content
    # The run executes and fails to end while the wait's body is not read yet.
    async with asyncio.timeout(30):
        while not worker._executions:  # noqa: ASYNC110 - until the hand-off, right after admission
            await asyncio.sleep(0)
    [execution] = worker._executions.values()
    await execution.task
    await call_sync(allow_ends, on=Executor.THREAD_SENSITIVE)
    # The reaper ends it (its lease expired), and its `run_ended` deletes the stateless thread.
    later = timezone.now() + timedelta(hours=1)
    [reaped] = await call_sync(queue.reap_expired, now=later, on=Executor.ENGINE)
    await send_run_ended(reaped, sender=None)
    assert not await call_sync(Run.objects.filter(pk=reaped.pk).exists, on=Executor.API)

    body = b"".join([chunk async for chunk in response.streaming_content])

    assert json.loads(body) == {"__error__": WORKER_LOST}


async def test_the_answer_of_a_run_gone_before_it_was_read_is_an_error() -> None:
    """A wait that reads its answer after the run was deleted (its end lost, its stateless
    thread deleted meanwhile) answers an error, which the SDK raises, not `{}`."""
    answer = await call_sync(final_answer, run_id=uuid.uuid4(), on=Executor.API)
    assert answer == RUN_GONE and answer["__error__"]["message"]
