"""One heartbeat clock per event loop: a single timer ends the timed waits of every subscription.

An idle SSE stream waits for its next event at most a heartbeat period, then beats. With a timer
per wait, 2,000 idle streams push and pop 400 timers a second through asyncio's heap (a Python
comparison per step). The clock files each wait under the tick (`TICK_SECONDS`) its deadline
falls in, rounded up, and keeps one timer for the earliest tick: a tick wakes every wait due by
then at once, and waits that ended sooner (an event came) leave their tick. A wait so ends at
most `TICK_SECONDS` after its deadline, never before it.
"""

import asyncio
import math

#: The clock's resolution (seconds): waits end on multiples of it of the loop's time.
TICK_SECONDS = 0.1


class HeartbeatClock:
    """The timed waits of one event loop, by tick; one timer for the earliest tick."""

    __slots__ = ("_due", "_loop", "_timer", "_timer_tick")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: dict[int, set[asyncio.Future[None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_tick = 0

    def wake_at(self, deadline: float, waiter: asyncio.Future[None]) -> int:
        """Resolve `waiter` (with None, unless done already) at the first tick at or after
        `deadline` (the loop's time, seconds); the tick, for `forget`."""
        tick = math.ceil(deadline / TICK_SECONDS)
        waiters = self._due.get(tick)
        if waiters is None:
            waiters = self._due[tick] = set()
            if self._timer is None or tick < self._timer_tick:
                self._schedule(tick)
        waiters.add(waiter)
        return tick

    def forget(self, tick: int, waiter: asyncio.Future[None]) -> None:
        """Drop a wait that ended before its tick (twice is harmless)."""
        waiters = self._due.get(tick)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._due[tick]  # the timer may still fire for it: it then finds nothing

    @property
    def waits(self) -> int:
        """How many waits are filed."""
        return sum(len(waiters) for waiters in self._due.values())

    def _schedule(self, tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_tick = tick
        self._timer = self._loop.call_at(tick * TICK_SECONDS, self._tick)

    def _tick(self) -> None:
        self._timer = None
        # call_at may run a hair early (the loop's clock resolution): the timer's own tick is due.
        now = max(math.floor(self._loop.time() / TICK_SECONDS), self._timer_tick)
        for tick in [tick for tick in self._due if tick <= now]:
            for waiter in self._due.pop(tick):
                if not waiter.done():
                    waiter.set_result(None)
        if self._due:
            self._schedule(min(self._due))
