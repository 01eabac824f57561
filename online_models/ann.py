"""Approximate maximum-inner-product search over vectors that keep changing.

An inverted-file index of our own (no extra dependency), used twice: over the MF
title factors (the user's nearest titles) and over the titles' tag vectors (content).
Rows are clustered by k-means into about ``sqrt(n)`` lists; a query scores the
centroids, reads the best lists until about ``scan`` rows and scores those exactly.
Cost per query: ``sqrt(n)`` centroids plus ``scan`` rows, instead of all ``n`` rows
(recall falls slowly as the catalog outgrows ``scan``).

Keeping it current: the owner calls :meth:`IVFIndex.mark` with the rows it changed
(an MF step touches the positive and its sampled negatives; a catalog change touches
the changed titles); marked and new rows are moved to their nearest centroid before
the next search, a few vector operations each, so a new title is findable at once.
Centroids are re-trained (k-means on a sample, then every row re-assigned) when the
rows have doubled since the last training or four times as many row changes as there
are rows have accumulated: O(n) work amortised over at least n events. A stale row
only costs recall (it may sit in a list that is not probed), never a wrong score.
Measured recall against exact search: tests/unit/test_ann.py and docs/models.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

EXACT_BELOW = 1024  # rows: below this one list, i.e. exact search


class Vectors(Protocol):
    """Row vectors the index reads (dense arrays or a sparse matrix behind it)."""

    def __len__(self) -> int: ...

    def dot(self, rows: np.ndarray, m: np.ndarray) -> np.ndarray:
        """``vectors[rows] @ m`` (``m`` 1-D: one score per row)."""
        ...

    def dense(self, rows: np.ndarray) -> np.ndarray:
        """``vectors[rows]`` as a dense float array."""
        ...


class DenseVectors:
    """:class:`Vectors` over a dense matrix."""

    def __init__(self, m: np.ndarray) -> None:
        self.m = m

    def __len__(self) -> int:
        return len(self.m)

    def dot(self, rows: np.ndarray, m: np.ndarray) -> np.ndarray:
        return self.m[rows] @ m

    def dense(self, rows: np.ndarray) -> np.ndarray:
        return self.m[rows]


class IVFIndex:
    def __init__(self, scan: int = 4096, seed: int = 0, iterations: int = 8) -> None:
        self.scan = scan
        self.iterations = iterations
        self.seed = seed
        self.centroids = np.zeros((0, 0), dtype=np.float32)
        self.sq = np.zeros(0, dtype=np.float32)  # squared centroid norms
        self.assign = np.zeros(0, dtype=np.int64)  # row -> list (-1: not indexed yet)
        self.lists: list[dict[int, None]] = []
        self._arrays: dict[int, np.ndarray] = {}
        self.dirty: set[int] = set()
        self.trained_n = 0
        self.changes = 0

    def mark(self, rows: np.ndarray | list[int] | None, n: int) -> None:
        """Rows whose vectors changed (None: all ``n``)."""
        if rows is None:
            self.dirty.update(range(min(n, len(self.assign))))
            self.changes += n
            return
        rows = np.asarray(rows, dtype=np.int64).ravel().tolist()
        self.dirty.update(rows)
        self.changes += len(rows)

    def _nearest(self, vec: Vectors, rows: np.ndarray) -> np.ndarray:
        if len(self.centroids) == 1:
            return np.zeros(len(rows), dtype=np.int64)
        out = np.empty(len(rows), dtype=np.int64)
        for a in range(0, len(rows), 4096):
            part = rows[a : a + 4096]
            d = self.sq[None, :] - 2.0 * np.asarray(vec.dot(part, self.centroids.T))
            out[a : a + 4096] = np.argmin(d, axis=1)
        return out

    def _train(self, vec: Vectors, dim: int) -> None:
        n = len(vec)
        lists = 1 if n < EXACT_BELOW else int(np.sqrt(n))
        rng = np.random.default_rng(self.seed + n)
        if lists == 1:
            cent = np.zeros((1, dim), dtype=np.float32)
        else:
            sample = np.asarray(
                vec.dense(np.sort(rng.choice(n, size=min(n, 32 * lists), replace=False))),
                dtype=np.float32,
            )
            cent = sample[rng.choice(len(sample), size=lists, replace=False)].copy()
            for _ in range(self.iterations):
                d = (cent * cent).sum(axis=1)[None, :] - 2.0 * (sample @ cent.T)
                a = np.argmin(d, axis=1)
                sums = np.zeros_like(cent)
                np.add.at(sums, a, sample)
                sizes = np.bincount(a, minlength=lists)
                full = sizes > 0
                cent[full] = sums[full] / sizes[full, None]
        self.centroids = cent
        self.sq = (cent * cent).sum(axis=1)
        self.assign = self._nearest(vec, np.arange(n))
        self.lists = [{} for _ in range(len(cent))]
        for r, c in enumerate(self.assign.tolist()):
            self.lists[c][r] = None
        self._arrays = {}
        self.dirty.clear()
        self.trained_n = n
        self.changes = 0

    def sync(self, vec: Vectors, dim: int) -> None:
        """Bring the lists up to ``vec`` (rows only ever added; ``dim`` may grow)."""
        n = len(vec)
        if n == 0:
            return
        if (
            n > 2 * self.trained_n
            or self.changes > 4 * max(n, EXACT_BELOW)
            or self.trained_n < EXACT_BELOW <= n
        ):
            self._train(vec, dim)
            return
        if dim > self.centroids.shape[1]:  # new dimensions (tags): zero in every centroid
            pad = np.zeros((len(self.centroids), dim - self.centroids.shape[1]), np.float32)
            self.centroids = np.concatenate([self.centroids, pad], axis=1)
        if n > len(self.assign):
            self.dirty.update(range(len(self.assign), n))
            self.assign = np.concatenate(
                [self.assign, np.full(n - len(self.assign), -1, dtype=np.int64)]
            )
        if not self.dirty:
            return
        rows = np.fromiter(self.dirty, dtype=np.int64, count=len(self.dirty))
        self.dirty.clear()
        new = self._nearest(vec, rows)
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
        self,
        vec: Vectors,
        query: np.ndarray,
        k: int,
        keep: Callable[[np.ndarray], np.ndarray] | None = None,
        scan: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, inner products) of about the ``k`` best rows for ``query`` among those
        ``keep`` accepts (a mask over the rows it is given), best first."""
        self.sync(vec, len(query))
        if len(vec) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        query = np.asarray(query, dtype=np.float32)
        cs = self.centroids[:, : len(query)] @ query
        per_list = max(1.0, len(vec) / len(cs))
        p = min(len(cs), max(1, round((scan or self.scan) / per_list)))
        best = np.argpartition(-cs, p - 1)[:p]
        parts = []
        for c in best.tolist():
            arr = self._arrays.get(c)
            if arr is None:
                arr = self._arrays[c] = np.fromiter(self.lists[c], dtype=np.int64)
            parts.append(arr)
        rows = np.concatenate(parts)
        if keep is not None and len(rows):
            rows = rows[keep(rows)]
        scores = np.asarray(vec.dot(rows, query))
        if len(rows) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            rows, scores = rows[top], scores[top]
        order = np.argsort(-scores, kind="stable")
        return rows[order], scores[order]
