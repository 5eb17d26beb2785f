"""The status check of idle streams: one answer per run for all of a process's streams."""

import asyncio

import pytest

from deerflow_site.bridge import Executor, call_sync
from runs.models import Run
from runs.sse.status_checks import run_has_ended
from tests.engine_support import make_thread, pending_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def run(user) -> Run:
    thread = await call_sync(make_thread, user=user, on=Executor.THREAD_SENSITIVE)
    return await call_sync(pending_run, thread=thread, user=user, on=Executor.THREAD_SENSITIVE)


async def end_silently(run: Run) -> None:
    await Run.objects.filter(pk=run.pk).aupdate(status=Run.Status.INTERRUPTED)


async def test_an_answer_younger_than_max_age_is_shared(run) -> None:
    assert not await run_has_ended(run.pk, max_age=60)
    await end_silently(run)

    assert not await run_has_ended(run.pk, max_age=60)  # the shared answer: no new query
    assert await run_has_ended(run.pk, max_age=0)


async def test_while_a_query_of_the_run_is_in_flight_others_take_the_last_answer(run) -> None:
    assert not await run_has_ended(run.pk, max_age=60)
    await end_silently(run)

    querying, waiting = await asyncio.gather(
        run_has_ended(run.pk, max_age=0), run_has_ended(run.pk, max_age=0)
    )

    assert (querying, waiting) == (True, False)
    assert await run_has_ended(run.pk, max_age=60)


async def test_a_run_that_is_gone_has_ended(run) -> None:
    await Run.objects.filter(pk=run.pk).adelete()

    assert await run_has_ended(run.pk, max_age=0)
