"""Exponential decay in event time with O(1) updates (the "log-scale units" trick).

A value added at time ``ts`` is stored as ``w * exp((ts - ref) / tau)``; reading at
``now`` multiplies by ``exp(-(now - ref) / tau)``. Ratios of stored values need no
scaling at all. When exponents grow large the clock is rebased.

>>> c = DecayClock(half_life_ms=1000)
>>> round(c.weight(0), 3), round(c.weight(1000) * c.scale(1000), 3)
(1.0, 1.0)
>>> round(c.weight(0) * c.scale(1000), 3)
0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable

REBASE_AT = 40.0


def rate(half_life_ms: float) -> float:
    """Decay per millisecond of a half-life."""
    return math.log(2) / half_life_ms


def decay_factor(elapsed_ms: float, per_ms: float) -> float:
    """What is left of 1 after ``elapsed_ms`` (capped so a far future never underflows to 0)."""
    return math.exp(-min(max(elapsed_ms, 0.0) * per_ms, 700.0))


class DecayClock:
    __slots__ = ("inv_tau", "ref_ts")

    def __init__(self, half_life_ms: float) -> None:
        self.inv_tau = math.log(2) / half_life_ms
        self.ref_ts: int | None = None

    def weight(self, ts: int) -> float:
        """The stored weight of a unit added at ``ts`` (call :meth:`needs_rebase` first)."""
        if self.ref_ts is None:
            self.ref_ts = ts
        return math.exp(min((ts - self.ref_ts) * self.inv_tau, 700.0))

    def needs_rebase(self, ts: int) -> float | None:
        """If ``ts`` is far ahead of the reference, move it there; returns the factor to apply."""
        if self.ref_ts is None:
            self.ref_ts = ts
            return None
        x = (ts - self.ref_ts) * self.inv_tau
        if x <= REBASE_AT:
            return None
        self.ref_ts = ts
        return math.exp(-x)

    def adopt(self, ref_ts: int, rescale: Callable[[float], None]) -> float:
        """The factor turning values stored relative to ``ref_ts`` into this clock's units.

        A clock that has no reference yet takes ``ref_ts``; one that is far behind it is
        rebased there first (``rescale`` applies the factor to the owner's stored values),
        so the factor never overflows.

        >>> c = DecayClock(half_life_ms=1000); c.adopt(5000, lambda f: None), c.ref_ts
        (1.0, 5000)
        >>> round(c.adopt(4000, lambda f: None), 3)  # a unit stored at ref 4000 is half as big
        0.5
        """
        if self.ref_ts is None:
            self.ref_ts = ref_ts
        elif (ref_ts - self.ref_ts) * self.inv_tau > REBASE_AT:
            rescale(math.exp(-(ref_ts - self.ref_ts) * self.inv_tau))
            self.ref_ts = ref_ts
        return math.exp(max(-700.0, (ref_ts - self.ref_ts) * self.inv_tau))

    def rebase_counts(self, ts: int, counts: dict[str, float]) -> None:
        """Rebase if ``ts`` is far ahead, rescaling ``counts`` stored in this clock's units."""
        factor = self.needs_rebase(ts)
        if factor is not None:
            for k in counts:
                counts[k] *= factor

    def scale(self, now_ts: int) -> float:
        if self.ref_ts is None:
            return 0.0
        return math.exp(max(-700.0, -(now_ts - self.ref_ts) * self.inv_tau))
