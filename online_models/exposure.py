"""Exposure-aware re-ranking: what the rows have shown against what viewers watch.

Every served row counts its titles (:meth:`Exposure.served`), with a half-life counted in
served rows (not in event time, so the same setting means the same on a log of days and
on one of decades); every positive viewing counts for its title
(:meth:`Exposure.demanded`). For a title, ``x`` is its share of the served slots and ``y``
its share of the positive viewings, each relative to an even share (``1 / titles``).
Serving uses them twice (:meth:`online_models.recommender.Recommender.recommend`):

* **calibration**: a candidate's score loses ``weight * log1p(x / (1 + demand_weight *
  y))`` (:meth:`Exposure.penalty`). A title shown far more often than it is watched is
  pushed down; one watched in proportion to its exposure hardly moves; one rarely shown
  not at all. On a log where a few titles fill most rows without being watched (KuaiRand)
  this frees their slots for others; where the most shown are the most watched
  (MovieLens) it changes little.
* **exploration**: a share of each row (``explore_share``, the last slot of ten) goes to
  the best-scored *candidate* (a title some source proposed for this viewer) that the
  rows have shown less than ``explore_below`` times an even share
  (:meth:`Exposure.under`); when there is none, the row is left as ranked.

Per request the cost is a lookup of the candidates' counts and an update of the served
rows: nothing reads every title (issue 15). The half-life is applied by a growing unit
(each served row counts ``unit``, the unit grows by ``2 ** (1 / half_life_rows)`` per row,
and all counts are rescaled once the unit reaches 2**40: one pass over the titles every
40 half-lives). No randomness: the same events and requests give the same rows.

>>> ex = Exposure(weight=1.0, demand_weight=1.0, explore_below=0.5)
>>> ex.resize(4)
>>> for _ in range(3):
...     ex.served([0, 1])
>>> ex.demanded(1)
>>> [round(float(p), 2) for p in ex.penalty(np.array([0, 1, 2]))]
[1.1, 0.34, 0.0]
>>> ex.under(np.array([0, 1, 2, 3])).tolist()
[False, False, True, True]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from online_models.titles import grow

RESCALE_AT = 2.0**40


class Exposure:
    def __init__(
        self,
        half_life_rows: float = 5000,
        weight: float = 1.6,
        demand_weight: float = 3.0,
        explore_below: float = 0.02,
        explore_share: float = 0.1,
    ) -> None:
        self.keep = 0.5 ** (1.0 / half_life_rows) if half_life_rows else 1.0
        self.weight = weight
        self.demand_weight = demand_weight
        self.explore_below = explore_below
        self.explore_share = explore_share
        self.n = 0
        self._shown = np.zeros(0, dtype=np.float64)  # served slots, in units of `_unit`
        self._unit = 1.0
        self.total = 0.0  # decayed served slots (in slots)
        self.demand = np.zeros(0, dtype=np.float64)  # positive viewings per title
        self.demand_total = 0.0

    def resize(self, n: int) -> None:
        self.n = n
        self._shown = grow(self._shown, n)
        self.demand = grow(self.demand, n)

    def slots(self, k: int) -> int:
        """How many of a row of ``k`` explore (0 below 1 / explore_share)."""
        return int(k * self.explore_share + 1e-9)

    def shown(self, rows: np.ndarray) -> np.ndarray:
        """Decayed served slots of these titles."""
        return self._shown[rows] / self._unit

    def _relative(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x, y): exposure and demand of these titles relative to an even share."""
        x = (
            self.shown(rows) * (self.n / self.total)
            if self.total > 0
            else np.zeros(len(rows), dtype=np.float64)
        )
        y = (
            self.demand[rows] * (self.n / self.demand_total)
            if self.demand_total > 0
            else np.zeros(len(rows), dtype=np.float64)
        )
        return x, y

    def penalty(self, rows: np.ndarray) -> np.ndarray:
        """What each title's score loses: ``weight * log1p(x / (1 + demand_weight * y))``."""
        if not self.weight or len(rows) == 0:
            return np.zeros(len(rows), dtype=np.float64)
        x, y = self._relative(rows)
        return self.weight * np.log1p(x / (1.0 + self.demand_weight * y))

    def under(self, rows: np.ndarray) -> np.ndarray:
        """Titles shown less than ``explore_below`` times an even share (the explorers)."""
        x, _ = self._relative(rows)
        return x < self.explore_below

    def served(self, rows: Sequence[int]) -> None:
        """Count one served row."""
        self._unit /= self.keep
        self.total = self.total * self.keep + len(rows)
        if len(rows):
            self._shown[np.asarray(rows, dtype=np.int64)] += self._unit
        if self._unit >= RESCALE_AT:
            self._shown /= self._unit
            self._unit = 1.0

    def demanded(self, idx: int) -> None:
        """Count a positive viewing of title ``idx``."""
        self.demand[idx] += 1.0
        self.demand_total += 1.0

    def state(self) -> dict:
        return {
            "shown": self._shown[: self.n] / self._unit,
            "total": self.total,
            "demand": self.demand[: self.n].copy(),
            "demand_total": self.demand_total,
        }

    def load(self, st: dict) -> None:
        """Counts already placed on this index's rows (length ``n``)."""
        self._shown = np.asarray(st["shown"], dtype=np.float64).copy()
        self.demand = np.asarray(st["demand"], dtype=np.float64).copy()
        self._unit = 1.0
        self.total = float(st["total"])
        self.demand_total = float(st["demand_total"])
        self.resize(max(self.n, len(self._shown)))
