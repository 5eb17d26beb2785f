"""The bridge between sync and async code: each executor runs where its docstring says, the two
that own their threads keep a connection between calls and drop it after a database error, and
`call_async` from bridged sync code runs on the caller's event loop."""

import asyncio
import contextvars
import gc
import threading
import time
import weakref
from typing import Any

import pytest
from django.db import DatabaseError, connection

from deerflow_site.bridge import (
    API_DB_THREADS,
    Executor,
    RequestThread,
    SerialThread,
    call_async,
    call_sync,
    current_request_thread,
    request_thread,
)
from deerflow_site.loop_inbox import after_reply, loop_inbox

pytestmark = pytest.mark.django_db(transaction=True)


def _where() -> tuple[str, Any]:
    """This thread's name and its database connection (made if there is none)."""
    connection.ensure_connection()
    return threading.current_thread().name, connection.connection


def _broken_query() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table_anywhere")


def _connection_after_error() -> Any:
    """The connection this thread holds now: None once the bridge has dropped it."""
    return connection.connection


async def test_the_engine_keeps_one_thread_and_one_connection() -> None:
    first = await call_sync(_where, on=Executor.ENGINE)
    second = await call_sync(_where, on=Executor.ENGINE)

    assert first[0].startswith("run-engine-db")
    assert first == second


async def test_a_database_error_drops_the_connection_and_the_next_call_reconnects() -> None:
    name, before = await call_sync(_where, on=Executor.ENGINE)

    with pytest.raises(DatabaseError):
        await call_sync(_broken_query, on=Executor.ENGINE)

    assert await call_sync(_connection_after_error, on=Executor.ENGINE) is None
    again = await call_sync(_where, on=Executor.ENGINE)
    assert again[0] == name
    assert again[1] is not None and again[1] is not before


async def test_the_api_pool_is_bounded_and_not_the_engine() -> None:
    names = {
        name
        for name, _ in await asyncio.gather(
            *(call_sync(_where, on=Executor.API) for _ in range(API_DB_THREADS * 3))
        )
    }

    assert all(name.startswith("api-db") for name in names)
    assert 1 <= len(names) <= API_DB_THREADS


async def test_blocking_work_runs_off_the_loop_and_off_the_database_threads() -> None:
    loop_thread = threading.current_thread().name

    name = await call_sync(lambda: threading.current_thread().name, on=Executor.BLOCKING)

    assert name != loop_thread
    assert not name.startswith(("run-engine-db", "api-db"))


async def test_call_async_from_bridged_code_runs_on_the_callers_loop() -> None:
    caller_loop = asyncio.get_running_loop()

    async def loop_of_this_coroutine(answer: int) -> tuple[Any, int]:
        return asyncio.get_running_loop(), answer

    def sync_code() -> tuple[Any, int]:
        return call_async(loop_of_this_coroutine, answer=42)

    for executor in Executor:
        assert await call_sync(sync_code, on=executor) == (caller_loop, 42), executor


async def test_errors_propagate_unchanged() -> None:
    def refuse(*, why: str) -> None:
        raise LookupError(why)

    for executor in Executor:
        with pytest.raises(LookupError, match="nothing here"):
            await call_sync(refuse, why="nothing here", on=executor)


_run_named: contextvars.ContextVar[str] = contextvars.ContextVar("run_named", default="")


async def test_context_variables_go_along_to_every_executor() -> None:
    _run_named.set("run-7")

    for executor in Executor:
        assert await call_sync(_run_named.get, on=executor) == "run-7", executor


async def test_a_call_whose_caller_is_cancelled_before_it_starts_is_dropped() -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def hold_the_engine() -> None:
        started.set()
        release.wait(10)
        ran.append("held")

    holding = asyncio.ensure_future(call_sync(hold_the_engine, on=Executor.ENGINE))
    await call_sync(started.wait, 10, on=Executor.BLOCKING)
    queued = asyncio.ensure_future(call_sync(ran.append, "queued", on=Executor.ENGINE))
    await asyncio.sleep(0)  # submitted
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    release.set()
    await holding
    await call_sync(ran.append, "after", on=Executor.ENGINE)

    assert queued.cancelled()
    assert ran == ["held", "after"]


async def test_a_call_whose_caller_is_cancelled_while_it_runs_runs_to_its_end() -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow() -> None:
        started.set()
        release.wait(10)
        ran.append("slow")

    call = asyncio.ensure_future(call_sync(slow, on=Executor.ENGINE))
    await call_sync(started.wait, 10, on=Executor.BLOCKING)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    release.set()
    await call_sync(ran.append, "next", on=Executor.ENGINE)

    assert ran == ["slow", "next"]


async def test_outcomes_that_arrive_while_the_loop_is_busy_share_one_wake_up() -> None:
    """Calls that end while the loop runs other code are settled by one `call_soon_threadsafe`
    (one write to the loop's self-pipe), each with its own result or error."""
    loop = asyncio.get_running_loop()
    thread = SerialThread("test-serial")
    wake_ups = []
    threadsafe = loop.call_soon_threadsafe

    def counted(callback: Any, *args: Any, **kwargs: Any) -> Any:
        wake_ups.append(callback)
        return threadsafe(callback, *args, **kwargs)

    def fail() -> None:
        raise LookupError("the third")

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
    try:
        calls = [
            asyncio.ensure_future(thread.call(lambda: 1)),
            asyncio.ensure_future(thread.call(lambda: 2)),
            asyncio.ensure_future(thread.call(fail)),
        ]
        await asyncio.sleep(0)  # every call is queued on the thread
        done = threading.Event()
        thread.submit(done.set)
        assert done.wait(10)  # the loop is busy here: all three have ended meanwhile
        results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        del loop.call_soon_threadsafe
        thread.stop()

    assert results[:2] == [1, 2]
    assert isinstance(results[2], LookupError)
    assert len(wake_ups) == 1


async def test_requests_reuse_a_pooled_thread_and_its_connection_one_request_at_a_time() -> None:
    async def one_request() -> tuple[str, Any]:
        async with request_thread():
            first = await call_sync(_where, on=Executor.THREAD_SENSITIVE)
            assert await call_sync(_where, on=Executor.THREAD_SENSITIVE) == first
            return first

    first = await one_request()
    assert first[0].startswith("request")
    assert await one_request() == first  # the same thread, still connected

    # Requests at the same time each get a thread of their own.
    inside = asyncio.Event()
    release = asyncio.Event()

    async def held() -> tuple[str, Any]:
        async with request_thread():
            where = await call_sync(_where, on=Executor.THREAD_SENSITIVE)
            inside.set()
            await release.wait()
            return where

    holder = asyncio.create_task(held())
    await inside.wait()
    other = await one_request()
    release.set()
    assert other[1] is not (await holder)[1]  # another thread, with its own connection


def _expire_connection() -> Any:
    """Connect, and make this thread's connection older than CONN_MAX_AGE allows."""
    connection.ensure_connection()
    connection.close_at = time.monotonic() - 1
    return connection.connection


def _held_connection() -> Any:
    return connection.connection


async def test_a_request_threads_expired_connection_is_closed_after_the_request() -> None:
    # Django's request_finished upkeep, done on the request's own thread after the request
    # (the response is closed on the event loop, not in a thread hop of its own).
    async with request_thread():
        assert await call_sync(_expire_connection, on=Executor.THREAD_SENSITIVE) is not None
    async with request_thread():
        assert await call_sync(_held_connection, on=Executor.THREAD_SENSITIVE) is None


async def test_a_sync_view_ends_with_the_upkeep_in_its_own_call() -> None:
    async with request_thread():
        thread = current_request_thread()
        assert thread is not None
        view = thread.ending_with_upkeep(_expire_connection)
        await call_sync(view, on=Executor.THREAD_SENSITIVE)
        assert not thread.needs_upkeep  # nothing left to do after the request
        assert await call_sync(_held_connection, on=Executor.THREAD_SENSITIVE) is None
    assert current_request_thread() is None


def test_a_call_outliving_its_request_leaves_the_next_requests_upkeep_due() -> None:
    # A view still running after its client left ends after the next request's code was
    # submitted: its upkeep covers itself, not what came after it.
    thread = RequestThread()
    try:
        release = threading.Event()
        view = thread.submit(thread.ending_with_upkeep(lambda: release.wait(30)))
        thread.submit(lambda: None)  # the next request's code
        release.set()
        view.result(timeout=30)
        assert thread.needs_upkeep
        thread.upkeep_if_used()
        assert not thread.needs_upkeep
    finally:
        thread.shutdown(wait=True)


async def test_hand_offs_from_a_thread_run_in_order_and_one_failing_stops_none() -> None:
    inbox = loop_inbox()
    ran: list[str] = []
    errors: list[Any] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))

    def fail() -> None:
        raise LookupError("a broken hand-off")

    def hand_off() -> None:
        inbox.call_soon(ran.append, "first")
        inbox.call_soon(fail)
        inbox.call_soon(ran.append, "second")

    try:
        await call_sync(hand_off, on=Executor.BLOCKING)
        await call_sync(lambda: None, on=Executor.ENGINE)  # its result comes after them
    finally:
        loop.set_exception_handler(None)

    assert ran == ["first", "second"]
    assert [type(error) for error in errors] == [LookupError]


def test_an_event_loops_inbox_does_not_keep_the_loop_alive() -> None:
    async def use_the_inbox() -> None:
        await call_sync(lambda: None, on=Executor.ENGINE)
        loop_inbox()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(use_the_inbox())
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()

    assert gone() is None


async def test_a_hops_after_reply_calls_reach_the_loop_behind_its_result(caplog) -> None:
    # A task the hop's thread starts on the loop after its reply runs after the caller has
    # resumed (a direct start's run after the admitting request); sent before the reply, it
    # would run first.
    loop, inbox = asyncio.get_running_loop(), loop_inbox()
    order: list[str] = []
    noted, all_made = asyncio.Event(), threading.Event()

    async def note() -> None:
        order.append("the task started after the reply")
        noted.set()

    def fail() -> None:
        raise LookupError("a broken call after the reply")

    def work() -> str:
        after_reply(lambda: inbox.call_soon(lambda: loop.create_task(note())))
        after_reply(fail)
        after_reply(all_made.set)  # made although the one before failed
        order.append("the hop's work")
        return "result"

    assert await call_sync(work, on=Executor.API) == "result"
    order.append("the caller resumes")
    await asyncio.wait_for(noted.wait(), 30)

    assert order == ["the hop's work", "the caller resumes", "the task started after the reply"]
    assert await call_sync(all_made.wait, 30, on=Executor.API)
    assert "a broken call after the reply" in caplog.text


def test_after_reply_outside_a_hop_calls_at_once() -> None:
    called: list[int] = []

    after_reply(lambda: called.append(1))

    assert called == [1]
