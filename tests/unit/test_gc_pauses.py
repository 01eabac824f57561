"""GC pause timing and the young-generation threshold (streams/worker/gc_pauses.py)."""

from __future__ import annotations

import gc

from streams import metrics as m
from streams.worker import gc_pauses


def _count(generation: str) -> float:
    value = m.REGISTRY.get_sample_value(
        "reelstream_gc_pause_seconds_count", {"generation": generation}
    )
    return value or 0.0


def test_a_full_collection_is_timed_under_its_generation():
    gc_pauses.install()
    before = _count("2")
    gc.collect(2)
    assert _count("2") == before + 1


def test_install_twice_keeps_one_callback():
    gc_pauses.install()
    gc_pauses.install()
    assert sum(isinstance(cb, gc_pauses.GcPauses) for cb in gc.callbacks) == 1


def test_the_young_threshold_replaces_only_generation_0s():
    old = gc.get_threshold()
    try:
        gc_pauses.install(young_threshold=20_000)
        assert gc.get_threshold() == (20_000, old[1], old[2])
        gc_pauses.install(young_threshold=0)  # 0: leave it as it is
        assert gc.get_threshold() == (20_000, old[1], old[2])
    finally:
        gc.set_threshold(*old)


def test_scheduled_full_collections_leave_generation_2_to_the_timer():
    old = gc.get_threshold()
    try:
        gc_pauses.install(scheduled_full=True)
        assert gc.get_threshold() == (old[0], old[1], gc_pauses.NEVER)
        gc.collect(2)
        before = _count("2")
        keep = []
        for i in range(200_000):  # many young and middle collections, and promotions
            a: list = [i]
            a.append(a)  # a cycle: only a collection frees it
            keep.append([i])  # tracked survivors: CPython's rule would run full collections
        assert _count("1") > 0
        assert _count("2") == before  # CPython started none
        gc.collect(2)  # the worker's timer
        assert _count("2") == before + 1
    finally:
        gc.set_threshold(*old)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _cycle() -> None:
    a: list = []
    a.append(a)


def test_timed_collections_freeze_survivors_and_free_new_cycles():
    clock = _Clock()
    sweeps = gc_pauses.TimedCollections(thaw_every_s=3600, clock=clock)
    try:
        sweeps.tick()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert m.REGISTRY.get_sample_value("reelstream_gc_frozen_objects") == frozen
        for _ in range(100):
            _cycle()
        assert sweeps.tick() >= 100  # cycles made after the freeze are collected
    finally:
        gc.unfreeze()


def test_a_cycle_among_frozen_objects_waits_for_the_thaw():
    clock = _Clock()
    sweeps = gc_pauses.TimedCollections(thaw_every_s=3600, clock=clock)
    try:
        held: list = [[] for _ in range(50)]
        for a in held:
            a.append(a)
        del a
        sweeps.tick()  # the 50 cycles are alive: frozen
        held.clear()  # now garbage, but frozen
        clock.now = 3599
        assert sweeps.tick() < 50
        clock.now = 3600
        assert sweeps.tick() >= 50  # the thaw frees them
        assert gc.get_freeze_count() > 0  # and freezes the survivors again
    finally:
        gc.unfreeze()


def test_no_thaw_period_means_nothing_is_frozen():
    sweeps = gc_pauses.TimedCollections(thaw_every_s=0)
    gc.unfreeze()
    _cycle()
    assert sweeps.tick() >= 1
    assert gc.get_freeze_count() == 0
