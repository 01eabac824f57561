"""Trending titles, globally and per country: decayed play counts in numpy arrays.

>>> t = CountryTrending(half_life_ms=3_600_000)
>>> t.resize(3)
>>> t.observe(1, "FR", 0); t.observe(1, "FR", 0); t.observe(2, "US", 0)
>>> [round(float(x), 1) for x in t.vector("FR", 0)]
[0.0, 1.0, 0.0]
>>> t.top("FR", 0, 2)
[1]
"""

from __future__ import annotations

import numpy as np

from features.decay import DecayClock
from online_models.titles import grow

GLOBAL = "*"


class CountryTrending:
    """``vector(country, now)`` is each title's decayed play count in that country, in [0, 1]."""

    def __init__(self, half_life_ms: float = 12 * 3_600_000) -> None:
        self.clock = DecayClock(half_life_ms)
        self.counts: dict[str, np.ndarray] = {}
        self.n = 0
        # Local observations not yet handed to the exchange (online_models/federation.py).
        self.outbox: dict[str, np.ndarray] | None = None

    def resize(self, n: int) -> None:
        self.n = n
        for c, arr in self.counts.items():
            self.counts[c] = grow(arr, n)
        if self.outbox is not None:
            for c, arr in self.outbox.items():
                self.outbox[c] = grow(arr, n)

    def observe(self, idx: int, country: str | None, ts: int, weight: float = 1.0) -> None:
        factor = self.clock.needs_rebase(ts)
        if factor is not None:
            self._scale(factor)
        w = weight * self.clock.weight(ts)
        for key in (GLOBAL, country) if country else (GLOBAL,):
            arr = self.counts.get(key)
            if arr is None:
                arr = self.counts[key] = np.zeros(self.n, dtype=np.float64)
            arr[idx] += w
            if self.outbox is not None:
                ob = self.outbox.get(key)
                if ob is None:
                    ob = self.outbox[key] = np.zeros(self.n, dtype=np.float64)
                ob[idx] += w

    def _scale(self, factor: float) -> None:
        for counts in (self.counts, self.outbox or {}):
            for arr in counts.values():
                arr *= factor

    # --- exchange between workers (online_models/federation.py) -----------------------

    def track(self) -> None:
        """Start keeping local observations in :attr:`outbox` for the exchange."""
        if self.outbox is None:
            self.outbox = {}

    def take_outbox(self) -> tuple[int | None, dict[str, np.ndarray]]:
        """(clock reference, per-country mass) observed locally since the last take."""
        out = self.outbox or {}
        if self.outbox is not None:
            self.outbox = {}
        return self.clock.ref_ts, out

    def add(self, ref_ts: int, counts: dict[str, np.ndarray]) -> None:
        """Add mass learned elsewhere (rows aligned with this index), relative to ``ref_ts``."""
        f = self.clock.adopt(ref_ts, self._scale)
        for key, v in counts.items():
            arr = self.counts.get(key)
            if arr is None:
                arr = self.counts[key] = np.zeros(self.n, dtype=np.float64)
            m = min(len(arr), len(v))
            arr[:m] += v[:m] * f

    def raw(self, country: str | None) -> np.ndarray:
        arr = self.counts.get(country or GLOBAL)
        if arr is None:
            arr = self.counts.get(GLOBAL)
        return arr if arr is not None else np.zeros(self.n)

    def vector(self, country: str | None, now_ts: int) -> np.ndarray:
        """Counts relative to the top title of the country (falls back to global)."""
        arr = self.raw(country)
        top = float(arr.max()) if len(arr) else 0.0
        return (arr / top).astype(np.float32) if top > 0 else np.zeros(self.n, dtype=np.float32)

    def top(self, country: str | None, now_ts: int, k: int) -> list[int]:
        arr = self.raw(country)
        order = np.argsort(-arr)[:k]
        return [int(i) for i in order if arr[i] > 0]

    def state(self) -> dict:
        return {"ref_ts": self.clock.ref_ts, "counts": dict(self.counts)}

    def load(self, st: dict) -> None:
        self.clock.ref_ts = st["ref_ts"]
        self.counts = {k: np.asarray(v, dtype=np.float64) for k, v in st["counts"].items()}
        self.resize(max([self.n, *(len(a) for a in self.counts.values())]))
