"""Approximate maximum-inner-product search over vectors that keep changing (MF titles).

An inverted-file index of our own (no extra dependency): the rows are clustered by
k-means into about ``sqrt(n)`` lists; a query scores the centroids, reads the
``probe`` best lists and scores their members exactly. Cost per query: centroids
plus ``probe * n / lists`` rows instead of all ``n``.

Keeping it current: the owner calls :meth:`IVFIndex.mark` with the rows it changed
(an MF step touches the positive and its sampled negatives); marked rows are moved
to their nearest centroid before the next search, a few vector operations each.
Centroids are re-trained (k-means on a sample, then every row re-assigned) when the
catalog has doubled since the last training or as many row changes as there are rows
have accumulated four times over: O(n) work, amortised over at least 4n changes. A stale row only
costs recall (it may sit in a list that is not probed), never a wrong score.
Measured recall@60 against exact search: tests/unit/test_ann.py and docs/models.md.
"""

from __future__ import annotations

import numpy as np

EXACT_BELOW = 1024  # rows: below this one list, i.e. exact search


class IVFIndex:
    def __init__(self, probe: int = 12, seed: int = 0, iterations: int = 8) -> None:
        self.probe = probe
        self.iterations = iterations
        self.rng = np.random.default_rng(seed)
        self.centroids = np.zeros((0, 0), dtype=np.float32)
        self.assign = np.zeros(0, dtype=np.int64)  # row -> list (-1: not indexed yet)
        self.lists: list[dict[int, None]] = []
        self._arrays: dict[int, np.ndarray] = {}
        self.dirty: set[int] = set()
        self.trained_n = 0
        self.changes = 0

    def mark(self, rows: np.ndarray | list[int] | None, n: int) -> None:
        """Rows whose vectors changed (None: all ``n``)."""
        if rows is None:
            self.dirty.update(range(n))
            self.changes += n
            return
        rows = [int(r) for r in np.asarray(rows).ravel().tolist()]
        self.dirty.update(rows)
        self.changes += len(rows)

    def _train(self, vectors: np.ndarray) -> None:
        n, d = vectors.shape
        lists = 1 if n < EXACT_BELOW else int(np.sqrt(n))
        if lists == 1:
            cent = np.zeros((1, d), dtype=np.float32)
        else:
            sample = vectors[self.rng.choice(n, size=min(n, 64 * lists), replace=False)]
            cent = sample[self.rng.choice(len(sample), size=lists, replace=False)].copy()
            for _ in range(self.iterations):
                a = self._nearest(sample, cent)
                sums = np.zeros_like(cent)
                np.add.at(sums, a, sample)
                sizes = np.bincount(a, minlength=lists)
                full = sizes > 0
                cent[full] = sums[full] / sizes[full, None]
        self.centroids = cent.astype(np.float32)
        self.assign = self._nearest(vectors, self.centroids)
        self.lists = [{} for _ in range(len(cent))]
        for r, c in enumerate(self.assign.tolist()):
            self.lists[c][r] = None
        self._arrays = {}
        self.dirty.clear()
        self.trained_n = n
        self.changes = 0

    @staticmethod
    def _nearest(x: np.ndarray, cent: np.ndarray) -> np.ndarray:
        if len(cent) == 1:
            return np.zeros(len(x), dtype=np.int64)
        d = (cent * cent).sum(axis=1)[None, :] - 2.0 * (x @ cent.T)
        return np.argmin(d, axis=1)

    def sync(self, vectors: np.ndarray) -> None:
        """Bring the lists up to ``vectors`` (rows = the owner's rows, growing only)."""
        n = len(vectors)
        if n == 0:
            return
        if (
            n > 2 * self.trained_n
            or self.changes > 4 * max(n, EXACT_BELOW)
            or (self.trained_n < EXACT_BELOW <= n)
        ):
            self._train(vectors)
            return
        if n > len(self.assign):
            self.dirty.update(range(len(self.assign), n))
            self.assign = np.concatenate(
                [self.assign, np.full(n - len(self.assign), -1, dtype=np.int64)]
            )
        if not self.dirty:
            return
        rows = np.fromiter(self.dirty, dtype=np.int64, count=len(self.dirty))
        self.dirty.clear()
        new = self._nearest(vectors[rows], self.centroids)
        for r, c, old in zip(rows.tolist(), new.tolist(), self.assign[rows].tolist(), strict=True):
            if c == old:
                continue
            if old >= 0:
                self.lists[old].pop(r, None)
                self._arrays.pop(old, None)
            self.lists[c][r] = None
            self._arrays.pop(c, None)
        self.assign[rows] = new

    def search(
        self, vectors: np.ndarray, query: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, inner products) of about the ``k`` best rows for ``query``, best first."""
        self.sync(vectors)
        if len(vectors) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        cs = self.centroids @ query
        probe = min(self.probe, len(cs))
        best = np.argpartition(-cs, probe - 1)[:probe]
        parts = []
        for c in best.tolist():
            arr = self._arrays.get(c)
            if arr is None:
                arr = self._arrays[c] = np.fromiter(self.lists[c], dtype=np.int64)
            parts.append(arr)
        rows = np.concatenate(parts)
        scores = vectors[rows] @ query
        if len(rows) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            rows, scores = rows[top], scores[top]
        order = np.argsort(-scores, kind="stable")
        return rows[order], scores[order]
