"""GC pause timing and the freeze (streams/worker/gc_pauses.py)."""

from __future__ import annotations

import gc

from streams import metrics as m
from streams.worker import gc_pauses


def _count(generation: str) -> float:
    return (
        m.REGISTRY.get_sample_value("reelstream_gc_pause_seconds_count", {"generation": generation})
        or 0.0
    )


def test_a_full_collection_is_timed_under_its_generation():
    gc_pauses.install()
    before = _count("2")
    gc.collect(2)
    assert _count("2") == before + 1


def test_install_twice_keeps_one_callback():
    gc_pauses.install()
    gc_pauses.install()
    assert sum(isinstance(cb, gc_pauses.GcPauses) for cb in gc.callbacks) == 1


def test_freeze_takes_live_objects_out_of_collections():
    try:
        frozen = gc_pauses.freeze()
        assert frozen > 1000 and gc.get_freeze_count() == frozen
        assert len(gc.get_objects(generation=2)) < frozen
    finally:
        gc.unfreeze()
