"""The tests' own waits (tests/waiting.py): a condition met returns its value at once; one never
met fails naming what was waited for, not with a bare TimeoutError."""

import asyncio
import itertools

import pytest

from tests.waiting import awaited, read_until


async def test_read_until_returns_the_first_accepted_value_sync_or_awaited() -> None:
    counter = itertools.count()

    async def counted() -> int:
        return next(counter)

    assert await read_until(counted, "a third read", accept=lambda n: n >= 2) == 2
    assert await read_until(lambda: "ready", "a plain value") == "ready"


async def test_read_until_fails_naming_what_it_waited_for_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"in vain for the flag to be set \(last read: 0\)"):
        await read_until(lambda: 0, "the flag to be set", within=0.05)


async def test_awaited_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="in vain for an event that never comes"):
        await awaited(asyncio.Event().wait(), "an event that never comes", within=0.05)


async def test_awaited_lets_the_awaitables_own_timeout_through() -> None:
    async def times_out() -> None:
        raise TimeoutError("its own")

    with pytest.raises(TimeoutError, match="its own"):
        await awaited(times_out(), "something")
