"""Title-side state across workers: contributions, sharded aggregation, one global snapshot.

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

**Sharded.** The contribution is cut by title partition ``s`` (the producer's
partitioner over the title-events topic; the ranker goes with shard 0), one record per
shard. The aggregator of shard ``s`` (:class:`~online_models.exchange_aggregator.ShardAggregator`,
run by the worker that holds title-events partition ``s``) folds each worker's latest
record into one global part ``G_s`` and publishes it as a snapshot with ``included``,
the (run, seq) of every worker's part it holds. Every worker follows the snapshots and
holds ``initial + own contribution now + sum over shards of (G_s - own part at the seq
G_s includes)``: it keeps its last few published parts to take its own out, and skips a
snapshot that includes a part it does not know (one of a previous run, just after a
restart) until a later one includes one it does. So a worker reads the catalog's state
once per round (the snapshots) plus the records of the shards it aggregates (one
worker's worth on average), however many workers there are.

A worker keeps the part it last applied (``applied``: what its models hold from
elsewhere) and applies only the **difference**. So every event's effect is counted
exactly once: a snapshot read twice changes nothing; a worker's contribution that went
backwards (it crashed and restored an older checkpoint) is folded as a negative
difference by its aggregator and re-learned as the worker replays. Mass received is
never re-published (it does not go through the models' outboxes). Decayed masses travel
with the clock reference they are stored against (:meth:`DecayClock.adopt`).

Merge rules (``factors`` for MF title factors and biases, ``ranker`` for the ranker),
applied by the aggregators:

* counts (co-watch, trending, popularity): always added. Each worker's counts are a
  hash sample of users; after an exchange every worker holds the global counts.
* ``"sum"``: every displacement is added, as if one worker had made all the SGD steps
  (in some order). The learning rate per title is that of one worker.
* ``"blend"``: the update-count-weighted mean of the displacements folded in the round
  (:func:`online_models.mf.blend_title_factors`; examples-weighted for the ranker):
  federated averaging. A title every worker trains moves by the average step, so its
  effective learning rate is divided by the number of workers.
* ``"local"`` (ranker only): nothing is merged.

:class:`Federation` is the deterministic multi-worker simulation used by
``reelstream replay --workers N``: users and titles go to partitions with the producer's
partitioner (passed in; ``streams.adapters.kafka_admin.kafka_partition``), partitions to
workers round-robin, and every ``exchange_every`` events every worker publishes, every
shard's aggregator folds and snapshots, and every worker merges the snapshots, through
the same bytes the worker sends to Kafka.

>>> from features.catalog import Catalog, parse_title
>>> cat = Catalog()
>>> for t in ("t0", "t1"):
...     cat.upsert(parse_title({"title_id": t, "name": t, "genres": ["drama"]}))
>>> fed = Federation(cat, workers=2, partitions=2, partition_of=lambda u, n: int(u[1:]) % n,
...                  exchange_every=1)
>>> for i, u in enumerate(("u0", "u1")):
...     ev = {"event_id": f"e{i}", "event_type": "play", "user_id": u, "title_id": "t0",
...           "ts": 1000 + i, "country": "FR", "position_s": 0}
...     _ = fed.engine_for(u).ingest(ev); fed.tick()
>>> [round(float(e.models.trending.raw("FR")[0]), 6) for e in fed.engines]  # both plays, once
[2.0, 2.0]
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.catalog import Catalog
from online_models.checkpoint import CheckpointError
from online_models.engine import Engine
from online_models.exchange_aggregator import ShardAggregator
from online_models.exchange_parts import (
    DECAYED,
    FACTOR_RULES,
    RANKER_RULES,
    Contribution,
    Dims,
    Part,
    Snapshot,
    Sparse,
    catalog_rows,
    decode_contribution,
    decode_snapshot,
    encode_contribution,
    factor,
    part_from_state,
    part_state,
    sharded,
    whole,
)
from online_models.ranker import MODELS
from online_models.recommender import Recommender
from online_models.river_internals import set_linear_weights
from online_models.titles import grow

__all__ = ["FACTOR_RULES", "RANKER_RULES", "Federation", "Part", "TitleExchange"]
HISTORY = 8  # own published parts kept, by seq, to take out of a snapshot
APPLIED = "<snapshots>"  # the checkpoint's key of what the models hold from elsewhere


class TitleExchange:
    """The exchange of one worker's title-side state (see the module docstring).

    :meth:`publish` returns this worker's contribution records, one per shard;
    :meth:`decode` reads a snapshot record and :meth:`merge` applies snapshots.
    :meth:`state` / :meth:`load` put the bookkeeping in the worker's checkpoint
    (docs/models.md, Durability). ``partition_of(title_id, shards)`` must be the
    producers' partitioner; ``run`` names this process (random by default).
    """

    def __init__(
        self,
        rec: Recommender,
        worker: str,
        factors: str = "sum",
        ranker: str = "blend",
        shards: int = 1,
        partition_of: Callable[[str, int], int] | None = None,
        run: str | None = None,
    ) -> None:
        if factors not in FACTOR_RULES or ranker not in RANKER_RULES:
            raise ValueError(f"unknown merge rule {factors!r} / {ranker!r}")
        if shards < 1:
            raise ValueError("need at least one shard")
        self.rec = rec
        self.worker = worker
        self.factors = factors
        self.ranker_rule = ranker
        self.shards = shards
        self.partition_of = partition_of or (lambda _t, _n: 0)
        self.run = run if run is not None else os.urandom(8).hex()
        for model in (rec.cowatch, rec.trending, rec.popular):
            model.track()
        rec.exchange = self  # checkpointed with the shared state (online_models/durable.py)
        rec.titles.sync()
        self.dims = Dims.of(rec)
        self.k = rec.mf.k
        self.nf = len(rec.ranker.features)
        n = rec.titles.n
        self.seq = 0
        self.mine = Part.empty(n, self.k, self.nf)
        self.applied = Part.empty(n, self.k, self.nf)  # what the models hold from elsewhere
        self.received: dict[int, dict[str, Any]] = {}  # shard -> snapshot applied (by, seqs)
        self.history: dict[int, list[Sparse]] = {}  # seq -> own parts published, by shard
        self.shard_of_row = np.zeros(0, dtype=np.int64)
        self._rows_of = catalog_rows(rec)
        self.resume_needed = False  # adopted another worker's state: see :meth:`resume`
        self._reset_refs()
        rec.titles.listeners.append(self._grow)
        self._fit()

    # --- reading and writing the models' parameters ------------------------------------

    def _mf_params(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Title factors and biases as float64 rows (``rows``: those only)."""
        mf = self.rec.mf
        q, bias = (mf.q, mf.bias) if rows is None else (mf.q[rows], mf.bias[rows])
        return np.concatenate([q, bias[:, None]], axis=1).astype(np.float64)

    def _set_mf(self, params: np.ndarray, rows: np.ndarray) -> None:
        """Title factors and biases of ``rows`` from float64 rows of :meth:`_mf_params`."""
        mf = self.rec.mf
        q = params[:, : self.k].astype(mf.q.dtype)
        moved = rows[(mf.q[rows] != q).any(axis=1)]
        mf.q[rows] = q
        mf.bias[rows] = params[:, self.k]
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
        self.mine.fit(n)
        self.applied.fit(n)
        old = len(self.shard_of_row)
        if n > old:
            ids = rec.titles.ids
            new = [self.partition_of(ids[i], self.shards) for i in range(old, n)]
            self.shard_of_row = np.concatenate([self.shard_of_row, np.array(new, dtype=np.int64)])
        return n

    # --- own contribution --------------------------------------------------------------

    def fold(self) -> None:
        """Move what this worker learned since the last fold into its contribution."""
        self._fit()
        rec, mine = self.rec, self.mine
        cur = self._mf_params()
        mine.mf += cur - self.mf_ref
        mine.mf_n += rec.mf.updates - self.n_ref
        self.mf_ref = cur
        self.n_ref = rec.mf.updates.copy()
        ref, counts, pairs = rec.cowatch.take_outbox()
        if counts or pairs:
            f = factor(rec.cowatch.clock.inv_tau, mine.cw_ref, ref)
            mine.cw_counts *= f
            for key in mine.cw_pairs:
                mine.cw_pairs[key] *= f
            mine.cw_ref = ref
            for i, v in counts.items():
                mine.cw_counts[i] += v
            for a, row in pairs.items():
                for b, v in row.items():
                    mine.cw_pairs[(a, b)] = mine.cw_pairs.get((a, b), 0.0) + v
        for name in DECAYED:
            model = getattr(rec, name)
            ref, out = model.take_outbox()
            if not out:
                continue
            old_ref, acc = mine.decayed[name]
            f = factor(model.clock.inv_tau, old_ref, ref)
            acc = {c: a * f for c, a in acc.items()}
            for c, a in out.items():
                acc[c] = grow(acc.get(c, np.zeros(len(a))), len(a))
                acc[c][: len(a)] += a
            mine.decayed[name] = (ref, acc)
        for h in MODELS:
            cur_w = self._rk_params(h)
            mine.rk[h] = mine.rk[h] + (cur_w - self.rk_ref[h])
            mine.rk_n[h] += rec.ranker.learned[h] - self.rk_nref[h]
            self.rk_ref[h] = cur_w
            self.rk_nref[h] = rec.ranker.learned[h]

    def publish(self) -> list[bytes]:
        """This worker's contribution records, one per shard (checkpoint codec bytes)."""
        self.fold()
        n = self._fit()
        self.mine.fit(n)
        self.seq += 1
        parts = sharded(self.mine, self.shard_of_row, self.shards)
        self.history[self.seq] = parts
        for old in [s for s in self.history if s <= self.seq - HISTORY]:
            del self.history[old]
        ids, version = list(self.rec.titles.ids), self.rec.model_version
        return [
            encode_contribution(
                Contribution(self.worker, self.run, self.seq, s, self.shards, p), ids, version
            )
            for s, p in enumerate(parts)
        ]

    # --- the global snapshots ----------------------------------------------------------

    def decode(self, raw: bytes) -> Snapshot:
        """A snapshot record in this worker's title rows (CheckpointError if invalid)."""
        snap = decode_snapshot(raw, self._rows_of, self.dims)
        if snap.shards != self.shards or not 0 <= snap.shard < self.shards:
            raise CheckpointError(f"shard {snap.shard} of {snap.shards}, not of {self.shards}")
        return snap

    def _own_part(self, snap: Snapshot) -> Sparse | bool | None:
        """This worker's part that ``snap`` holds (None: none; False: one it does not know)."""
        inc = snap.included.get(self.worker)
        if inc is None:
            return None
        run, seq = inc
        if run != self.run or seq not in self.history:
            return False
        return self.history[seq][snap.shard]

    def merge(self, snapshots: list[Snapshot]) -> int:
        """Apply the latest snapshot of each shard given (later ones win); returns how many
        shards were applied. A snapshot holding a part of this worker it does not know is
        skipped: the models keep the shard's last applied state until a later snapshot."""
        latest = {s.shard: s for s in snapshots}
        n = self._fit()
        owns = {shard: self._own_part(snap) for shard, snap in latest.items()}
        taken = [(sh, latest[sh], own) for sh, own in sorted(owns.items()) if own is not False]
        if not taken:
            return 0
        new = self.applied.copy()
        new.fit(n)
        # The shards about to be replaced, cleared in one pass (per shard, the pass over
        # every co-watch pair was repeated once per shard).
        shards = [shard for shard, _, _ in taken]
        local = self.ranker_rule == "local"  # "local": the ranker is never merged
        new.clear(np.isin(self.shard_of_row[:n], shards), ranker=0 in shards and not local)
        for shard, snap, own in taken:
            ranker = shard == 0 and not local
            new.add(snap.part, 1.0, self.dims, ranker=ranker)
            if isinstance(own, Sparse):
                new.add(own, -1.0, self.dims, ranker=ranker)
            self.received[shard] = {
                "by": snap.by,
                "included": {w: seq for w, (_, seq) in snap.included.items()},
            }
        self._apply(new)
        return len(taken)

    def _apply(self, part: Part) -> None:
        """Make the models hold ``part`` from elsewhere instead of :attr:`applied`."""
        n = self._fit()
        part.fit(n)
        old = self.applied
        rec = self.rec
        # counts: additive differences, in the part's clock units
        cw = rec.cowatch
        f = factor(cw.clock.inv_tau, old.cw_ref, part.cw_ref)
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
        for name in DECAYED:
            model = getattr(rec, name)
            ref, counts = part.decayed[name]
            old_ref, old_counts = old.decayed[name]
            if ref is None:
                ref = old_ref
            if ref is None:
                continue
            f = factor(model.clock.inv_tau, old_ref, ref)
            delta = {c: a - old_counts.get(c, 0.0) * f for c, a in counts.items()}
            for c, a in old_counts.items():
                if c not in counts:
                    delta[c] = -a * f
            model.add(ref, delta)
        # MF title factors and biases: the aggregators applied the rule, so add; only the
        # rows whose part changed (a round at 50,000 titles touches a few thousand, and
        # the whole-catalog form was most of its merge)
        diff = part.mf - old.mf
        rows = np.flatnonzero(diff.any(axis=1))
        if len(rows):
            cur = self._mf_params(rows)
            self._set_mf(cur + diff[rows], rows)
            self.mf_ref[rows] += self._mf_params(rows) - cur  # not a local displacement
        if self.ranker_rule != "local":
            for h in MODELS:
                cur_w = self._rk_params(h)
                self._set_rk(h, cur_w + (part.rk[h] - old.rk[h]))
                self.rk_ref[h] = self.rk_ref[h] + (self._rk_params(h) - cur_w)
        self.applied = part
        rec._ctx = None

    def peers(self) -> set[str]:
        """Other workers whose contributions the applied snapshots include."""
        return {w for r in self.received.values() for w in r["included"]} - {self.worker}

    # --- checkpoints -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The exchange's bookkeeping for the worker's shared checkpoint (after a fold, so
        the models' state and the contribution agree)."""
        self.fold()
        ids = list(self.rec.titles.ids)
        return {
            "worker": self.worker,
            "seq": self.seq,
            "mine": part_state(self.mine, ids),
            "applied": {APPLIED: part_state(self.applied, ids)},
            "received": {str(s): r for s, r in self.received.items()},
        }

    def load(self, st: dict[str, Any]) -> None:
        """Restore the bookkeeping (call after the models' shared state was imported).

        ``applied`` of a checkpoint written before the sharded exchange holds one part per
        peer: the models hold their sum (exact for counts and ``sum``)."""
        rec = self.rec
        try:
            n = self._fit()
            seq = int(st["seq"])
            mine = part_from_state(st["mine"], rec)
            parts = {str(w): part_from_state(p, rec) for w, p in st["applied"].items()}
            received = {
                int(s): {"by": str(r["by"]), "included": dict(r["included"])}
                for s, r in st.get("received", {}).items()
                if isinstance(r, dict) and "included" in r
            }
            owner = str(st["worker"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"bad exchange state ({exc!r})") from None
        resume = False
        if owner != self.worker:
            # Another worker's shared state (a restart under a new id, or a hand-over at
            # start): the models hold its contribution and what it had applied, this
            # worker's published contribution among it (see :meth:`resume`). A checkpoint
            # of the per-peer exchange may hold this worker's part itself.
            parts[owner] = mine
            own = parts.pop(self.worker, None)
            mine = own or Part.empty(n, self.k, self.nf)
            resume = own is None
        applied = Part.empty(n, self.k, self.nf)
        for p in parts.values():
            applied.add(whole(p), 1.0, self.dims)
        self.seq, self.mine, self.applied, self.received = seq, mine, applied, received
        self.history = {}  # parts published before the restart are this run's no longer
        self.resume_needed = resume
        for model in (rec.cowatch, rec.trending, rec.popular):
            model.take_outbox()  # the checkpoint was folded: nothing local is pending
        self._reset_refs()

    def resume(self, records: list[bytes]) -> int:
        """Take back this worker's contribution as last published, from its latest record
        of each shard (read from the contributions topic), after adopting another worker's
        state: the models hold it from elsewhere already, so it moves from :attr:`applied`
        to :attr:`mine`, and the next publication continues it instead of replacing it
        with nothing. Returns the records taken; CheckpointError (nothing taken) if one
        is not this worker's or not of this shard count."""
        dims, shards = self.dims, set()
        n = self._fit()
        parts = []
        for raw in records:
            c = decode_contribution(raw, self._rows_of, dims)
            if c.worker != self.worker or c.shards != self.shards or c.shard in shards:
                raise CheckpointError(f"not one of {self.worker}'s latest records per shard")
            shards.add(c.shard)
            parts.append(c.part)
        self.mine.fit(n)
        self.applied.fit(n)
        for p in parts:
            self.mine.add(p, 1.0, dims)
            self.applied.add(p, -1.0, dims)
        self.resume_needed = False
        return len(parts)

    def adopt_all(self) -> None:
        """Count everything the models hold as this worker's own learning (state restored
        from a checkpoint written before the exchange existed)."""
        rec = self.rec
        n = self._fit()
        self.mine = Part.empty(n, self.k, self.nf)
        self.applied, self.received = Part.empty(n, self.k, self.nf), {}
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
        for name in DECAYED:
            model = getattr(rec, name)
            self.mine.decayed[name] = (
                model.clock.ref_ts,
                {c: grow(a.copy(), n) for c, a in model.counts.items()},
            )

    def dirty(self) -> bool:
        """Whether there is anything to publish: this run published nothing yet (its
        aggregators must hear of it to include a part it knows), or it learned something
        since its last fold."""
        rec = self.rec
        if not self.history:
            return True
        if rec.cowatch.outbox or rec.cowatch.outbox_counts:
            return True
        if rec.trending.outbox or rec.popular.outbox:
            return True
        if rec.ranker.learned != self.rk_nref:
            return True
        n = min(len(self.n_ref), len(rec.mf.updates))
        return bool((rec.mf.updates[:n] != self.n_ref[:n]).any())


# --- the simulation --------------------------------------------------------------------


def round_robin(partitions: int, workers: int) -> list[int]:
    """Worker of each partition (partition ``p`` -> worker ``p % workers``)."""
    return [p % workers for p in range(partitions)]


@dataclass
class RoundCost:
    """One exchange round, per worker: bytes published and read, CPU seconds per phase.
    Read is the snapshots (every shard's) plus the contributions to the shards the worker
    aggregates, as a worker reads them from Kafka."""

    published: list[int]
    read: list[int]
    publish_cpu: list[float]
    aggregate_cpu: list[float]
    merge_cpu: list[float]
    snapshot_bytes: int = 0

    @classmethod
    def zeros(cls, workers: int) -> RoundCost:
        return cls(*([0] * workers for _ in range(2)), *([0.0] * workers for _ in range(3)))


class Federation:
    """N engines fed like N workers of one consumer group, exchanging title-side state.

    ``partition_of(key, partitions)`` must be the producer's partitioner
    (``streams.adapters.kafka_admin.kafka_partition``: murmur2 of the key bytes, as aiokafka and
    the Java client do): users go to event partitions, titles to shards with it, and
    partition ``p`` of both belongs to worker ``p % workers``. ``exchange_every`` counts
    events over all workers; None (or 0) means the workers never exchange. An exchange is
    one synchronous round: every worker publishes, every shard's aggregator folds the
    records and snapshots, every worker merges the snapshots; the lag it models is the
    exchange interval (a real worker also waits for Kafka and the aggregator's timer).
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
        on = bool(self.exchange_every) and workers > 1
        self.exchanges = [
            TitleExchange(
                e.models,
                f"worker-{i}",
                factors=factors,
                ranker=ranker,
                shards=partitions,
                partition_of=partition_of,
                run=f"run-{i}",
            )
            for i, e in enumerate(self.engines)
            if on
        ]
        dims = Dims.of(self.engines[0].models)
        self.aggregators = [
            ShardAggregator(s, partitions, dims, f"worker-{self.owner[s]}", factors, ranker)
            for s in range(partitions)
            if on
        ]
        self._worker: dict[str, int] = {}
        self.events = 0
        self.rounds = 0
        self.record_bytes = 0
        self.last: RoundCost | None = None

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
        cost = RoundCost.zeros(len(self.exchanges))
        records = []
        for i, x in enumerate(self.exchanges):
            c0 = time.process_time()
            records.append(x.publish())
            cost.publish_cpu[i] = time.process_time() - c0
            cost.published[i] = sum(len(r) for r in records[-1])
        self.rounds += 1
        snaps = []
        version = self.engines[0].models.model_version
        for s, agg in enumerate(self.aggregators):
            w = self.owner[s]
            c0 = time.process_time()
            for recs in records:
                agg.fold(recs[s])
                cost.read[w] += len(recs[s])
            snaps.append(agg.publish(version, self.rounds))
            cost.aggregate_cpu[w] += time.process_time() - c0
        cost.snapshot_bytes = sum(len(r) for r in snaps)
        for i, x in enumerate(self.exchanges):
            c0 = time.process_time()
            x.merge([x.decode(raw) for raw in snaps])
            cost.merge_cpu[i] = time.process_time() - c0
            cost.read[i] += cost.snapshot_bytes
        self.record_bytes = max(self.record_bytes, *(len(r) for recs in records for r in recs))
        self.last = cost
