"""The collector's settings for a long-running server process.

Python's cyclic garbage collector runs a young-generation pass every 700 net allocations of
container objects, and now and then a pass over everything older. A server process holds a few
hundred thousand long-lived objects (Django, DRF, LangGraph, langchain-core, the graphs), and a
create+wait run allocates thousands of short-lived ones, so with the defaults the collector costs
about 0.7 ms of CPU per run on the embedded default (measured in `bench/`: 1.0 s of collection in
a bench of about 1,400 runs). `settle_heap` is called once the process has loaded what it
serves, before it takes requests or runs:

- `gc.freeze()` moves every object alive then into the permanent generation, which no pass
  visits again (what CPython documents for servers that fork or start up once);
- the young generation is collected every `YOUNG_THRESHOLD` allocations instead of 700, so a run's
  short-lived objects mostly die by reference counting before a pass looks at them.

Cycles are still collected: only how often changes. Memory held by uncollected young cycles is
bounded by the threshold (tens of thousands of small objects at most). Cycles that outlive two
passes reach the oldest generation, which only a full pass frees: one every `OLD_THRESHOLD`
middle passes (CPython's default), about every 20,000 create+wait runs. CPython also skips a
full pass until the objects reaching the oldest generation since the last one exceed a quarter
of those it kept then; the collection made after freezing makes that count start from the
objects created since (the frozen heap would otherwise count, and the server's first full pass
would wait for hundreds of thousands of promotions, holding the cyclic garbage of every run
until then).
"""

import gc

#: Net container allocations between two young-generation passes (CPython's default: 700).
YOUNG_THRESHOLD = 20_000
#: Young passes between two middle-generation passes, and middle passes between two full
#: passes: CPython's defaults, so the oldest generation's garbage is freed as often as usual.
MIDDLE_THRESHOLD = 10
OLD_THRESHOLD = 10


def settle_heap() -> None:
    """Collect once, freeze what survives, and set the collector's thresholds (see the module)."""
    gc.collect()
    gc.freeze()
    gc.collect()  # nothing to free: resets the full pass's baseline to what is not frozen
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
