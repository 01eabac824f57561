"""Incremental implicit matrix factorisation: positive-only feedback, sampled negatives.

Each positive ``(user, title, weight)`` -- weight is the watched ratio -- takes one
logistic SGD step towards 1 for the watched title and towards 0 for
``negatives`` titles sampled in proportion to popularity (so popular titles are
not mistaken for personal taste). Prediction is ``p_u . q_i + b_i``.

Numpy, not River: River's FunkMF/BiasedMF cost 10-18 us per learn and have no
implicit-feedback sampling; this update is a handful of small vector operations.

Sampling negatives costs O(log n) (``popularity`` is a
:class:`~online_models.trending.CountryTrending` keeping a Fenwick tree), and the
nearest titles of a user come from an approximate index kept current with the rows
each step changes (:mod:`online_models.ann`): nothing per event reads every title.

Initial factors are seeded (CRC32) from a title's catalog row (``title:<row>``) and
from a user's id. Every worker numbers titles alike (the catalog topic has one
partition, read in order), so every worker starts a title from the same vector; that
keeps peers' title factors in one coordinate system when they are blended (see
:func:`blend_title_factors` and docs/models.md).

>>> mf = ImplicitMF(k=4, negatives=1, seed=1)
>>> mf.resize(5)
>>> p = mf.new_user("u")
>>> for _ in range(200):
...     mf.learn(p, 2, 1.0, popularity=None)
>>> int(mf.scores(p).argmax())
2
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from online_models.ann import DenseVectors, IVFIndex
from online_models.titles import grow, stable_seed


class PopularitySampler(Protocol):
    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray | None: ...


class ImplicitMF:
    def __init__(
        self,
        k: int = 16,
        lr: float = 0.05,
        reg: float = 0.005,
        negatives: int = 4,
        init_scale: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.k = k
        self.lr = lr
        self.reg = reg
        self.negatives = negatives
        self.init_scale = init_scale
        self.q = np.zeros((0, k), dtype=np.float32)
        # Each row's initial vector, kept so a checkpoint stores only the rows that moved
        # from it (at 50,000 titles 3,106 rows after 100,000 events: 0.3 MB, not 4.3); in
        # a buffer that doubles, so an added title does not copy it (:attr:`q0`).
        self._q0 = np.zeros((0, k), dtype=np.float32)
        self.bias = np.zeros(0, dtype=np.float32)
        self.updates = np.zeros(0, dtype=np.float64)  # title updates since the last publish
        self.rng = np.random.default_rng(seed)
        self.n = 0
        self.index = IVFIndex(seed=seed)

    def resize(self, n: int) -> None:
        old = self.q.shape[0]
        if n <= old:
            return
        extra = self.initial_rows(old, n)
        self.q = np.concatenate([self.q, extra])
        if self._q0.shape[0] < n:
            buf = np.zeros((max(n, 2 * self._q0.shape[0]), self.k), dtype=np.float32)
            buf[:old] = self._q0[:old]
            self._q0 = buf
        self._q0[old:n] = extra
        self.bias = grow(self.bias, n)
        self.updates = grow(self.updates, n)
        self.n = n  # new rows join the index at its next search

    @property
    def q0(self) -> np.ndarray:
        """The initial vector of each row (a view: do not write)."""
        return self._q0[: self.q.shape[0]]

    def initial_rows(self, start: int, stop: int) -> np.ndarray:
        """The initial vectors of rows ``start`` to ``stop`` (what :meth:`resize` adds)."""
        if stop <= start:
            return np.zeros((0, self.k), dtype=np.float32)
        return np.stack([self._init_vec(f"title:{i}") for i in range(start, stop)])

    def _init_vec(self, key: str) -> np.ndarray:
        r = np.random.default_rng(stable_seed(key))
        return (r.standard_normal(self.k) * self.init_scale).astype(np.float32)

    def new_user(self, user_id: str) -> np.ndarray:
        """A user's starting vector (seeded by the id: every worker starts it alike). Users'
        vectors live in their per-user record (``UserState.mf``), not here."""
        return self._init_vec(f"user:{user_id}")

    def learn(
        self, p: np.ndarray, idx: int, weight: float, popularity: PopularitySampler | None
    ) -> None:
        """One positive (target 1, scaled by ``weight``) and negatives (target 0) drawn in
        proportion to ``popularity`` (uniformly when None or empty); updates the user's
        vector ``p`` in place."""
        negs = popularity.sample(self.rng, self.negatives) if popularity is not None else None
        if negs is None:
            negs = self.rng.integers(0, self.n, size=self.negatives)
        items = np.concatenate([[idx], negs[negs != idx]])
        targets = np.zeros(len(items), dtype=np.float32)
        targets[0] = 1.0
        weights = np.ones(len(items), dtype=np.float32)
        weights[0] = max(0.05, min(1.0, weight))
        q = self.q[items]
        pred = 1.0 / (1.0 + np.exp(-(q @ p + self.bias[items])))
        g = (pred - targets) * weights  # d loss / d logit
        grad_p = g @ q + self.reg * p
        self.q[items] -= self.lr * (g[:, None] * p[None, :] + self.reg * q)
        self.bias[items] -= self.lr * g
        p -= self.lr * grad_p
        self.updates[items] += 1
        self.index.mark(items, self.n)

    def changed(self, rows: np.ndarray | None) -> None:
        """Tell the nearest-title index that these title rows (None: all) were rewritten."""
        self.index.mark(rows, self.n)

    def scores(self, p: np.ndarray | None, rows: np.ndarray | None = None) -> np.ndarray:
        """Logit-scale affinity of the user vector ``p`` to ``rows`` (None: every title;
        biases left out: popularity)."""
        q = self.q if rows is None else self.q[rows]
        if p is None:
            return np.zeros(len(q), dtype=np.float32)
        return q @ p

    def nearest(
        self, p: np.ndarray | None, k: int, keep: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of about the ``k`` titles ``keep`` accepts with the highest
        :meth:`scores`, from the approximate index (recall: docs/models.md)."""
        if p is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return self.index.search(DenseVectors(self.q), p, k, keep)

    @staticmethod
    def confidence(learned: int, full_at: int = 10) -> float:
        """How far to trust a user vector that has learned ``learned`` examples."""
        return min(1.0, learned / full_at)

    def title_state(self) -> dict:
        """Title factors for a checkpoint: only the rows that moved from their initial
        vector (``q_rows``, rising, and their values ``q_at``); :meth:`full_q` restores
        the rest from the seeds."""
        rows = np.flatnonzero((self.q != self.q0).any(axis=1))
        return {
            "q_rows": rows.astype(np.int64),
            "q_at": self.q[rows],
            "n": int(self.q.shape[0]),
            "bias": self.bias,
            "updates": self.updates,
        }

    def full_q(self, st: dict) -> np.ndarray:
        """The dense factors of a checkpoint's rows, from :meth:`title_state`'s form (or
        from a dense ``q``, as checkpoints before it held); ValueError if malformed."""
        if "q_rows" not in st:
            q = st["q"]
            if not isinstance(q, np.ndarray) or q.ndim != 2 or q.shape[1] != self.k:
                raise ValueError(f"MF title factors must be (n, {self.k}) rows")
            return q
        n, rows, at = st["n"], st["q_rows"], st["q_at"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError("MF row count must be a non-negative integer")
        if not isinstance(rows, np.ndarray) or rows.ndim != 1 or rows.dtype.kind != "i":
            raise ValueError("MF moved rows must be a 1-d integer array")
        if len(rows) and (rows[0] < 0 or rows[-1] >= n or np.any(np.diff(rows) <= 0)):
            raise ValueError("MF moved rows must rise strictly below the row count")
        if not isinstance(at, np.ndarray) or at.shape != (len(rows), self.k):
            raise ValueError(f"MF moved rows' values must be ({len(rows)}, {self.k})")
        have = min(n, self.q0.shape[0])
        q = np.concatenate([self.q0[:have], self.initial_rows(have, n)])
        q[rows] = at
        return q

    def load_title_state(self, st: dict) -> None:
        q = np.asarray(self.full_q(st), dtype=np.float32)
        self.resize(q.shape[0])
        self.q[: q.shape[0]] = q
        self.bias[: q.shape[0]] = np.asarray(st["bias"], dtype=np.float32)
        self.updates[: q.shape[0]] = np.asarray(st["updates"], dtype=np.float64)
        self.changed(None)


def blend_title_factors(
    mine: np.ndarray,
    my_updates: np.ndarray,
    peers: list[tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Federated averaging of title factors: each title's rows weighted by how many updates
    each worker made to it since the last exchange (a worker that never saw a title does
    not drag it towards its initial vector).

    >>> a = np.array([[1.0, 0.0], [0.0, 0.0]]); b = np.array([[0.0, 0.0], [0.0, 1.0]])
    >>> blend_title_factors(a, np.array([3.0, 0.0]), [(b, np.array([1.0, 1.0]))]).tolist()
    [[0.75, 0.0], [0.0, 1.0]]
    """
    n = mine.shape[0]
    total = my_updates[:n].astype(np.float64).copy()
    acc = mine.astype(np.float64) * total[:, None]
    for q, upd in peers:
        m = min(n, q.shape[0])
        acc[:m] += q[:m].astype(np.float64) * upd[:m, None]
        total[:m] += upd[:m]
    out = mine.astype(np.float64).copy()
    seen = total > 0
    out[seen] = acc[seen] / total[seen, None]
    return out.astype(mine.dtype)
