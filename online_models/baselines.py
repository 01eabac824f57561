"""Simple recommenders the replay asks on the same requests as the model, to keep it honest.

A model's figures mean little alone: on time-ordered viewing logs a few lines of
counting are strong. Each baseline learns only from positive viewings
(:meth:`learn_one`: user, title index, event time) and answers with
:meth:`top` under the same ``allowed`` mask as the model (available, not watched,
not in progress). Ties and empty scores fall back to most-popular-so-far order,
so every baseline fills its list.

* :class:`MostPopular`: positive viewings so far.
* :class:`DecayedPopularity`: positive viewings with an exponential half-life in
  event time (what is popular *now*).
* :class:`CoOccurrence`: item-to-item co-occurrence counted over each viewer's
  last ``window`` positives; a viewer is scored by summing the rows of their own
  last ``window`` positives (the "ten-line" recommender of the issue).

>>> pop, co = MostPopular(), CoOccurrence(window=2)
>>> for u, i in [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 2), ("c", 2)]:
...     pop.learn_one(u, i, 0); co.learn_one(u, i, 0)
>>> allowed = np.array([True, True, True])
>>> pop.top("d", allowed, ["x", "y", "z"], 2, 0)
['x', 'y']
>>> co.learn_one("d", 2, 0)
>>> co.top("d", np.array([True, True, False]), ["x", "y", "z"], 1, 0)
['x']
"""

from __future__ import annotations

import math

import numpy as np

from online_models.titles import grow


def _top(scores: np.ndarray, allowed: np.ndarray, ids: list[str], k: int) -> list[str]:
    """The ``k`` best allowed titles by score (stable: ties keep index order)."""
    s = np.full(len(allowed), -np.inf)
    m = min(len(scores), len(allowed))
    s[:m] = scores[:m]
    s[m:] = 0.0
    s = np.where(allowed, s, -np.inf)
    kk = min(k, int(np.isfinite(s).sum()))
    if kk <= 0:
        return []
    top = np.argpartition(-s, kk - 1)[:kk]
    top = top[np.lexsort((top, -s[top]))]
    return [ids[i] for i in top.tolist()]


class MostPopular:
    """Most positive viewings so far (no decay), as a vector over the title index."""

    name = "most-popular"

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.float64)

    def learn_one(self, user: str, idx: int, ts: int) -> None:
        if idx >= len(self.counts):
            self.counts = grow(self.counts, max(idx + 1, 2 * len(self.counts)))
        self.counts[idx] += 1.0

    def scores(self, user: str, ts: int) -> np.ndarray:
        return self.counts

    def top(self, user: str, allowed: np.ndarray, ids: list[str], k: int, ts: int) -> list[str]:
        return _top(self.scores(user, ts), allowed, ids, k)


class DecayedPopularity(MostPopular):
    """Positive viewings weighted ``2 ** ((ts - now) / half_life)``: popular lately.

    Stored in log-scale units relative to a reference time (rebased when they grow),
    so an update is O(1) and the ranking needs no rescaling.
    """

    name = "decayed-popularity"

    def __init__(self, half_life_ms: float = 7 * 86_400_000) -> None:
        super().__init__()
        self.inv_tau = math.log(2) / half_life_ms
        self.ref: int | None = None
        self.pop = MostPopular()  # tie-break and fill

    def learn_one(self, user: str, idx: int, ts: int) -> None:
        if self.ref is None:
            self.ref = ts
        x = (ts - self.ref) * self.inv_tau
        if x > 40.0:
            self.counts *= math.exp(-x)
            self.ref, x = ts, 0.0
        if idx >= len(self.counts):
            self.counts = grow(self.counts, max(idx + 1, 2 * len(self.counts)))
        self.counts[idx] += math.exp(x)
        self.pop.learn_one(user, idx, ts)

    def scores(self, user: str, ts: int) -> np.ndarray:
        top = float(self.counts.max()) if len(self.counts) else 0.0
        if top <= 0:
            return self.pop.counts
        # decayed mass first; all-time count only breaks ties (scaled below one unit)
        return self.counts / top * 1e6 + self.pop.counts / (1.0 + self.pop.counts.max())


class CoOccurrence:
    """Item-to-item co-occurrence over each viewer's last ``window`` positive viewings."""

    name = "co-occurrence"

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self.rows: dict[int, dict[int, float]] = {}
        self.recent: dict[str, list[int]] = {}
        self.pop = MostPopular()

    def learn_one(self, user: str, idx: int, ts: int) -> None:
        recent = self.recent.setdefault(user, [])
        for s in recent:
            if s != idx:
                a = self.rows.setdefault(s, {})
                a[idx] = a.get(idx, 0.0) + 1.0
                b = self.rows.setdefault(idx, {})
                b[s] = b.get(s, 0.0) + 1.0
        if idx in recent:
            recent.remove(idx)
        recent.insert(0, idx)
        del recent[self.window :]
        self.pop.learn_one(user, idx, ts)

    def scores(self, user: str, ts: int) -> np.ndarray:
        pop = self.pop.counts
        s = pop / (1.0 + (pop.max() if len(pop) else 0.0))  # below one co-occurrence
        for a in self.recent.get(user, ()):
            row = self.rows.get(a)
            if row:
                hi = max(row)
                if hi >= len(s):
                    s = grow(s, hi + 1)
                idx = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
                s[idx] += np.fromiter(row.values(), dtype=np.float64, count=len(row))
        return s

    def top(self, user: str, allowed: np.ndarray, ids: list[str], k: int, ts: int) -> list[str]:
        return _top(self.scores(user, ts), allowed, ids, k)


def default_baselines() -> list[MostPopular | CoOccurrence]:
    """The baselines every replay reports, most popular first."""
    return [MostPopular(), DecayedPopularity(), CoOccurrence()]
