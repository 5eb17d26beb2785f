"""runs.cancellation.AdmissionWatch: whichever of the admission and its client's leaving comes
second cancels the admitted run, once, as the run's `on_disconnect` asks; nothing else is
touched (an admission that never admitted, a run that asked to continue)."""

import asyncio
from typing import Any

import pytest
from django.test import override_settings

from deerflow_site.bridge import Executor, call_sync
from runs.cancellation import AdmissionWatch
from runs.models import Run
from tests.engine_support import make_thread, pending_run, wait_for_status
from tests.waiting import in_database, read_until
from threads.models import Thread

pytestmark = pytest.mark.django_db(transaction=True)


async def admitted_run(user: Any, on_disconnect: str) -> Run:
    def make() -> Run:
        run = pending_run(thread=make_thread(user=user), user=user)
        Run.objects.filter(pk=run.pk).update(on_disconnect=on_disconnect)
        run.refresh_from_db()
        return run

    return await call_sync(make, on=Executor.THREAD_SENSITIVE)


async def status_of(run: Run) -> Run:
    return await call_sync(Run.objects.get, pk=run.pk, on=Executor.THREAD_SENSITIVE)


@pytest.mark.asyncio
@pytest.mark.parametrize("client_left_first", [True, False])
async def test_the_second_to_end_cancels_the_admitted_run(user: Any, client_left_first: bool):
    run = await admitted_run(user, Run.OnDisconnect.CANCEL)
    watch = AdmissionWatch()
    if client_left_first:
        watch.client_left()
        assert await call_sync(watch.admitted, run, on=Executor.API) is run
    else:
        await call_sync(watch.admitted, run, on=Executor.API)
        watch.client_left()
    ended = await wait_for_status(run.pk, Run.Status.INTERRUPTED)
    assert ended.cancel_action == Run.CancelAction.INTERRUPT


@pytest.mark.asyncio
@pytest.mark.parametrize("client_left_first", [True, False])
async def test_a_run_that_asked_to_continue_is_left_going(user: Any, client_left_first: bool):
    run = await admitted_run(user, Run.OnDisconnect.CONTINUE)
    watch = AdmissionWatch()
    tasks = asyncio.all_tasks()
    if client_left_first:
        watch.client_left()
        await call_sync(watch.admitted, run, on=Executor.API)
    else:
        await call_sync(watch.admitted, run, on=Executor.API)
        watch.client_left()
    assert asyncio.all_tasks() <= tasks  # no cancel spawned in the background
    still = await status_of(run)
    assert still.status == Run.Status.PENDING and not still.cancel_action


@pytest.mark.asyncio
async def test_a_run_admitted_while_its_client_stays_is_left_going(user: Any):
    run = await admitted_run(user, Run.OnDisconnect.CANCEL)
    await call_sync(AdmissionWatch().admitted, run, on=Executor.API)
    still = await status_of(run)
    assert still.status == Run.Status.PENDING and not still.cancel_action


@pytest.mark.asyncio
@override_settings(ON_COMPLETION_DELETE_SECONDS=0)
async def test_a_stateless_run_cancelled_while_pending_deletes_its_temporary_thread(user: Any):
    def make() -> Run:
        return pending_run(thread=make_thread(user=user), user=user, on_completion="delete")

    run = await call_sync(make, on=Executor.THREAD_SENSITIVE)
    watch = AdmissionWatch()
    watch.client_left()
    await call_sync(watch.admitted, run, on=Executor.API)

    # The cancel committed inside `admitted`; the deletion follows that commit with no delay
    # here, so the run is either interrupted or already gone with its thread, never pending.
    def status_now() -> str | None:
        return Run.objects.filter(pk=run.pk).values_list("status", flat=True).first()

    assert await call_sync(status_now, on=Executor.THREAD_SENSITIVE) in (
        Run.Status.INTERRUPTED,
        None,
    )

    def thread_exists() -> bool:
        return Thread.objects.filter(pk=run.thread_id).exists()

    await read_until(
        in_database(thread_exists),
        "the temporary thread to be deleted",
        accept=lambda kept: not kept,
    )
