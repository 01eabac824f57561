"""One shard's aggregator: every worker's latest contribution folded into one global part.

Titles are sharded by title partition (the producer's partitioner over the title-events
topic); the ranker, global, goes with shard 0. The aggregator of shard ``s`` keeps the
latest contribution of each worker to ``s`` and folds the *difference* to the one it
folded before into the global accumulator ``G_s``, exactly as a worker used to merge
each peer: counts additive (decayed masses converted between clock references), MF
factors and the ranker by the configured rule (``sum``: added; ``blend``: the
update-weighted mean of the displacements folded in the round, so federated averaging is
computed once, here). :meth:`snapshot` closes the round: ``G_s`` with ``included``, the
(run, seq) of each worker's part it holds, which a worker needs to take its own part out.

Stateless across hand-overs for counts and ``sum``: folding every worker's latest
contribution from nothing gives the same ``G_s``. A ``blend`` depends on the rounds it was
folded in; a new aggregator re-derives it in one round (docs/models.md).

No I/O: streams/adapters/title_exchange.py feeds it records and publishes its snapshots;
:class:`online_models.federation.Federation` does the same in-process.
"""

from __future__ import annotations

import numpy as np

from online_models.checkpoint import CheckpointError
from online_models.exchange_parts import (
    FACTOR_RULES,
    RANKER_RULES,
    Contribution,
    Dims,
    Part,
    Snapshot,
    Sparse,
    cut,
    decode_contribution,
    encode_snapshot,
    used_rows,
)
from online_models.mf import blend_title_factors
from online_models.ranker import MODELS
from online_models.titles import grow


class ShardAggregator:
    """Folds contributions to shard ``shard`` of ``shards`` (see the module docstring)."""

    def __init__(
        self,
        shard: int,
        shards: int,
        dims: Dims,
        by: str,
        factors: str = "sum",
        ranker: str = "blend",
    ) -> None:
        if factors not in FACTOR_RULES or ranker not in RANKER_RULES:
            raise ValueError(f"unknown merge rule {factors!r} / {ranker!r}")
        self.shard, self.shards, self.dims, self.by = shard, shards, dims, by
        self.factors, self.ranker_rule = factors, ranker
        self.ids: list[str] = []  # this shard's titles, in the order first seen
        self.index: dict[str, int] = {}
        self.g = Part.empty(0, dims.k, dims.nf)
        self.latest: dict[str, Sparse] = {}
        self.included: dict[str, tuple[str, int]] = {}
        self.changed = False  # folded something since the last snapshot
        self._open_round()

    def _open_round(self) -> None:
        n, k, nf = len(self.ids), self.dims.k, self.dims.nf
        self.win_mf, self.win_n = np.zeros((n, k + 1)), np.zeros(n)
        self.win_rk = {h: np.zeros(nf + 1) for h in MODELS}
        self.win_rk_n = dict.fromkeys(MODELS, 0)

    def rows_of(self, ids: list[str]) -> np.ndarray:
        """Rows of ``ids`` in this aggregator, new titles appended."""
        out = np.empty(len(ids), dtype=np.int64)
        for i, t in enumerate(ids):
            r = self.index.get(t)
            if r is None:
                r = self.index[t] = len(self.ids)
                self.ids.append(t)
            out[i] = r
        return out

    def fold(self, raw: bytes) -> Contribution:
        """Fold one contribution record in (CheckpointError, nothing folded, if invalid)."""
        c = decode_contribution(raw, self.rows_of, self.dims)
        if c.shard != self.shard or c.shards != self.shards:
            raise CheckpointError(
                f"contribution to shard {c.shard}/{c.shards} read as {self.shard}/{self.shards}"
            )
        if self.included.get(c.worker) == (c.run, c.seq):
            return c  # the same record read again
        n = len(self.ids)
        self.g.fit(n)
        self.win_mf, self.win_n = grow(self.win_mf, n), grow(self.win_n, n)
        new, old = c.part, self.latest.get(c.worker)
        dims = self.dims
        self.g.add(new, 1.0, dims, factors=False, ranker=False)
        if old is not None:
            self.g.add(old, -1.0, dims, factors=False, ranker=False)
        d, dn = np.zeros((n, dims.k + 1)), np.zeros(n)
        d[new.rows] += new.mf
        dn[new.rows] += new.mf_n
        if old is not None:
            d[old.rows] -= old.mf
            dn[old.rows] -= old.mf_n
        if self.factors == "sum":
            step = d
        else:
            w = np.maximum(dn, 0.0)
            blended = blend_title_factors(self.win_mf, self.win_n, [(d, w)])
            step = np.where((w > 0)[:, None], blended - self.win_mf, d)
            self.win_mf = self.win_mf + step
            self.win_n = self.win_n + w
        self.g.mf += step
        self.g.mf_n += dn
        if self.ranker_rule != "local" and (new.rk is not None or old is not None):
            self._fold_ranker(new, old)
        self.latest[c.worker] = new
        self.included[c.worker] = (c.run, c.seq)
        self.changed = True
        return c

    def _fold_ranker(self, new: Sparse, old: Sparse | None) -> None:
        zero = np.zeros(self.dims.nf + 1)
        for h in MODELS:
            dr = (new.rk[h] if new.rk is not None else zero) - (
                old.rk[h] if old is not None and old.rk is not None else zero
            )
            drn = new.rk_n[h] - (old.rk_n[h] if old is not None else 0)
            if self.ranker_rule == "blend" and drn > 0:
                nb = blend_title_factors(
                    self.win_rk[h][None, :],
                    np.array([float(self.win_rk_n[h])]),
                    [(dr[None, :], np.array([float(drn)]))],
                )[0]
                step = nb - self.win_rk[h]
                self.win_rk[h] = nb
                self.win_rk_n[h] += drn
            else:
                step = dr
            self.g.rk[h] = self.g.rk[h] + step
            self.g.rk_n[h] += drn

    def snapshot(self) -> Snapshot:
        """``G_s`` as of now, with what it includes; closes the blend round."""
        n = len(self.ids)
        self.g.fit(n)
        g = self.g
        rows = np.flatnonzero(used_rows(g, n))
        part = cut(g, rows, g.cw_pairs, ranker=self.shard == 0)
        self.changed = False
        self._open_round()
        return Snapshot(self.shard, self.shards, self.by, dict(self.included), part)

    def publish(self, version: str, gen: int) -> bytes:
        """The snapshot record (checkpoint codec bytes)."""
        return encode_snapshot(self.snapshot(), self.ids, version, gen)
