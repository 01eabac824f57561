"""Garbage-collector pauses: measured, and kept short by freezing the warm heap.

A worker's heap holds hundreds of thousands of long-lived objects (cached profiles,
model state). CPython's full (generation 2) collection walks all of them: about
0.25 s for 660,000 objects on the 2-core test machine, during which no event is
processed, so it lands directly in the score-freshness tail. The pauses are exported
as ``reelstream_gc_pause_seconds{generation}``.

``gc.freeze()`` moves every object alive at that moment to a permanent generation that
collections skip (public API since Python 3.7). Done once the worker is warm, and again
every ``REELSTREAM_GC_FREEZE_S`` seconds, it keeps full collections to the objects
allocated since. The cost: a frozen object that later becomes garbage *in a reference
cycle* is never reclaimed (acyclic garbage is still freed by reference counting, which
is almost everything here); the soak (``reelstream soak``) watches RSS for that.
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
        self.longest = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        took = time.perf_counter() - self.started
        self.longest = max(self.longest, took)
        m.GC_PAUSE_SECONDS.labels(generation=str(info.get("generation", "?"))).observe(took)


class FreezePolicy:
    """When to (re)freeze: first after ``warm_s`` of processing, then every ``every_s``.

    >>> p = FreezePolicy(every_s=600.0, warm_s=60.0)
    >>> p.due(now=30.0, started=0.0), p.due(now=61.0, started=0.0)
    (False, True)
    >>> p.done(61.0); p.due(now=600.0, started=0.0), p.due(now=662.0, started=0.0)
    (False, True)
    >>> FreezePolicy(every_s=0.0).due(now=1e9, started=0.0)  # off
    False
    """

    def __init__(self, every_s: float, warm_s: float = 60.0) -> None:
        self.every_s = every_s
        self.warm_s = warm_s
        self.last: float | None = None

    def due(self, now: float, started: float) -> bool:
        if self.every_s <= 0:
            return False
        if self.last is None:
            return now - started >= self.warm_s
        return now - self.last >= self.every_s

    def done(self, now: float) -> None:
        self.last = now


def install() -> GcPauses:
    """Start timing collections (idempotent per process)."""
    for cb in gc.callbacks:
        if isinstance(cb, GcPauses):
            return cb
    watch = GcPauses()
    gc.callbacks.append(watch)
    return watch


def freeze() -> int:
    """Collect, then freeze what survives; returns the objects now frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
