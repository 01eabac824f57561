"""Garbage-collector pauses: measured, full collections on a timer, the young generation's size.

A worker's heap holds several hundred thousand long-lived objects (cached profiles, model
state). CPython's full (generation 2) collection walks all of them, about 0.1 s for a
worker with 2,000 viewers and 400 titles and 0.25 s with 100,000 viewers and 10,000
titles, and nothing is processed meanwhile, so each one lands in the score-freshness
tail. They are exported as ``reelstream_gc_pause_seconds{generation}``.

Why they are frequent: a full collection runs once the objects promoted into the old
generation since the last one exceed a quarter of it. With CPython's default young
threshold (700 container allocations) a batch's own temporaries outlive two young
collections and are promoted; they die right after (by reference count), but the
promotions were counted. Under load that is a full collection every 5-10 s: at 10,000
titles and half load, 3 pauses in 30 s took freshness p99 from 306 to 433 ms.

What a full collection frees is only reference cycles that lived long enough to be
promoted; everything else is freed by reference counting, and young cycles by the young
collections. ``REELSTREAM_GC_FULL_EVERY_S`` (off by default) stops CPython from starting
full collections itself and runs one on a worker timer instead: at 10,000 titles and
half load, freshness p99 306 ms against 433 ms with the rule. It is off because the
cycles are not small: in a soak with long-lived viewers (10-20 KB records) a 120 s
timer held about 530 MiB more than the rule (924 against 398 MiB; docs/performance.md,
"Memory under a soak", run 9). What forms them is not traced yet; the engine's own code
makes almost none (a unit-size probe: 0 cyclic objects from 1,000 record decodes and
encodes, 824 from 2,000 ingests). A young generation of 20,000
(``REELSTREAM_GC_YOUNG_THRESHOLD``) has the same trade-off: no full collection in 20 s
of load, RSS growing about three times as fast in a soak.
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
