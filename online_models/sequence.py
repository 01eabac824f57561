"""Item-to-item transitions from viewers' short-term sequences: what was just started
predicts what is started next.

Each fresh play of title ``t`` adds ``w * decay**d`` to the directed transition
``s -> t`` for the viewer's ``d``-th most recent play ``s`` (within ``window``), and
``backward`` times that to ``t -> s`` (order matters most, but a pair watched
together says something both ways). Plays are learned when they *start*: a
viewer with several titles in flight still has a sequence, where co-watch
counting over finished viewings has none yet. The weight ``w`` grades the
signal: the caller passes less for a play that later turns out an early abandon
(:meth:`correct`).

A viewer is scored by summing the transition rows of their last ``window`` plays
(``decay`` per step back), each entry divided by ``(n[s] * n[t]) ** norm``
(``norm`` 0.5: cosine-like, so popular titles do not dominate every row).
Rows are pruned to ``max_neighbors`` entries: memory is ``titles * max_neighbors``
and a viewer's scores cost ``window * max_neighbors`` (:meth:`ItemSequence.sparse`).

With ``half_life_ms``, what is learned at event time ``ts`` weighs ``2 ** (ts / half_life)``
(stored in log-scale units, :class:`features.decay.DecayClock`): older transitions fade
against newer ones, and pruning keeps the recent ones. A title's count is floored at one
play of now (``unit``, 1 without a half-life), and with ``norm`` 0.5 the scores do not
depend on the clock's reference (a pair's weight and the root of its two titles' counts
scale alike). The unit is not checkpointed: after a restart it is set by the next play.

>>> seq = ItemSequence(window=2)
>>> seq.resize(4)
>>> for a, b in [(0, 1), (0, 1), (0, 2), (3, 2)]:
...     seq.learn_one([], a); seq.learn_one([a], b)
>>> int(seq.scores([0]).argmax())
1
"""

from __future__ import annotations

import numpy as np

from features.decay import DecayClock
from online_models.titles import group_sum, grow


class ItemSequence:
    def __init__(
        self,
        window: int = 10,
        decay: float = 0.8,
        backward: float = 0.5,
        norm: float = 0.5,
        max_neighbors: int = 300,
        half_life_ms: float | None = None,
    ) -> None:
        self.window = window
        self.decay = decay
        self.backward = backward
        self.norm = norm
        self.max_neighbors = max_neighbors
        self.rows: dict[int, dict[int, float]] = {}
        self.counts = np.zeros(0, dtype=np.float64)
        self.n = 0
        self.clock = DecayClock(half_life_ms) if half_life_ms else None
        self.unit = 1.0  # the stored weight of one play now: the floor of a title's count

    def resize(self, n: int) -> None:
        self.n = n
        self.counts = grow(self.counts, n)

    def learn_one(self, recent: list[int], idx: int, w: float = 1.0, ts: int | None = None) -> None:
        """Learn that ``idx`` was started after ``recent`` (most recent first), at event
        time ``ts`` (needed only with a half-life)."""
        if idx >= len(self.counts):
            self.resize(idx + 1)
        if self.clock is not None and ts is not None:
            factor = self.clock.needs_rebase(ts)
            if factor is not None:
                self._scale(factor)
            self.unit = self.clock.weight(ts)
            w *= self.unit
        self.counts[idx] += w
        pw = w
        for s in recent[: self.window]:
            if s != idx:
                self._bump(s, idx, pw)
                if self.backward:
                    self._bump(idx, s, pw * self.backward)
            pw *= self.decay

    def correct(self, recent: list[int], idx: int, dw: float, ts: int | None = None) -> None:
        """Change the weight of ``idx``'s play (learned after ``recent``) by ``dw``, e.g.
        down when the viewing turned out an early abandon (``ts``: the outcome's time)."""
        self.learn_one(recent, idx, dw, ts)

    def _scale(self, factor: float) -> None:
        self.unit *= factor
        self.counts *= factor
        for row in self.rows.values():
            for k in row:
                row[k] *= factor

    def _bump(self, a: int, b: int, w: float) -> None:
        row = self.rows.get(a)
        if row is None:
            row = self.rows[a] = {}
        row[b] = row.get(b, 0.0) + w
        if len(row) > self.max_neighbors * 3 // 2:
            keep = sorted(row.items(), key=lambda kv: -kv[1])[: self.max_neighbors]
            self.rows[a] = dict(keep)

    def sparse(self, recent: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(titles ascending, scores) for a viewer whose recent plays are ``recent`` (most
        recent first): ``window * max_neighbors`` entries at most, whatever the catalog."""
        idxs, vals = [], []
        rw = 1.0
        counts, unit = self.counts, self.unit
        for a in recent[: self.window]:
            row = self.rows.get(a)
            if row:
                idx = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
                v = np.fromiter(row.values(), dtype=np.float64, count=len(row))
                keep = idx < self.n
                idx, v = idx[keep], v[keep]
                norm = (max(counts[a], unit) * np.maximum(counts[idx], unit)) ** self.norm
                idxs.append(idx)
                vals.append((rw * v / norm).astype(np.float32))
            rw *= self.decay
        if not idxs:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        titles, total, _ = group_sum(np.concatenate(idxs), np.concatenate(vals))
        return titles, total

    def scores(self, recent: list[int]) -> np.ndarray:
        """:meth:`sparse` spread over every title: for tests and tools."""
        total = np.zeros(self.n, dtype=np.float32)
        idx, val = self.sparse(recent)
        total[idx] = val
        return total

    def state(self) -> dict:
        """Rows as flat arrays (catalog indexes), for checkpoints."""
        keys = sorted(self.rows)
        return {
            "ref_ts": self.clock.ref_ts if self.clock is not None else None,
            "counts": self.counts,
            "row_keys": np.asarray(keys, dtype=np.int64),
            "row_lens": np.asarray([len(self.rows[k]) for k in keys], dtype=np.int64),
            "cols": np.asarray([c for k in keys for c in self.rows[k]], dtype=np.int64),
            "vals": np.asarray([v for k in keys for v in self.rows[k].values()], dtype=np.float64),
        }
