"""Title-side contributions as data: dense :class:`Part`, sparse :class:`Sparse`, codecs.

A *contribution* is what some workers learned about titles (online_models/federation.py):
MF displacements and update counts, decayed co-watch and per-country masses with their
clock references, ranker displacements and example counts. It lives in two forms:

* :class:`Part`: dense over the holder's title rows, for arithmetic;
* :class:`Sparse`: the titles a record carries only (its size follows what was learned,
  not the catalog), placed in the holder's rows; what records decode to, and what a
  worker keeps of its own past publications.

``Part.add(sparse, sign)`` is exact bookkeeping: decayed masses are converted to the
newer of the two clock references (factors <= 1, so nothing overflows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from online_models import checkpoint as codec
from online_models.checkpoint import CheckpointError
from online_models.ranker import MODELS
from online_models.recommender import Recommender
from online_models.titles import grow

DECAYED = ("trending", "popular")
FACTOR_RULES = ("sum", "blend")
RANKER_RULES = ("sum", "blend", "local")
# title ids -> rows in the holder's numbering (-1: a title the holder does not know)
RowsOf = Callable[[list[str]], np.ndarray]


def factor(inv_tau: float, from_ref: int | None, to_ref: int | None) -> float:
    """Values stored against ``from_ref`` expressed against ``to_ref``."""
    if from_ref is None or to_ref is None:
        return 1.0
    return float(np.exp(max(-700.0, min(700.0, (from_ref - to_ref) * inv_tau))))


@dataclass(frozen=True)
class Dims:
    """What every holder of contributions must agree on: MF rank, ranker features, clocks."""

    k: int
    nf: int
    inv_tau: dict[str, float]  # cowatch, trending, popular

    @classmethod
    def of(cls, rec: Recommender) -> Dims:
        return cls(
            k=rec.mf.k,
            nf=len(rec.ranker.features),
            inv_tau={
                "cowatch": rec.cowatch.clock.inv_tau,
                "trending": rec.trending.clock.inv_tau,
                "popular": rec.popular.clock.inv_tau,
            },
        )


@dataclass
class Sparse:
    """A contribution over some titles: row ``rows[i]`` of the holder gets entry ``i``."""

    rows: np.ndarray  # int64, -1 for titles the holder does not know
    mf: np.ndarray  # m x (k + 1)
    mf_n: np.ndarray
    cw_ref: int | None
    cw_counts: np.ndarray
    pa: np.ndarray  # co-watch pairs, in the holder's rows
    pb: np.ndarray
    pv: np.ndarray
    decayed: dict[str, tuple[int | None, dict[str, np.ndarray]]]
    rk: dict[str, np.ndarray] | None  # None: this record carries no ranker
    rk_n: dict[str, int]


@dataclass
class Part:
    """A contribution over all of the holder's title rows."""

    mf: np.ndarray  # titles x (k + 1): factor displacements | bias displacement
    mf_n: np.ndarray  # titles: updates
    cw_ref: int | None = None
    cw_counts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cw_pairs: dict[tuple[int, int], float] = field(default_factory=dict)
    decayed: dict[str, tuple[int | None, dict[str, np.ndarray]]] = field(default_factory=dict)
    rk: dict[str, np.ndarray] = field(default_factory=dict)  # head -> weights | intercept
    rk_n: dict[str, int] = field(default_factory=dict)

    @classmethod
    def empty(cls, n: int, k: int, nf: int) -> Part:
        return cls(
            mf=np.zeros((n, k + 1)),
            mf_n=np.zeros(n),
            cw_counts=np.zeros(n),
            decayed={name: (None, {}) for name in DECAYED},
            rk={h: np.zeros(nf + 1) for h in MODELS},
            rk_n=dict.fromkeys(MODELS, 0),
        )

    def fit(self, n: int) -> None:
        """Grow the title rows to ``n`` (the catalog grew)."""
        self.mf = grow(self.mf, n)
        self.mf_n = grow(self.mf_n, n)
        self.cw_counts = grow(self.cw_counts, n)
        for name, (ref, counts) in self.decayed.items():
            self.decayed[name] = (ref, {c: grow(a, n) for c, a in counts.items()})

    def copy(self) -> Part:
        return Part(
            mf=self.mf.copy(),
            mf_n=self.mf_n.copy(),
            cw_ref=self.cw_ref,
            cw_counts=self.cw_counts.copy(),
            cw_pairs=dict(self.cw_pairs),
            decayed={
                name: (ref, {c: a.copy() for c, a in counts.items()})
                for name, (ref, counts) in self.decayed.items()
            },
            rk={h: w.copy() for h, w in self.rk.items()},
            rk_n=dict(self.rk_n),
        )

    def clear(self, rows: np.ndarray, ranker: bool) -> None:
        """Zero the titles where ``rows`` (a boolean mask) is set, their co-watch pairs
        (by first title) and, with ``ranker``, the ranker: a shard about to be replaced."""
        self.mf[rows] = 0.0
        self.mf_n[rows] = 0.0
        self.cw_counts[rows] = 0.0
        cleared = rows.tolist()  # a list: a numpy index per pair cost 1.6 ms a shard
        self.cw_pairs = {key: v for key, v in self.cw_pairs.items() if not cleared[key[0]]}
        for _, counts in self.decayed.values():
            for arr in counts.values():
                arr[rows] = 0.0
        if ranker:
            self.rk = {h: np.zeros_like(w) for h, w in self.rk.items()}
            self.rk_n = dict.fromkeys(self.rk_n, 0)

    def _adopt(self, name: str, ref: int, inv_tau: float) -> float:
        """Move this part's clock reference of ``name`` to ``ref`` if that is newer;
        returns the factor turning values stored against ``ref`` into this part's units."""
        mine = self.cw_ref if name == "cowatch" else self.decayed[name][0]
        if mine is not None and ref <= mine:
            return factor(inv_tau, ref, mine)
        if mine is not None:
            f = factor(inv_tau, mine, ref)
            if name == "cowatch":
                self.cw_counts *= f
                self.cw_pairs = {key: v * f for key, v in self.cw_pairs.items()}
            else:
                for arr in self.decayed[name][1].values():
                    arr *= f
        if name == "cowatch":
            self.cw_ref = ref
        else:
            self.decayed[name] = (ref, self.decayed[name][1])
        return 1.0

    def add(
        self,
        sp: Sparse,
        sign: float,
        dims: Dims,
        counts: bool = True,
        factors: bool = True,
        ranker: bool = True,
    ) -> None:
        """Add ``sign`` x ``sp`` (the parts it carries: counts, MF factors, ranker)."""
        ok = sp.rows >= 0
        r = sp.rows[ok]
        if factors:
            self.mf[r] += sign * sp.mf[ok]
            self.mf_n[r] += sign * sp.mf_n[ok]
        if counts:
            if sp.cw_ref is not None:
                f = sign * self._adopt("cowatch", sp.cw_ref, dims.inv_tau["cowatch"])
                self.cw_counts[r] += f * sp.cw_counts[ok]
                pairs = self.cw_pairs
                keys = zip(sp.pa.tolist(), sp.pb.tolist(), strict=True)
                for key, v in zip(keys, sp.pv.tolist(), strict=True):
                    pairs[key] = pairs.get(key, 0.0) + f * v
            n = self.mf.shape[0]
            for name in DECAYED:
                ref, arrs = sp.decayed[name]
                if ref is None:
                    continue
                f = sign * self._adopt(name, ref, dims.inv_tau[name])
                acc = self.decayed[name][1]
                for c, a in arrs.items():
                    if c not in acc:
                        acc[c] = np.zeros(n)
                    acc[c][r] += f * a[ok]
        if ranker and sp.rk is not None:
            for h in MODELS:
                self.rk[h] = self.rk[h] + sign * sp.rk[h]
                self.rk_n[h] += int(sign) * sp.rk_n[h]


# --- cutting a Part into records -------------------------------------------------------


def used_rows(p: Part, n: int) -> np.ndarray:
    """Boolean mask of the rows holding values (a title left out contributes 0; co-watch
    pairs name their titles apart, so a pair's titles need not be rows)."""
    used = (p.mf[:n] != 0).any(axis=1) | (p.mf_n[:n] != 0) | (p.cw_counts[:n] != 0)
    for _, counts in p.decayed.values():
        for arr in counts.values():
            used |= arr[:n] != 0
    return used


def cut(p: Part, rows: np.ndarray, pairs: dict[tuple[int, int], float], ranker: bool) -> Sparse:
    """The part's entries at ``rows`` (and the given pairs; both in the part's rows)."""
    keys = sorted(pairs)
    return Sparse(
        rows=rows.astype(np.int64),
        mf=p.mf[rows],
        mf_n=p.mf_n[rows],
        cw_ref=p.cw_ref,
        cw_counts=p.cw_counts[rows],
        pa=np.array([a for a, _ in keys], dtype=np.int64),
        pb=np.array([b for _, b in keys], dtype=np.int64),
        pv=np.array([pairs[key] for key in keys], dtype=np.float64),
        decayed={
            name: (ref, {c: a[rows] for c, a in counts.items()})
            for name, (ref, counts) in p.decayed.items()
        },
        rk={h: w.copy() for h, w in p.rk.items()} if ranker else None,
        rk_n=dict(p.rk_n) if ranker else dict.fromkeys(MODELS, 0),
    )


def whole(p: Part) -> Sparse:
    """All of a part, as a sparse one over the rows it touches."""
    n = p.mf.shape[0]
    return cut(p, np.flatnonzero(used_rows(p, n)), p.cw_pairs, ranker=True)


def sharded(p: Part, shard_of_row: np.ndarray, shards: int) -> list[Sparse]:
    """The part cut by shard: titles by ``shard_of_row``, pairs by their first title, the
    ranker (global, not per title) with shard 0."""
    n = len(shard_of_row)
    used = used_rows(p, n)
    pairs: list[dict[tuple[int, int], float]] = [{} for _ in range(shards)]
    for key, v in p.cw_pairs.items():
        if key[0] < n and key[1] < n:
            pairs[int(shard_of_row[key[0]])][key] = v
    return [
        cut(p, np.flatnonzero(used & (shard_of_row == s)), pairs[s], ranker=s == 0)
        for s in range(shards)
    ]


# --- the wire form: sparse, keyed by title id ------------------------------------------


def sparse_state(sp: Sparse, ids: list[str]) -> dict[str, Any]:
    """A sparse contribution keyed by title id (``ids``: the holder's title of each row)."""
    rows = sp.rows.tolist()
    at = {r: i for i, r in enumerate(rows)}
    extra: list[int] = []  # pairs' titles that carry no values here (another shard's)
    for r in (*sp.pa.tolist(), *sp.pb.tolist()):
        if r not in at:
            at[r] = len(at)
            extra.append(r)
    return {
        "ids": [ids[r] for r in rows],
        "pair_ids": [ids[r] for r in extra],
        "mf": sp.mf,
        "mf_n": sp.mf_n,
        "cw_ref": sp.cw_ref,
        "cw_counts": sp.cw_counts,
        "cw_a": np.array([at[a] for a in sp.pa.tolist()], dtype=np.int64),
        "cw_b": np.array([at[b] for b in sp.pb.tolist()], dtype=np.int64),
        "cw_v": sp.pv,
        "decayed": {
            name: {"ref": ref, "counts": counts} for name, (ref, counts) in sp.decayed.items()
        },
        "ranker": None if sp.rk is None else {h: {"w": sp.rk[h], "n": sp.rk_n[h]} for h in MODELS},
    }


def _check(arr: Any, name: str, m: int, ndim: int) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.ndim != ndim or arr.shape[0] != m:
        raise CheckpointError(f"{name}: expected {ndim}-d rows for {m} titles")
    return arr.astype(np.float64, copy=False)


def _ref(x: Any) -> int | None:
    return None if x is None else int(x)


def sparse_from_state(st: dict[str, Any], rows_of: RowsOf, dims: Dims) -> Sparse:
    """The holder's form of a wire contribution; CheckpointError if it is malformed."""
    try:
        ids = st["ids"]
        if not isinstance(ids, list) or not all(isinstance(t, str) for t in ids):
            raise CheckpointError("title ids must be a list of strings")
        m = len(ids)
        pair_ids = st.get("pair_ids", [])
        if not isinstance(pair_ids, list) or not all(isinstance(t, str) for t in pair_ids):
            raise CheckpointError("pair title ids must be a list of strings")
        if len(set(ids) | set(pair_ids)) != m + len(pair_ids):
            raise CheckpointError("title ids repeat")
        mf = _check(st["mf"], "mf", m, 2)
        if mf.shape[1] != dims.k + 1:
            raise CheckpointError(f"mf displacements of width {mf.shape[1]}, not {dims.k + 1}")
        a = np.asarray(st["cw_a"], dtype=np.int64)
        b = np.asarray(st["cw_b"], dtype=np.int64)
        v = np.asarray(st["cw_v"], dtype=np.float64)
        if not (a.ndim == b.ndim == v.ndim == 1 and len(a) == len(b) == len(v)):
            raise CheckpointError("co-watch pairs of different lengths")
        for x in (a, b):
            if len(x) and (x.max() >= m + len(pair_ids) or x.min() < 0):
                raise CheckpointError("co-watch pairs out of range")
        every = rows_of(ids + pair_ids)
        rows = every[:m]
        pa, pb = every[a], every[b]
        keep = (pa >= 0) & (pb >= 0)
        decayed = {}
        for name in DECAYED:
            d = st["decayed"][name]
            decayed[name] = (
                _ref(d["ref"]),
                {str(c): _check(arr, name, m, 1) for c, arr in d["counts"].items()},
            )
        rk, rk_n = None, dict.fromkeys(MODELS, 0)
        if st["ranker"] is not None:
            rk = {}
            for h in MODELS:
                w = np.asarray(st["ranker"][h]["w"], dtype=np.float64)
                if w.shape != (dims.nf + 1,):
                    raise CheckpointError(f"ranker {h}: {w.shape} weights for {dims.nf} features")
                rk[h], rk_n[h] = w, int(st["ranker"][h]["n"])
        return Sparse(
            rows=rows,
            mf=mf,
            mf_n=_check(st["mf_n"], "mf_n", m, 1),
            cw_ref=_ref(st["cw_ref"]),
            cw_counts=_check(st["cw_counts"], "cw_counts", m, 1),
            pa=pa[keep],
            pb=pb[keep],
            pv=v[keep],
            decayed=decayed,
            rk=rk,
            rk_n=rk_n,
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"bad contribution ({exc!r})") from None


def catalog_rows(rec: Recommender) -> RowsOf:
    """Rows of a worker's catalog (titles it does not know yet: -1, left out)."""

    def rows_of(ids: list[str]) -> np.ndarray:
        rec.titles.sync()
        index = rec.titles.index
        return np.array([index.get(t, -1) for t in ids], dtype=np.int64)

    return rows_of


def part_state(p: Part, ids: list[str]) -> dict[str, Any]:
    """A dense part for a checkpoint (sparse, keyed by title id)."""
    return sparse_state(whole(p), ids)


def part_from_state(st: dict[str, Any], rec: Recommender) -> Part:
    """A checkpointed part back in ``rec``'s rows."""
    dims = Dims.of(rec)
    sp = sparse_from_state(st, catalog_rows(rec), dims)
    p = Part.empty(rec.titles.n, dims.k, dims.nf)
    p.add(sp, 1.0, dims)
    return p


# --- records ---------------------------------------------------------------------------

CONTRIBUTION = "title-contribution"
SNAPSHOT = "title-global"


@dataclass(frozen=True)
class Contribution:
    """One worker's cumulative contribution to one shard, as published."""

    worker: str
    run: str  # this process's id: a seq is reused after a restart, (run, seq) never
    seq: int
    shard: int
    shards: int
    part: Sparse


@dataclass(frozen=True)
class Snapshot:
    """The sum (or blend) of every worker's contribution to one shard."""

    shard: int
    shards: int
    by: str  # the aggregating worker
    included: dict[str, tuple[str, int]]  # worker -> (run, seq) of its part in ``part``
    part: Sparse


def encode_contribution(c: Contribution, ids: list[str], version: str) -> bytes:
    state = {
        "kind": CONTRIBUTION,
        "worker": c.worker,
        "run": c.run,
        "seq": c.seq,
        "shard": c.shard,
        "shards": c.shards,
        "part": sparse_state(c.part, ids),
    }
    return codec.encode(state, {}, version, c.seq)


def decode_contribution(raw: bytes, rows_of: RowsOf, dims: Dims) -> Contribution:
    st = codec.decode(raw).state
    if st.get("kind") != CONTRIBUTION or not isinstance(st.get("worker"), str):
        raise CheckpointError("not a title contribution record")
    try:
        head = (str(st["run"]), int(st["seq"]), int(st["shard"]), int(st["shards"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"bad contribution header ({exc!r})") from None
    part = sparse_from_state(st["part"], rows_of, dims)
    return Contribution(st["worker"], *head, part)


def encode_snapshot(s: Snapshot, ids: list[str], version: str, gen: int) -> bytes:
    state = {
        "kind": SNAPSHOT,
        "shard": s.shard,
        "shards": s.shards,
        "by": s.by,
        "included": {w: [run, seq] for w, (run, seq) in s.included.items()},
        "part": sparse_state(s.part, ids),
    }
    return codec.encode(state, {}, version, gen)


def decode_snapshot(raw: bytes, rows_of: RowsOf, dims: Dims) -> Snapshot:
    st = codec.decode(raw).state
    if st.get("kind") != SNAPSHOT:
        raise CheckpointError("not a title snapshot record")
    try:
        included = {str(w): (str(v[0]), int(v[1])) for w, v in st["included"].items()}
        head = (int(st["shard"]), int(st["shards"]), str(st["by"]))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"bad snapshot header ({exc!r})") from None
    part = sparse_from_state(st["part"], rows_of, dims)
    return Snapshot(*head, included, part)
