"""Item-to-item co-watch similarity, maintained incrementally with decay.

When a user positively watches title ``t``, every title ``s`` among the user's
recent positive watches gets ``C[s, t] += w`` and ``C[t, s] += w`` (``w`` decays in
event time with ``half_life_ms`` and falls off with how far back ``s`` is). The
similarity is the cosine-normalised count ``C[s, t] / sqrt(n[s] * n[t])``. A user
is scored by summing the similarity rows of their recent watches; the strongest
anchor of each title gives the reason "because you watched X".

Rows are pruned to their ``max_neighbors`` strongest entries, so memory is bounded
by ``titles * max_neighbors``.

>>> cw = CoWatch()
>>> cw.resize(3)
>>> cw.observe(0, [], 0); cw.observe(1, [0], 0)
>>> scores, anchors = cw.scores([0])
>>> int(scores.argmax()), int(anchors[1])
(1, 0)
"""

from __future__ import annotations

import numpy as np

from features.decay import DecayClock
from online_models.titles import group_sum, grow


class CoWatch:
    def __init__(
        self,
        half_life_ms: float = 30 * 86_400_000,
        max_neighbors: int = 200,
        window: int = 10,
        position_decay: float = 0.85,
        target_norm: float = 0.5,
        anchor_norm: float = 0.5,
        anchor_decay: float | None = None,
        relative: bool = False,
    ) -> None:
        self.clock = DecayClock(half_life_ms)
        self.rows: dict[int, dict[int, float]] = {}
        self.counts = np.zeros(0, dtype=np.float64)
        self.max_neighbors = max_neighbors
        self.window = window
        self.position_decay = position_decay
        self.target_norm = target_norm
        self.anchor_norm = anchor_norm
        self.anchor_decay = position_decay if anchor_decay is None else anchor_decay
        self.relative = relative
        self.n = 0
        # Local observations not yet handed to the exchange (online_models/federation.py),
        # in this clock's units; None when the worker exchanges nothing.
        self.outbox: dict[int, dict[int, float]] | None = None
        self.outbox_counts: dict[int, float] = {}

    def resize(self, n: int) -> None:
        self.n = n
        self.counts = grow(self.counts, n)

    def observe(self, idx: int, recent: list[int], ts: int) -> None:
        """Learn that ``idx`` was watched after ``recent`` (most recent first)."""
        factor = self.clock.needs_rebase(ts)
        if factor is not None:
            self._scale(factor)
        w = self.clock.weight(ts)
        self.counts[idx] += w
        out = self.outbox
        if out is not None:
            self.outbox_counts[idx] = self.outbox_counts.get(idx, 0.0) + w
        pw = w
        for s in recent[: self.window]:
            if s == idx:
                continue
            for a, b in ((s, idx), (idx, s)):
                self._bump(a, b, pw)
                if out is not None:
                    orow = out.setdefault(a, {})
                    orow[b] = orow.get(b, 0.0) + pw
            pw *= self.position_decay

    def _bump(self, a: int, b: int, w: float) -> None:
        row = self.rows.setdefault(a, {})
        row[b] = row.get(b, 0.0) + w
        if len(row) > self.max_neighbors * 3 // 2:
            keep = sorted(row.items(), key=lambda kv: -kv[1])[: self.max_neighbors]
            self.rows[a] = dict(keep)

    def _scale(self, factor: float) -> None:
        self.counts *= factor
        for rows in (self.rows, self.outbox or {}):
            for row in rows.values():
                for k in row:
                    row[k] *= factor
        for k in self.outbox_counts:
            self.outbox_counts[k] *= factor

    # --- exchange between workers (online_models/federation.py) -----------------------

    def track(self) -> None:
        """Start keeping local observations in :attr:`outbox` for the exchange."""
        if self.outbox is None:
            self.outbox = {}
            self.outbox_counts = {}

    def take_outbox(self) -> tuple[int | None, dict[int, float], dict[int, dict[int, float]]]:
        """(clock reference, title mass, pair mass) observed locally since the last take."""
        counts, rows = self.outbox_counts, self.outbox or {}
        self.outbox_counts = {}
        if self.outbox is not None:
            self.outbox = {}
        return self.clock.ref_ts, counts, rows

    def add(
        self, ref_ts: int, counts: dict[int, float], pairs: dict[tuple[int, int], float]
    ) -> None:
        """Add mass learned elsewhere, stored relative to ``ref_ts`` (not put in the outbox)."""
        f = self.clock.adopt(ref_ts, self._scale)
        for i, v in counts.items():
            self.counts[i] += v * f
        for (a, b), v in pairs.items():
            self._bump(a, b, v * f)

    def similar(self, anchor: int) -> tuple[np.ndarray, np.ndarray]:
        """(neighbour indexes, similarities) of one title: ``C[a, t] / (n[a] ** anchor_norm
        * n[t] ** target_norm)`` (both 0.5: the cosine)."""
        row = self.rows.get(anchor)
        if not row or self.counts[anchor] <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        idx = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
        c = np.fromiter(row.values(), dtype=np.float64, count=len(row))
        den = np.maximum(self.counts[idx], 1e-12) ** self.target_norm
        if self.anchor_norm:
            den = den * self.counts[anchor] ** self.anchor_norm
        return idx, c / den

    def sparse(self, recent: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(titles, scores, anchors) for a viewer whose recent positive watches are ``recent``:
        the neighbour rows of the last ``window`` of them summed (titles ascending), with
        the anchor that contributed most to each (the most recent on ties). Costs
        ``window * max_neighbors`` at most, whatever the catalog size."""
        idxs, vals, ancs = [], [], []
        rw = 1.0
        for a in recent[: self.window]:
            idx, sim = self.similar(a)
            if len(idx):
                idxs.append(idx)
                vals.append(rw * sim)
                ancs.append(np.full(len(idx), a, dtype=np.int64))
            rw *= self.anchor_decay
        if not idxs:
            empty = np.zeros(0, dtype=np.int64)
            return empty, np.zeros(0, dtype=np.float32), empty
        idx, val, anc = np.concatenate(idxs), np.concatenate(vals), np.concatenate(ancs)
        titles, total, _ = group_sum(idx, val)
        if self.relative:  # the viewer's best neighbour scores 1: the same scale on any log
            top = float(total.max())
            total = total / top if top > 0 else total
        total = total.astype(np.float32)
        order = np.lexsort((-val, idx))  # by title, strongest first, earlier anchor on ties
        first = np.ones(len(order), dtype=bool)
        first[1:] = idx[order][1:] != idx[order][:-1]
        return titles, total, anc[order[first]]

    def scores(self, recent: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sparse` spread over every title (anchor -1 where none): for tests and tools."""
        total = np.zeros(self.n, dtype=np.float32)
        anchors = np.full(self.n, -1, dtype=np.int64)
        idx, val, anc = self.sparse(recent)
        total[idx] = val
        anchors[idx] = anc
        return total, anchors

    def state(self) -> dict:
        keys = sorted(self.rows)
        lens = [len(self.rows[k]) for k in keys]
        cols = [c for k in keys for c in self.rows[k]]
        vals = [v for k in keys for v in self.rows[k].values()]
        return {
            "ref_ts": self.clock.ref_ts,
            "counts": self.counts,
            "row_keys": np.asarray(keys, dtype=np.int64),
            "row_lens": np.asarray(lens, dtype=np.int64),
            "cols": np.asarray(cols, dtype=np.int64),
            "vals": np.asarray(vals, dtype=np.float64),
        }

    def load(self, st: dict) -> None:
        self.clock.ref_ts = st["ref_ts"]
        self.counts = np.asarray(st["counts"], dtype=np.float64)
        self.rows = {}
        pos = 0
        for k, n in zip(st["row_keys"].tolist(), st["row_lens"].tolist(), strict=True):
            cols = st["cols"][pos : pos + n].tolist()
            vals = st["vals"][pos : pos + n].tolist()
            self.rows[int(k)] = dict(zip(cols, vals, strict=True))
            pos += n
        self.n = max(self.n, len(self.counts))
        self.counts = grow(self.counts, self.n)
