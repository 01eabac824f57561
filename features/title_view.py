"""Every worker's read-only view of all titles' statistics, fed by the owners' snapshots.

Why: a title's statistics have one owner (:mod:`features.title_stats`), but every
worker scores every title. The owners publish changed titles' snapshots about
once a second; each worker folds them in here, so its API sees global
popularity a second or two late instead of the popularity of its own users only.

It is a :class:`~features.title_popularity.TitlePopularity` (``counts`` and
``scale(now)``, what popularity readers use) whose counts are *set* from snapshots;
``observe`` does nothing, since the owners do the counting.

>>> from features.title_stats import TitleStats
>>> s = TitleStats()
>>> _ = s.update({"t": "t1", "e": "play", "ts": 1_000_000, "c": "FR", "f": 1})
>>> view = GlobalTitleView()
>>> view.apply("t1", s.snapshot())
>>> round(view.value("t1", 1_000_000), 6), view.trending("FR", "1h", 5)
(1.0, [('t1', 1)])
"""

from __future__ import annotations

from typing import Any

from features.title_popularity import TitlePopularity
from features.title_stats import ALL, POP_HALF_LIFE_MS, WINDOWS, window_count


class GlobalTitleView(TitlePopularity):
    """Latest snapshot per title, plus the popularity interface over them."""

    __slots__ = ("high_water", "snapshots")

    def __init__(self) -> None:
        super().__init__(half_life_ms=POP_HALF_LIFE_MS)
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.high_water = 0

    def observe(self, ev: dict) -> None:
        """No-op: popularity is counted by the title owners."""

    def apply(self, title_id: str, snap: dict[str, Any] | None) -> None:
        """Replace a title's snapshot (``None``: forget the title)."""
        if snap is None:
            self.snapshots.pop(title_id, None)
            self.counts.pop(title_id, None)
            return
        self.snapshots[title_id] = snap
        hw = int(snap.get("high_water", 0))
        if hw > self.high_water:
            self.high_water = hw
        self.set_decayed(title_id, float(snap.get("pop", 0.0)), int(snap.get("pop_ts", 0)))

    def trending(
        self, country: str, window: str, n: int = 20, now_ts: int | None = None
    ) -> list[tuple[str, int]]:
        """Top ``n`` titles by plays in ``window`` in ``country`` (or ``ALL``) at ``now_ts``.

        ``now_ts`` defaults to the highest event time any owner has reported, so a
        title that stopped being watched falls out of the window.
        """
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}")
        now = self.high_water if now_ts is None else now_ts
        rows = []
        for tid, snap in self.snapshots.items():
            c = window_count(snap.get("buckets", {}), window, country, now)
            if c > 0:
                rows.append((tid, c))
        rows.sort(key=lambda kv: (-kv[1], kv[0]))
        return rows[:n]

    def countries(self) -> set[str]:
        """Countries with any windowed plays, plus ``ALL``."""
        out = {ALL}
        for snap in self.snapshots.values():
            for per in snap.get("buckets", {}).values():
                out.update(c for c in per if len(c) == 2 and c.isalpha())
        return out
