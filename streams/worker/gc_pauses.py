"""Garbage-collector pauses: measured, and a knob for the young generation's size.

A worker's heap holds a few hundred thousand long-lived objects (cached profiles, model
state). CPython's full (generation 2) collection walks all of them, about 0.1 s for a
worker with 2,000 viewers and 400 titles and 0.25 s for 660,000 objects, and nothing is
processed meanwhile, so each one lands in the score-freshness tail. They are exported as
``reelstream_gc_pause_seconds{generation}``.

Why they are frequent: a full collection runs once the objects promoted into the old
generation since the last one exceed a quarter of it. With CPython's default young
threshold (700 container allocations) a batch's own temporaries outlive two young
collections and are promoted; they die right after, but the promotions were counted.
At 2,700 events/s that was a full collection every 4 s (5 in 20 s, 440 ms in all). A
young generation of 20,000 (``REELSTREAM_GC_YOUNG_THRESHOLD``) left none in the same
20 s and cut freshness p99 from 443 to 337 ms, but in a 1,200 events/s soak RSS grew
about three times as fast (why is open: not cyclic garbage, of which a probe found
almost none), so it is not the default (docs/performance.md, "Garbage collection").
"""

from __future__ import annotations

import gc
import time
from typing import Any

from streams import metrics as m


class GcPauses:
    """``gc.callbacks`` entry: times each collection by generation."""

    def __init__(self) -> None:
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        took = time.perf_counter() - self.started
        m.GC_PAUSE_SECONDS.labels(generation=str(info.get("generation", "?"))).observe(took)


NEVER = 2**31 - 1  # a generation-2 threshold no count of young collections reaches


def install(young_threshold: int = 0, scheduled_full: bool = False) -> GcPauses:
    """Time collections (once per process); a ``young_threshold`` > 0 replaces CPython's
    generation-0 threshold; ``scheduled_full``: CPython never starts a full collection
    itself, the caller runs :func:`collect_full` on a timer."""
    t0, t1, t2 = gc.get_threshold()
    if young_threshold > 0:
        t0 = young_threshold
    if scheduled_full:
        t2 = NEVER
    gc.set_threshold(t0, t1, t2)
    for cb in gc.callbacks:
        if isinstance(cb, GcPauses):
            return cb
    watch = GcPauses()
    gc.callbacks.append(watch)
    return watch


def collect_full() -> int:
    """One full collection (timed by the callback like any other); objects freed."""
    return gc.collect(2)
