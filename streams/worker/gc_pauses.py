"""Garbage-collector pauses: measured, full collections on a timer over what is new.

A worker's heap holds several hundred thousand long-lived objects (imported code, the
catalog, cached profiles, model state). CPython's full (generation 2) collection walks
all of them: about 0.25 s with 100,000 viewers and 10,000 titles, during which nothing
is processed, and under load CPython's rule (a full collection once the objects promoted
since the last one exceed a quarter of the old generation) starts one every 5-20 s.
Each landed in the score-freshness tail. Pauses are exported as
``reelstream_gc_pause_seconds{generation}``.

Those collections free almost nothing: in a 10,000-title bench, 16 full collections of
150,000-350,000 objects freed 0-428 objects each. Everything else dies by reference
count. The one large source of cycles was ours: a user's pending-impression context
pointed back at the user's state, so every record evicted from the cache was a cycle
(about 530 MiB waited for a 120 s timer in a soak, docs/performance.md run 9). That
back-reference is gone (unit test: an evicted record leaves no cycle).

So the worker (``REELSTREAM_GC_FULL_EVERY_S``, every 2 s by default) runs full collections
on a timer instead of CPython's rule, and freezes what survives each one (``gc.freeze``):
the next timed collection walks only what was promoted since, a few milliseconds.
Frozen objects are still freed by reference count; only a cycle formed among them would
wait, so once per ``REELSTREAM_GC_THAW_EVERY_S`` (an hour by default) the frozen heap is
thawed and collected (one whole-heap pause), and the count it freed is logged.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from streams import metrics as m

log = logging.getLogger("reelstream.gc")


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


GAUGE_EVERY_S = 60.0  # reelstream_gc_frozen_objects refresh


class TimedCollections:
    """The worker's timer body: a full collection over what is not frozen, then the
    survivors frozen; every ``thaw_every_s`` the whole heap thawed and collected once.
    ``thaw_every_s`` <= 0: nothing is frozen (each collection walks the whole heap)."""

    def __init__(self, thaw_every_s: float, clock: Any = time.monotonic) -> None:
        self.thaw_every_s = thaw_every_s
        self.clock = clock
        self.last_thaw = clock()
        self.last_gauge = float("-inf")

    def tick(self) -> int:
        """One timed collection; the objects it freed."""
        if self.thaw_every_s <= 0:
            return gc.collect(2)
        now = self.clock()
        thaw = now - self.last_thaw >= self.thaw_every_s
        if thaw:
            gc.unfreeze()
            self.last_thaw = now
        freed = gc.collect(2)
        gc.freeze()
        # Counting walks the frozen list (about 4 ms at 500,000 objects): once a minute.
        if thaw or now - self.last_gauge >= GAUGE_EVERY_S:
            self.last_gauge = now
            frozen = gc.get_freeze_count()
            m.GC_FROZEN_OBJECTS.set(frozen)
            if thaw:
                log.info(
                    "thawed and collected the frozen heap: %d objects freed, %d frozen again",
                    freed,
                    frozen,
                )
        return freed
