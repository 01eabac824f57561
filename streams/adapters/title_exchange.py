"""The title-side exchange on Kafka: the compacted ``<app_id>-title-factors`` topic.

Every worker periodically publishes its cumulative title-side contribution
(:class:`online_models.federation.TitleExchange`: MF title factor displacements,
co-watch and trending mass, ranker displacements, keyed by title id) and follows
its peers' with a :class:`CompactedTopicFollower`; the merge is the same function
the replay's simulation runs (docs/models.md, "Title factors across workers").

Layout: one partition; a record is cut into chunks ``<worker>/<i>`` followed by its
manifest ``<worker>/m`` (the checkpoint framing of :mod:`online_models.durable`:
generation, chunk count, size, SHA-256). Compaction keeps each worker's latest
record; since a contribution is cumulative, the latest one is all a (re)starting
worker needs, and a receiver applies only the difference to what it applied before.
Records are decoded with the checkpoint codec: nothing received is ever executed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from online_models.checkpoint import CheckpointError
from online_models.durable import (
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    assemble,
    parse_chunk,
    split_blob,
    validate_manifest,
)
from online_models.engine import Engine
from online_models.federation import TitleExchange
from streams import metrics as m
from streams.adapters.topic_follower import CompactedTopicFollower
from streams.contract import Rejection
from streams.settings import Settings

log = logging.getLogger("reelstream.title_exchange")
CHUNK_SIZE = 512 * 1024  # well below the producer's and the broker's 1 MB record limits


class TitleFactorsFollower(CompactedTopicFollower):
    """Reassembles each peer's latest contribution record into :attr:`inbox`."""

    def __init__(self, settings: Settings, worker: str) -> None:
        super().__init__(settings, settings.title_factors_topic)
        self.worker = worker
        self.chunks: dict[str, dict[int, tuple[int, int, int, bytes]]] = {}
        self.inbox: dict[str, bytes] = {}  # peer -> latest record not merged yet

    def apply(self, key: bytes | None, value: bytes | None) -> Rejection | None:
        if not key or value is None:
            return None
        worker, _, part = key.decode("utf-8", "replace").rpartition("/")
        if not worker or worker == self.worker:
            return None  # this worker's own records: its models hold them already
        try:
            if part == "m":
                man = validate_manifest(orjson.loads(value))
                blob = assemble(man, list(self.chunks.get(worker, {}).values()))
                self.inbox[worker] = blob
            else:
                chunk = parse_chunk(value)
                self.chunks.setdefault(worker, {})[chunk[1]] = chunk
        except (CheckpointError, orjson.JSONDecodeError, ValueError) as exc:
            m.TITLE_EXCHANGE_MERGED.labels(outcome="rejected").inc()
            return Rejection("bad_title_factors", f"{type(exc).__name__}: {exc}"[:200])
        return None

    def on_record(self, record: ConsumerRecord) -> Rejection | None:
        return self.apply(record.key, record.value)


class TitleFactorExchange:
    """The worker's side: :meth:`tick` merges the peers' latest records, then publishes
    this worker's contribution if it learned anything. Call it between batches (the
    worker holds the checkpoint lock), so a checkpoint never sees half a merge."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        send: Callable[[str, bytes | None, bytes], Awaitable[object]],
    ) -> None:
        self.settings = settings
        self.worker = settings.resolved_worker_id
        self.exchange = TitleExchange(
            engine.models,
            self.worker,
            factors=settings.exchange_factors,
            ranker=settings.exchange_ranker,
        )
        self.follower = TitleFactorsFollower(settings, self.worker)
        self.follower.reject = lambda key, dlq: send(settings.dlq_topic, key, dlq)
        self.send = send
        self.last_gen = 0

    def merge_inbox(self) -> int:
        inbox, self.follower.inbox = self.follower.inbox, {}
        merged = 0
        for worker, raw in sorted(inbox.items()):
            try:
                self.exchange.merge(raw)
            except CheckpointError as exc:
                m.TITLE_EXCHANGE_MERGED.labels(outcome="rejected").inc()
                log.warning("contribution of %s refused: %s", worker, exc)
                continue
            merged += 1
        m.TITLE_EXCHANGE_MERGED.labels(outcome="merged").inc(merged)
        m.TITLE_EXCHANGE_PEERS.set(len(self.exchange.applied))
        return merged

    async def publish(self) -> int:
        """Send this worker's contribution (chunks, then manifest); returns its size."""
        raw = self.exchange.publish()
        gen = max(int(time.time() * 1000), self.last_gen + 1)
        self.last_gen = gen
        man, chunks = split_blob(raw, gen, CHUNK_SIZE)
        topic = self.settings.title_factors_topic
        for i, chunk in enumerate(chunks):
            await self.send(topic, f"{self.worker}/{i}".encode(), chunk)
        doc = {"format": MANIFEST_FORMAT, "v": MANIFEST_VERSION, **man, "created_ms": gen}
        await self.send(topic, f"{self.worker}/m".encode(), orjson.dumps(doc))
        m.TITLE_EXCHANGE_PUBLISHED.inc()
        m.TITLE_EXCHANGE_BYTES.set(len(raw))
        return len(raw)

    def debug(self, detail: bool = False) -> dict[str, Any]:
        """What this worker holds from whom (``/debug/title-exchange``); with ``detail``,
        per title: the MF factors, their initial vectors, this worker's own displacement
        (published or not), each peer's applied displacement, and the decayed masses with
        the clock reference they are stored against. For operators and tests."""
        x = self.exchange
        rec = x.rec
        out: dict[str, Any] = {
            "worker": self.worker,
            "seq": x.seq,
            "rules": {"factors": x.factors, "ranker": x.ranker_rule},
            "received": dict(x.received),
            "dirty": x.dirty(),  # learned something not yet published
        }
        if not detail:
            return out
        n = x._fit()
        k = x.k
        own = x.mine.mf[:, :k] + (x._mf_params() - x.mf_ref)[:, :k]
        out["titles"] = {
            tid: {
                "q": rec.mf.q[i].tolist(),
                "init": rec.mf._init_vec(f"title:{i}").tolist(),
                "own": own[i].tolist(),
                "own_updates": float(x.mine.mf_n[i] + rec.mf.updates[i] - x.n_ref[i]),
                "applied": {w: p.mf[i, :k].tolist() for w, p in x.applied.items()},
            }
            for i, tid in enumerate(rec.titles.ids[:n])
        }
        ids = rec.titles.ids
        out["cowatch"] = {
            "ref_ts": rec.cowatch.clock.ref_ts,
            "counts": dict(zip(ids, rec.cowatch.counts.tolist(), strict=False)),
        }
        for name in ("trending", "popular"):
            model = getattr(rec, name)
            out[name] = {
                "ref_ts": model.clock.ref_ts,
                "counts": {
                    c: dict(zip(ids, a.tolist(), strict=False)) for c, a in model.counts.items()
                },
            }
        return out

    async def tick(self) -> None:
        self.merge_inbox()
        if self.exchange.dirty():
            await self.publish()
