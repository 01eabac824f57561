"""Exponentially decayed popularity per title, in event time.

Counts are kept in "log-scale units" relative to a moving reference time so an
update is O(1): adding at time ``ts`` adds ``exp((ts - ref) / tau)``; reading
divides by the same factor at the reading time. Each worker keeps the counts of
the events it sees (a uniform hash sample of all users), which ranks titles the
same way as the global count; see docs/architecture.md.

>>> pop = TitlePopularity(half_life_ms=1000)
>>> pop.update("a", 0, 1.0); pop.update("a", 1000, 1.0); pop.update("b", 1000, 1.0)
>>> round(pop.value("a", 1000), 3), round(pop.value("b", 1000), 3)
(1.5, 1.0)
"""

from __future__ import annotations

import math

# Weight of each event type in "plays-equivalent"; impressions count negatively-neutral.
EVENT_WEIGHTS = {"play": 1.0, "complete": 1.0, "thumbs": 0.5, "click": 0.3}
_RESCALE_AT = 50.0  # rebase when exponents grow beyond this, to stay in float range


class TitlePopularity:
    __slots__ = ("_inv_tau", "counts", "ref_ts")

    def __init__(self, half_life_ms: float = 86_400_000) -> None:
        self._inv_tau = math.log(2) / half_life_ms
        self.counts: dict[str, float] = {}
        self.ref_ts: int | None = None

    def update(self, title_id: str, ts: int, weight: float = 1.0) -> None:
        if self.ref_ts is None:
            self.ref_ts = ts
        x = (ts - self.ref_ts) * self._inv_tau
        if x > _RESCALE_AT:
            self._rebase(ts)
            x = 0.0
        self.counts[title_id] = self.counts.get(title_id, 0.0) + weight * math.exp(x)

    def observe(self, ev: dict) -> None:
        w = EVENT_WEIGHTS.get(ev["event_type"])
        if w:
            self.update(ev["title_id"], ev["ts"], w)

    def _rebase(self, ts: int) -> None:
        factor = math.exp(-(ts - (self.ref_ts or ts)) * self._inv_tau)
        for k in self.counts:
            self.counts[k] *= factor
        self.ref_ts = ts

    def value(self, title_id: str, now_ts: int) -> float:
        if self.ref_ts is None:
            return 0.0
        return self.counts.get(title_id, 0.0) * math.exp(-(now_ts - self.ref_ts) * self._inv_tau)

    def scale(self, now_ts: int) -> float:
        """Factor turning stored counts into decayed counts at ``now_ts``."""
        if self.ref_ts is None:
            return 0.0
        return math.exp(-(now_ts - self.ref_ts) * self._inv_tau)

    def top(self, n: int, now_ts: int) -> list[tuple[str, float]]:
        s = self.scale(now_ts)
        best = sorted(self.counts.items(), key=lambda kv: -kv[1])[:n]
        return [(k, v * s) for k, v in best]
