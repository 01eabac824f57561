"""Title-side state across workers: each worker's own contribution, exchanged and merged.

Events are keyed by user, so every worker learns the title side (MF title factors,
co-watch, trending, the ranker) from its own users only. The hot path stays local;
periodically each worker **publishes its contribution**: everything it learned *itself*
since it started, cumulative, keyed by title id:

* MF: the sum of its own SGD displacements of each title's factors and bias, and
  its update counts per title;
* co-watch: the decayed title mass and pair mass of the positives it observed;
* trending (12 h) and popularity (7 d): the decayed play mass per country;
* ranker: the sum of its own SGD displacements of both heads' weights and
  intercepts, and its example counts.

A receiver keeps the last contribution it applied from each peer and applies only the
**difference** (new minus applied). So peers' learning is counted exactly once: a record
read twice, or a compacted topic re-read from its start, changes nothing; a peer's
contribution that went backwards (it crashed and restored an older checkpoint) is
applied as a negative difference and re-learned as it replays. Mass received from peers
is never re-published (it does not go through the models' outboxes). Decayed masses
travel with the clock reference they are stored against (:meth:`DecayClock.adopt`).

Merge rules (``factors`` for MF title factors and biases, ``ranker`` for the ranker):

* counts (co-watch, trending, popularity): always added. Each worker's counts are a
  hash sample of users; after an exchange every worker holds the global counts.
* ``"sum"``: the peer's displacement is added, as if one worker had made all the SGD
  steps (in some order). The learning rate per title is that of one worker.
* ``"blend"``: the update-count-weighted mean of the displacements made in the round
  (:func:`online_models.mf.blend_title_factors`; examples-weighted for the ranker):
  federated averaging. A title every worker trains moves by the average step, so its
  effective learning rate is divided by the number of workers.
* ``"local"`` (ranker only): nothing is merged.

:class:`Federation` is the deterministic multi-worker simulation used by
``reelstream replay --workers N``: users go to partitions with the producer's
partitioner (passed in; ``streams.adapters.kafka_admin.kafka_partition``), partitions to
workers round-robin, and every ``exchange_every`` events every worker publishes and
merges its peers' records, through the same bytes the worker sends to Kafka.

>>> from features.catalog import Catalog, parse_title
>>> cat = Catalog()
>>> for t in ("a", "b"):
...     cat.upsert(parse_title({"title_id": t, "name": t, "genres": ["drama"]}))
>>> fed = Federation(cat, workers=2, partitions=2, partition_of=lambda u, n: int(u[1:]) % n,
...                  exchange_every=1)
>>> for i, u in enumerate(("u0", "u1")):
...     ev = {"event_id": f"e{i}", "event_type": "play", "user_id": u, "title_id": "a",
...           "ts": 1000 + i, "country": "FR", "position_s": 0}
...     _ = fed.engine_for(u).ingest(ev); fed.tick()
>>> [round(float(e.models.trending.raw("FR")[0]), 6) for e in fed.engines]  # both plays, once
[2.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.catalog import Catalog
from online_models import checkpoint as codec
from online_models.checkpoint import CheckpointError
from online_models.engine import Engine
from online_models.mf import blend_title_factors
from online_models.ranker import MODELS
from online_models.recommender import Recommender
from online_models.river_internals import set_linear_weights
from online_models.titles import grow

RECORD_KIND = "title-exchange"
FACTOR_RULES = ("sum", "blend")
RANKER_RULES = ("sum", "blend", "local")


@dataclass
class Part:
    """One worker's cumulative contribution, in the receiving worker's title rows."""

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
            decayed={"trending": (None, {}), "popular": (None, {})},
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


def _factor(inv_tau: float, from_ref: int | None, to_ref: int | None) -> float:
    """Values stored against ``from_ref`` expressed against ``to_ref``."""
    if from_ref is None or to_ref is None:
        return 1.0
    return float(np.exp(max(-700.0, min(700.0, (from_ref - to_ref) * inv_tau))))


class TitleExchange:
    """The exchange of one worker's title-side state (see the module docstring).

    :meth:`publish` returns the bytes of this worker's contribution record;
    :meth:`merge` applies a peer's record. :meth:`state` / :meth:`load` put the
    exchange's bookkeeping in the worker's checkpoint (docs/models.md, Durability).
    """

    def __init__(
        self, rec: Recommender, worker: str, factors: str = "sum", ranker: str = "blend"
    ) -> None:
        if factors not in FACTOR_RULES or ranker not in RANKER_RULES:
            raise ValueError(f"unknown merge rule {factors!r} / {ranker!r}")
        self.rec = rec
        self.worker = worker
        self.factors = factors
        self.ranker_rule = ranker
        for model in (rec.cowatch, rec.trending, rec.popular):
            model.track()
        rec.exchange = self  # checkpointed with the shared state (online_models/durable.py)
        rec.titles.sync()
        self.k = rec.mf.k
        self.nf = len(rec.ranker.features)
        n = rec.titles.n
        self.seq = 0
        self.mine = Part.empty(n, self.k, self.nf)
        self.applied: dict[str, Part] = {}
        self.received: dict[str, int] = {}  # peer -> seq of the record last applied
        self._reset_refs()
        rec.titles.listeners.append(self._grow)
        # Displacements of the round for the "blend" rules: own since the last publish,
        # and the round being blended (own published part plus peers merged so far).
        self.since_mf, self.since_n = np.zeros((n, self.k + 1)), np.zeros(n)
        self.win_mf, self.win_n = np.zeros((n, self.k + 1)), np.zeros(n)
        self.since_rk = {h: np.zeros(self.nf + 1) for h in MODELS}
        self.since_rk_n = dict.fromkeys(MODELS, 0)
        self.win_rk = {h: np.zeros(self.nf + 1) for h in MODELS}
        self.win_rk_n = dict.fromkeys(MODELS, 0)

    # --- reading and writing the models' parameters ------------------------------------

    def _mf_params(self) -> np.ndarray:
        mf = self.rec.mf
        return np.concatenate([mf.q, mf.bias[:, None]], axis=1).astype(np.float64)

    def _set_mf(self, params: np.ndarray) -> None:
        mf = self.rec.mf
        q = params[:, : self.k].astype(mf.q.dtype)
        moved = np.flatnonzero((mf.q != q).any(axis=1))
        mf.q[:] = q
        mf.bias[:] = params[:, self.k]
        mf.changed(moved)

    def _rk_params(self, head: str) -> np.ndarray:
        m = self.rec.ranker.models[head]
        w = m.weights
        return np.array([*(w.get(f, 0.0) for f in self.rec.ranker.features), m.intercept])

    def _set_rk(self, head: str, params: np.ndarray) -> None:
        r = self.rec.ranker
        m = r.models[head]
        set_linear_weights(m, zip(r.features, params[:-1].tolist(), strict=True), float(params[-1]))
        r._w = None

    def _reset_refs(self) -> None:
        """The models' parameters as of now are no local displacement."""
        self.mf_ref = self._mf_params()
        self.n_ref = self.rec.mf.updates.copy()
        self.rk_ref = {h: self._rk_params(h) for h in MODELS}
        self.rk_nref = dict(self.rec.ranker.learned)

    def _grow(self, n: int) -> None:
        """Titles added to the index: their initial vectors are no local displacement.
        (A listener of the title index, called right after the models grew.)"""
        old = self.mf_ref.shape[0]
        if n > old:
            self.mf_ref = grow(self.mf_ref, n)
            self.mf_ref[old:n] = self._mf_params()[old:n]
            self.n_ref = grow(self.n_ref, n)

    def _fit(self) -> int:
        rec = self.rec
        rec.titles.sync()
        n = rec.titles.n
        for name in ("since_mf", "since_n", "win_mf", "win_n"):
            setattr(self, name, grow(getattr(self, name), n))
        for part in (self.mine, *self.applied.values()):
            part.fit(n)
        return n

    # --- own contribution --------------------------------------------------------------

    def fold(self) -> None:
        """Move what this worker learned since the last fold into its contribution."""
        self._fit()
        rec, mine = self.rec, self.mine
        cur = self._mf_params()
        d = cur - self.mf_ref
        dn = rec.mf.updates - self.n_ref
        mine.mf += d
        mine.mf_n += dn
        self.since_mf += d
        self.since_n += dn
        self.mf_ref = cur
        self.n_ref = rec.mf.updates.copy()
        ref, counts, pairs = rec.cowatch.take_outbox()
        if counts or pairs:
            f = _factor(rec.cowatch.clock.inv_tau, mine.cw_ref, ref)
            mine.cw_counts *= f
            for key in mine.cw_pairs:
                mine.cw_pairs[key] *= f
            mine.cw_ref = ref
            for i, v in counts.items():
                mine.cw_counts[i] += v
            for a, row in pairs.items():
                for b, v in row.items():
                    mine.cw_pairs[(a, b)] = mine.cw_pairs.get((a, b), 0.0) + v
        for name in ("trending", "popular"):
            model = getattr(rec, name)
            ref, out = model.take_outbox()
            if not out:
                continue
            old_ref, acc = mine.decayed[name]
            f = _factor(model.clock.inv_tau, old_ref, ref)
            acc = {c: a * f for c, a in acc.items()}
            for c, a in out.items():
                acc[c] = grow(acc.get(c, np.zeros(len(a))), len(a))
                acc[c][: len(a)] += a
            mine.decayed[name] = (ref, acc)
        for h in MODELS:
            cur_w = self._rk_params(h)
            d = cur_w - self.rk_ref[h]
            dn_h = rec.ranker.learned[h] - self.rk_nref[h]
            mine.rk[h] = mine.rk[h] + d
            mine.rk_n[h] += dn_h
            self.since_rk[h] = self.since_rk[h] + d
            self.since_rk_n[h] += dn_h
            self.rk_ref[h] = cur_w
            self.rk_nref[h] = rec.ranker.learned[h]

    def publish(self) -> bytes:
        """This worker's contribution record (checkpoint codec bytes); opens a blend round."""
        self.fold()
        self.seq += 1
        self.win_mf, self.win_n = self.since_mf, self.since_n
        self.since_mf, self.since_n = np.zeros_like(self.win_mf), np.zeros_like(self.win_n)
        self.win_rk, self.win_rk_n = self.since_rk, self.since_rk_n
        self.since_rk = {h: np.zeros(self.nf + 1) for h in MODELS}
        self.since_rk_n = dict.fromkeys(MODELS, 0)
        return encode_record(self.rec, self.worker, self.seq, self.mine)

    # --- peers -------------------------------------------------------------------------

    def merge(self, raw: bytes) -> bool:
        """Apply a peer's record (its contribution minus what was applied before).

        Returns False for this worker's own record. Raises :class:`CheckpointError` for
        a record that is not a valid contribution (nothing is applied then).
        """
        worker, seq, part = decode_record(raw, self.rec)
        if worker == self.worker:
            return False
        n = self._fit()
        part.fit(n)
        old = self.applied.get(worker) or Part.empty(n, self.k, self.nf)
        rec = self.rec
        # counts: additive differences, in the peer's clock units
        cw = rec.cowatch
        f = _factor(cw.clock.inv_tau, old.cw_ref, part.cw_ref)
        dc = part.cw_counts - old.cw_counts * f
        pairs = {key: v - old.cw_pairs.get(key, 0.0) * f for key, v in part.cw_pairs.items()}
        for key, v in old.cw_pairs.items():
            if key not in part.cw_pairs:
                pairs[key] = -v * f
        cw_ref = part.cw_ref if part.cw_ref is not None else old.cw_ref
        if cw_ref is not None:
            cw.add(
                cw_ref,
                {int(i): float(dc[i]) for i in np.flatnonzero(dc)},
                {key: v for key, v in pairs.items() if v != 0.0},
            )
        for name in ("trending", "popular"):
            model = getattr(rec, name)
            ref, counts = part.decayed[name]
            old_ref, old_counts = old.decayed[name]
            if ref is None:
                ref = old_ref
            if ref is None:
                continue
            f = _factor(model.clock.inv_tau, old_ref, ref)
            delta = {c: a - old_counts.get(c, 0.0) * f for c, a in counts.items()}
            for c, a in old_counts.items():
                if c not in counts:
                    delta[c] = -a * f
            model.add(ref, delta)
        # MF title factors and biases
        d = part.mf - old.mf
        dn = part.mf_n - old.mf_n
        cur = self._mf_params()
        if self.factors == "sum":
            step = d
        else:
            w = np.maximum(dn, 0.0)
            blended = blend_title_factors(self.win_mf, self.win_n, [(d, w)])
            step = np.where((w > 0)[:, None], blended - self.win_mf, d)
            self.win_mf = self.win_mf + step
            self.win_n = self.win_n + w
        self._set_mf(cur + step)
        self.mf_ref = self.mf_ref + (self._mf_params() - cur)  # not a local displacement
        # ranker
        if self.ranker_rule != "local":
            for h in MODELS:
                dr = part.rk[h] - old.rk[h]
                drn = part.rk_n[h] - old.rk_n[h]
                cur_w = self._rk_params(h)
                if self.ranker_rule == "blend" and drn > 0:
                    nb = blend_title_factors(
                        self.win_rk[h][None, :],
                        np.array([float(self.win_rk_n[h])]),
                        [(dr[None, :], np.array([float(drn)]))],
                    )[0]
                    step_r = nb - self.win_rk[h]
                    self.win_rk[h] = nb
                    self.win_rk_n[h] += drn
                else:
                    step_r = dr
                self._set_rk(h, cur_w + step_r)
                self.rk_ref[h] = self.rk_ref[h] + (self._rk_params(h) - cur_w)
        self.applied[worker] = part
        self.received[worker] = seq
        rec._ctx = None
        return True

    # --- checkpoints -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The exchange's bookkeeping for the worker's shared checkpoint (after a fold, so
        the models' state and the contribution agree)."""
        self.fold()
        ids = list(self.rec.titles.ids)
        return {
            "worker": self.worker,
            "seq": self.seq,
            "mine": _part_state(self.mine, ids),
            "applied": {w: _part_state(p, ids) for w, p in self.applied.items()},
            "received": dict(self.received),
            "rounds": {
                "ids": ids,
                "since_mf": self.since_mf,
                "since_n": self.since_n,
                "win_mf": self.win_mf,
                "win_n": self.win_n,
                "since_rk": self.since_rk,
                "since_rk_n": self.since_rk_n,
                "win_rk": self.win_rk,
                "win_rk_n": self.win_rk_n,
            },
        }

    def load(self, st: dict[str, Any]) -> None:
        """Restore the bookkeeping (call after the models' shared state was imported)."""
        try:
            rec = self.rec
            n = self._fit()
            self.seq = int(st["seq"])
            self.mine = _part_from_state(st["mine"], rec)
            self.applied = {str(w): _part_from_state(p, rec) for w, p in st["applied"].items()}
            self.received = {str(w): int(s) for w, s in st["received"].items()}
            r = st["rounds"]
            rows = _rows(rec, r["ids"])
            ok = rows >= 0
            for name in ("since_mf", "since_n", "win_mf", "win_n"):
                arr = np.asarray(r[name], dtype=np.float64)
                out = np.zeros((n, *arr.shape[1:]))
                out[rows[ok]] = arr[ok]
                setattr(self, name, out)
            for name in ("since_rk", "win_rk"):
                setattr(self, name, {h: np.asarray(r[name][h], dtype=np.float64) for h in MODELS})
            for name in ("since_rk_n", "win_rk_n"):
                setattr(self, name, {h: int(r[name][h]) for h in MODELS})
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CheckpointError(f"bad exchange state ({exc!r})") from None
        owner = str(st["worker"])
        if owner != self.worker:
            # Another worker's shared state (a restart under a new id, or a hand-over at
            # start): the models hold its contribution and the ones it had applied.
            applied = {owner: self.mine, **self.applied}
            self.mine = applied.pop(self.worker, None) or Part.empty(n, self.k, self.nf)
            self.applied = applied
            self.received.pop(self.worker, None)
        for model in (rec.cowatch, rec.trending, rec.popular):
            model.take_outbox()  # the checkpoint was folded: nothing local is pending
        self._reset_refs()

    def adopt_all(self) -> None:
        """Count everything the models hold as this worker's own learning (state restored
        from a checkpoint written before the exchange existed)."""
        rec = self.rec
        n = self._fit()
        self.mine = Part.empty(n, self.k, self.nf)
        self.applied, self.received = {}, {}
        for model in (rec.cowatch, rec.trending, rec.popular):
            model.take_outbox()
        self._reset_refs()
        init = np.stack([rec.mf._init_vec(f"title:{i}") for i in range(n)]) if n else None
        if init is not None:
            self.mf_ref[:, : self.k] = init
            self.mf_ref[:, self.k] = 0.0
        self.n_ref = np.zeros(n)
        self.rk_ref = {h: np.zeros(self.nf + 1) for h in MODELS}
        self.rk_nref = dict.fromkeys(MODELS, 0)
        cw = rec.cowatch
        self.mine.cw_ref = cw.clock.ref_ts
        self.mine.cw_counts = grow(cw.counts.copy(), n)
        self.mine.cw_pairs = {(a, b): v for a, row in cw.rows.items() for b, v in row.items()}
        for name in ("trending", "popular"):
            model = getattr(rec, name)
            self.mine.decayed[name] = (
                model.clock.ref_ts,
                {c: grow(a.copy(), n) for c, a in model.counts.items()},
            )

    def dirty(self) -> bool:
        """Whether this worker learned anything since its last fold (worth publishing)."""
        rec = self.rec
        if rec.cowatch.outbox or rec.cowatch.outbox_counts:
            return True
        if rec.trending.outbox or rec.popular.outbox:
            return True
        if rec.ranker.learned != self.rk_nref:
            return True
        n = min(len(self.n_ref), len(rec.mf.updates))
        return bool((rec.mf.updates[:n] != self.n_ref[:n]).any())


# --- the record: a contribution keyed by title id --------------------------------------


def _part_state(p: Part, ids: list[str]) -> dict[str, Any]:
    """A contribution over the titles it touches only (a title left out contributes 0):
    its size follows what the worker learned about, not the catalog (a dense record was
    15 MB per worker and round at 50,000 titles, docs/scaling.md)."""
    n = len(ids)
    keys = sorted(p.cw_pairs)
    cw_a = np.array([a for a, _ in keys], dtype=np.int64)
    cw_b = np.array([b for _, b in keys], dtype=np.int64)
    used = (p.mf[:n] != 0).any(axis=1) | (p.mf_n[:n] != 0) | (p.cw_counts[:n] != 0)
    for _, counts in p.decayed.values():
        for arr in counts.values():
            used |= arr[:n] != 0
    used[cw_a] = True
    used[cw_b] = True
    rows = np.flatnonzero(used)
    at = np.full(n, -1, dtype=np.int64)  # catalog row -> position in this record
    at[rows] = np.arange(len(rows))
    return {
        "ids": [ids[i] for i in rows.tolist()],
        "mf": p.mf[rows],
        "mf_n": p.mf_n[rows],
        "cw_ref": p.cw_ref,
        "cw_counts": p.cw_counts[rows],
        "cw_a": at[cw_a],
        "cw_b": at[cw_b],
        "cw_v": np.array([p.cw_pairs[key] for key in keys], dtype=np.float64),
        "decayed": {
            name: {"ref": ref, "counts": {c: a[rows] for c, a in counts.items()}}
            for name, (ref, counts) in p.decayed.items()
        },
        "ranker": {h: {"w": p.rk[h], "n": p.rk_n[h]} for h in MODELS},
    }


def _rows(rec: Recommender, ids: Any) -> np.ndarray:
    if not isinstance(ids, list) or not all(isinstance(t, str) for t in ids):
        raise CheckpointError("title ids must be a list of strings")
    index = rec.titles.index
    return np.array([index.get(t, -1) for t in ids], dtype=np.int64)


def _placed(arr: Any, rows: np.ndarray, n: int, name: str, ndim: int) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.ndim != ndim or arr.shape[0] != len(rows):
        raise CheckpointError(f"{name}: expected {ndim}-d rows for {len(rows)} titles")
    out = np.zeros((n, *arr.shape[1:]))
    ok = rows >= 0
    out[rows[ok]] = arr[ok]
    return out


def _part_from_state(st: dict[str, Any], rec: Recommender) -> Part:
    try:
        rec.titles.sync()
        n = rec.titles.n
        rows = _rows(rec, st["ids"])
        k, nf = rec.mf.k, len(rec.ranker.features)
        mf = _placed(st["mf"], rows, n, "mf", 2)
        if mf.shape[1] != k + 1:
            raise CheckpointError(f"mf displacements of width {mf.shape[1]}, not {k + 1}")
        a = np.asarray(st["cw_a"], dtype=np.int64)
        b = np.asarray(st["cw_b"], dtype=np.int64)
        v = np.asarray(st["cw_v"], dtype=np.float64)
        if not (len(a) == len(b) == len(v)) or (len(a) and (a.max() >= len(rows) or a.min() < 0)):
            raise CheckpointError("co-watch pairs out of range")
        if len(b) and (b.max() >= len(rows) or b.min() < 0):
            raise CheckpointError("co-watch pairs out of range")
        la, lb = rows[a], rows[b]
        keep = (la >= 0) & (lb >= 0)
        pairs = dict(
            zip(
                zip(la[keep].tolist(), lb[keep].tolist(), strict=True),
                v[keep].tolist(),
                strict=True,
            )
        )
        decayed = {}
        for name in ("trending", "popular"):
            d = st["decayed"][name]
            decayed[name] = (
                None if d["ref"] is None else int(d["ref"]),
                {str(c): _placed(arr, rows, n, name, 1) for c, arr in d["counts"].items()},
            )
        rk, rk_n = {}, {}
        for h in MODELS:
            w = np.asarray(st["ranker"][h]["w"], dtype=np.float64)
            if w.shape != (nf + 1,):
                raise CheckpointError(f"ranker {h}: {w.shape} weights for {nf} features")
            rk[h], rk_n[h] = w, int(st["ranker"][h]["n"])
        return Part(
            mf=mf,
            mf_n=_placed(st["mf_n"], rows, n, "mf_n", 1),
            cw_ref=None if st["cw_ref"] is None else int(st["cw_ref"]),
            cw_counts=_placed(st["cw_counts"], rows, n, "cw_counts", 1),
            cw_pairs=pairs,
            decayed=decayed,
            rk=rk,
            rk_n=rk_n,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"bad contribution ({exc!r})") from None


def encode_record(rec: Recommender, worker: str, seq: int, part: Part) -> bytes:
    state = {"kind": RECORD_KIND, "worker": worker, "seq": seq}
    state["part"] = _part_state(part, list(rec.titles.ids))
    return codec.encode(state, {}, rec.model_version, seq)


def decode_record(raw: bytes, rec: Recommender) -> tuple[str, int, Part]:
    """(worker, seq, contribution in ``rec``'s title rows); CheckpointError if invalid."""
    st = codec.decode(raw).state
    if st.get("kind") != RECORD_KIND or not isinstance(st.get("worker"), str):
        raise CheckpointError("not a title-exchange record")
    return st["worker"], int(st["seq"]), _part_from_state(st["part"], rec)


# --- the simulation --------------------------------------------------------------------


def round_robin(partitions: int, workers: int) -> list[int]:
    """Worker of each partition (partition ``p`` -> worker ``p % workers``)."""
    return [p % workers for p in range(partitions)]


class Federation:
    """N engines fed like N workers of one consumer group, exchanging title-side state.

    ``partition_of(user_id, partitions)`` must be the producer's partitioner
    (``streams.adapters.kafka_admin.kafka_partition``: murmur2 of the key bytes, as aiokafka and
    the Java client do). ``exchange_every`` counts events over all workers; None (or 0)
    means the workers never exchange. An exchange is one synchronous round: every worker
    publishes, then every worker merges every peer's record; the lag it models is the
    exchange interval (a real worker also waits for Kafka, well under a second).
    """

    def __init__(
        self,
        catalog: Catalog,
        workers: int,
        partitions: int,
        partition_of: Callable[[str, int], int],
        exchange_every: int | None = None,
        factors: str = "sum",
        ranker: str = "blend",
    ) -> None:
        if workers < 1 or partitions < 1:
            raise ValueError("need at least one worker and one partition")
        self.engines = [Engine(catalog=catalog) for _ in range(workers)]
        self.owner = round_robin(partitions, workers)
        self.partitions = partitions
        self.partition_of = partition_of
        self.exchange_every = exchange_every or 0
        self.exchanges = (
            [
                TitleExchange(e.models, f"worker-{i}", factors=factors, ranker=ranker)
                for i, e in enumerate(self.engines)
            ]
            if self.exchange_every and workers > 1
            else []
        )
        self._worker: dict[str, int] = {}
        self.events = 0
        self.rounds = 0
        self.record_bytes = 0

    def worker_of(self, user_id: str) -> int:
        w = self._worker.get(user_id)
        if w is None:
            w = self._worker[user_id] = self.owner[self.partition_of(user_id, self.partitions)]
        return w

    def engine_for(self, user_id: str) -> Engine:
        return self.engines[self.worker_of(user_id)]

    def tick(self) -> None:
        """Count one ingested event; exchange when ``exchange_every`` events have passed."""
        self.events += 1
        if self.exchanges and self.events % self.exchange_every == 0:
            self.exchange()

    def exchange(self) -> None:
        records = [x.publish() for x in self.exchanges]
        self.record_bytes = max(self.record_bytes, *(len(r) for r in records))
        for x in self.exchanges:
            for raw in records:
                x.merge(raw)
        self.rounds += 1
