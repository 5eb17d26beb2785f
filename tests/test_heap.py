"""The server process's collector settings (`deerflow_site.heap.settle_heap`)."""

import gc
import weakref
from collections.abc import Iterator

import pytest

from deerflow_site.heap import YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_settle_heap_freezes_what_is_loaded_and_sets_the_young_threshold(restored_collector):
    loaded = Node()
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    assert gc.is_tracked(loaded)
    assert all(obj is not loaded for obj in gc.get_objects())  # frozen: no pass visits it


def test_cycles_made_after_settling_are_still_collected(restored_collector):
    settle_heap()
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    assert gone() is not None  # a cycle: reference counting alone does not free it
    gc.collect()
    assert gone() is None


def test_a_cycle_in_the_oldest_generation_is_freed_by_the_collectors_own_passes(
    restored_collector,
):
    # The oldest generation's garbage waits for a full pass: after settling, one comes about
    # every 100 young passes (CPython's 10 x 10), whatever the size of the frozen heap (this
    # test process's is large, as a server's is): a server's cyclic garbage stays bounded.
    settle_heap()
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    gc.collect(1)  # the cycle, still reachable, moves to the oldest generation
    del first, second
    young_passes = 0
    while gone() is not None and young_passes <= 200:
        batch = [[] for _ in range(YOUNG_THRESHOLD + 1000)]  # net allocations: a young pass
        del batch
        young_passes += 1
    assert gone() is None, f"still alive after {young_passes} young passes"
