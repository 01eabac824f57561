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

from features.decay import DecayClock

# Weight of each event type in "plays-equivalent"; impressions count negatively-neutral.
EVENT_WEIGHTS = {"play": 1.0, "complete": 1.0, "thumbs": 0.5, "click": 0.3}


class TitlePopularity:
    __slots__ = ("clock", "counts")

    def __init__(self, half_life_ms: float = 86_400_000) -> None:
        self.clock = DecayClock(half_life_ms)
        self.counts: dict[str, float] = {}

    @property
    def ref_ts(self) -> int | None:
        return self.clock.ref_ts

    def update(self, title_id: str, ts: int, weight: float = 1.0) -> None:
        self.clock.rebase_counts(ts, self.counts)
        self.counts[title_id] = self.counts.get(title_id, 0.0) + weight * self.clock.weight(ts)

    def set_decayed(self, title_id: str, value: float, ts: int) -> None:
        """Set a title's popularity to ``value`` as of ``ts`` (a snapshot from its owner)."""
        self.clock.rebase_counts(ts, self.counts)
        self.counts[title_id] = value * self.clock.weight(ts)

    def observe(self, ev: dict) -> None:
        w = EVENT_WEIGHTS.get(ev["event_type"])
        if w:
            self.update(ev["title_id"], ev["ts"], w)

    def value(self, title_id: str, now_ts: int) -> float:
        return self.counts.get(title_id, 0.0) * self.clock.scale(now_ts)

    def scale(self, now_ts: int) -> float:
        """Factor turning stored counts into decayed counts at ``now_ts``."""
        return self.clock.scale(now_ts)

    def top(self, n: int, now_ts: int) -> list[tuple[str, float]]:
        s = self.scale(now_ts)
        best = sorted(self.counts.items(), key=lambda kv: -kv[1])[:n]
        return [(k, v * s) for k, v in best]
