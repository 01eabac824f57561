"""The title-side exchange on Kafka: per-shard contributions, aggregators, global snapshots.

Two compacted topics with one partition per title shard (``S`` = partitions of the
title-events topic; shard ``s`` of a title is the producer's partition of its id):

* ``<app_id>-title-contributions``: every worker's cumulative contribution, cut by
  shard (:class:`online_models.federation.TitleExchange`); the record of shard ``s``
  goes to partition ``s``, keyed ``<worker>/<i>`` (chunks) then ``<worker>/m``
  (manifest), so compaction keeps each worker's latest record per shard;
* ``<app_id>-title-global``: one snapshot per shard, keyed ``<s>/<i>`` then ``<s>/m``,
  the global state of shard ``s`` with the (run, seq) of every worker's part it holds.

The worker holding title-events partition ``s`` aggregates shard ``s``
(:class:`online_models.exchange_aggregator.ShardAggregator`): on gaining it, it reads
contributions partition ``s`` from the beginning (the latest record of each worker), so
the aggregation needs no state of its own across hand-overs, and it publishes a snapshot
once caught up and then whenever it folded something new. Every worker follows the
whole snapshot topic and merges what it has not merged yet. Framing is the checkpoints'
(:mod:`online_models.durable`: generation, chunk count, size, SHA-256); records are
decoded with the checkpoint codec: nothing received is ever executed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

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
from online_models.exchange_aggregator import ShardAggregator
from online_models.federation import TitleExchange
from streams import metrics as m
from streams.adapters.kafka_admin import assign_all, earliest_reader, kafka_partition
from streams.adapters.topic_follower import CompactedTopicFollower
from streams.contract import Rejection
from streams.settings import Settings

log = logging.getLogger("reelstream.title_exchange")
CHUNK_SIZE = 512 * 1024  # well below the producer's and the broker's 1 MB record limits
# topic, key, value, partition
Send = Callable[[str, bytes | None, bytes, int | None], Awaitable[object]]


class Reassembler:
    """Chunks then manifest, per key prefix: the latest whole blob of each."""

    def __init__(self) -> None:
        self.chunks: dict[str, dict[int, tuple[int, int, int, bytes]]] = {}

    def take(self, prefix: str, part: str, value: bytes) -> bytes | None:
        """The blob completed by this record (a manifest), else None; CheckpointError,
        orjson.JSONDecodeError or ValueError for a record that is not one of ours."""
        if part == "m":
            man = validate_manifest(orjson.loads(value))
            return assemble(man, list(self.chunks.get(prefix, {}).values()))
        chunk = parse_chunk(value)
        self.chunks.setdefault(prefix, {})[chunk[1]] = chunk
        return None


def _split_key(key: bytes) -> tuple[str, str]:
    prefix, _, part = key.decode("utf-8", "replace").rpartition("/")
    return prefix, part


def _refused(exc: Exception) -> Rejection:
    m.TITLE_EXCHANGE_MERGED.labels(outcome="rejected").inc()
    return Rejection("bad_title_factors", f"{type(exc).__name__}: {exc}"[:200])


class SnapshotFollower(CompactedTopicFollower):
    """Reassembles each shard's latest global snapshot into :attr:`inbox`."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.title_global_topic)
        self.parts = Reassembler()
        self.inbox: dict[int, bytes] = {}  # shard -> latest snapshot not merged yet

    def apply(self, key: bytes | None, value: bytes | None) -> Rejection | None:
        if not key or value is None:
            return None
        prefix, part = _split_key(key)
        try:
            shard = int(prefix)
            blob = self.parts.take(prefix, part, value)
        except (CheckpointError, orjson.JSONDecodeError, ValueError) as exc:
            return _refused(exc)
        if blob is not None:
            self.inbox[shard] = blob
        return None

    def on_record(self, record: ConsumerRecord) -> Rejection | None:
        return self.apply(record.key, record.value)


class ContributionReader(CompactedTopicFollower):
    """Reads the contributions of the shards this worker aggregates (:attr:`wanted`),
    each partition from its beginning when it is gained, and folds them into
    :attr:`aggregators`. A shard is caught up once read to the end seen at its gain."""

    def __init__(self, settings: Settings, make: Callable[[int], ShardAggregator]) -> None:
        super().__init__(settings, settings.title_contributions_topic)
        self.make = make
        self.wanted: set[int] = set()
        self.changed = asyncio.Event()
        self.aggregators: dict[int, ShardAggregator] = {}
        self.parts: dict[int, Reassembler] = {}
        self.end: dict[int, int] = {}  # offset to reach before a shard's first snapshot
        self.caught_up: set[int] = set()

    def gain(self, shard: int, end: int) -> None:
        """Start aggregating ``shard``, caught up once read to offset ``end``."""
        self.aggregators[shard] = self.make(shard)
        self.parts[shard] = Reassembler()
        self.end[shard] = end
        if end <= 0:
            self.caught_up.add(shard)

    def lose(self, shard: int) -> None:
        for d in (self.aggregators, self.parts, self.end):
            d.pop(shard, None)
        self.caught_up.discard(shard)

    def want(self, shards: set[int]) -> None:
        if shards != self.wanted:
            self.wanted = set(shards)
            self.changed.set()

    def apply(self, shard: int, key: bytes | None, value: bytes | None) -> Rejection | None:
        agg = self.aggregators.get(shard)
        if agg is None or not key or value is None:
            return None
        worker, part = _split_key(key)
        try:
            blob = self.parts[shard].take(worker, part, value)
            if blob is not None:
                agg.fold(blob)
        except (CheckpointError, orjson.JSONDecodeError, ValueError) as exc:
            return _refused(exc)
        return None

    def on_record(self, record: ConsumerRecord) -> Rejection | None:
        return self.apply(record.partition, record.key, record.value)

    async def _reassign(self, consumer: AIOKafkaConsumer) -> None:
        self.changed.clear()
        wanted = set(self.wanted)
        kept = wanted & set(self.aggregators)
        tp = {s: TopicPartition(self.topic, s) for s in wanted}
        positions = {s: await consumer.position(tp[s]) for s in kept}
        for s in set(self.aggregators) - wanted:
            self.lose(s)
        consumer.assign([tp[s] for s in sorted(wanted)])
        for s, pos in positions.items():
            consumer.seek(tp[s], pos)
        gained = sorted(wanted - kept)
        if gained:
            await consumer.seek_to_beginning(*(tp[s] for s in gained))
            end = await consumer.end_offsets([tp[s] for s in gained])
            for s in gained:
                self.gain(s, end[tp[s]])
        log.info("aggregating title shards %s (gained %s)", sorted(wanted), gained)

    async def run(self) -> None:
        consumer = earliest_reader(self.settings)
        await consumer.start()
        try:
            while True:
                if self.changed.is_set():
                    await self._reassign(consumer)
                if not self.aggregators:
                    await self.changed.wait()
                    continue
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    for record in records:
                        if tp.partition in self.aggregators:
                            await self.handle(record)
                    await asyncio.sleep(0)  # a partition at a time: batches keep running
                for s in set(self.aggregators) - self.caught_up:
                    if await consumer.position(TopicPartition(self.topic, s)) >= self.end[s]:
                        self.caught_up.add(s)
        finally:
            await consumer.stop()


async def read_own_records(settings: Settings, worker: str) -> list[bytes]:
    """This worker's latest contribution record of each shard on the contributions topic
    (read to the end seen at start), for :meth:`TitleExchange.resume`."""
    consumer = earliest_reader(settings)
    await consumer.start()
    try:
        tps = await assign_all(consumer, settings.title_contributions_topic)
        end = await consumer.end_offsets(tps)
        parts = {tp.partition: Reassembler() for tp in tps}
        latest: dict[int, bytes] = {}
        todo = {tp for tp in tps if end[tp] > 0}
        while todo:
            batches = await consumer.getmany(*todo, timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                for r in records:
                    if r.key is None or r.value is None:
                        continue
                    prefix, part = _split_key(r.key)
                    if prefix != worker:
                        continue
                    try:
                        blob = parts[tp.partition].take(prefix, part, r.value)
                    except (CheckpointError, orjson.JSONDecodeError, ValueError):
                        continue  # its aggregator refuses (and dead-letters) it too
                    if blob is not None:
                        latest[tp.partition] = blob
            todo = {tp for tp in todo if await consumer.position(tp) < end[tp]}
        return [latest[p] for p in sorted(latest)]
    finally:
        await consumer.stop()


class TitleFactorExchange:
    """The worker's side: :meth:`tick` merges the snapshots not merged yet, publishes this
    worker's contribution if there is anything to publish, and publishes the snapshots of
    the shards it aggregates. Call it between batches (the worker holds the checkpoint
    lock), so a checkpoint never sees half a merge."""

    def __init__(self, settings: Settings, engine: Engine, send: Send) -> None:
        self.settings = settings
        self.worker = settings.resolved_worker_id
        self.shards = settings.partitions  # the title-events topic's partitions
        self.exchange = TitleExchange(
            engine.models,
            self.worker,
            factors=settings.exchange_factors,
            ranker=settings.exchange_ranker,
            shards=self.shards,
            partition_of=kafka_partition,
        )
        self.snapshots = SnapshotFollower(settings)
        self.contributions = ContributionReader(settings, self._aggregator)
        for f in (self.snapshots, self.contributions):
            f.reject = lambda key, dlq: send(settings.dlq_topic, key, dlq, None)
        self.send = send
        self.last_gen = 0
        self.published_snapshot: set[int] = set()  # shards with a snapshot since gained
        self.resuming: asyncio.Task[list[bytes]] | None = None

    def _aggregator(self, shard: int) -> ShardAggregator:
        x = self.exchange
        self.published_snapshot.discard(shard)
        return ShardAggregator(shard, self.shards, x.dims, self.worker, x.factors, x.ranker_rule)

    def _gen(self) -> int:
        self.last_gen = max(int(time.time() * 1000), self.last_gen + 1)
        return self.last_gen

    async def _send_blob(self, topic: str, partition: int, prefix: str, raw: bytes) -> None:
        gen = self._gen()
        man, chunks = split_blob(raw, gen, CHUNK_SIZE)
        for i, chunk in enumerate(chunks):
            await self.send(topic, f"{prefix}/{i}".encode(), chunk, partition)
        doc = {"format": MANIFEST_FORMAT, "v": MANIFEST_VERSION, **man, "created_ms": gen}
        await self.send(topic, f"{prefix}/m".encode(), orjson.dumps(doc), partition)

    def merge_inbox(self) -> int:
        inbox, self.snapshots.inbox = self.snapshots.inbox, {}
        snaps = []
        for shard, raw in sorted(inbox.items()):
            try:
                snaps.append(self.exchange.decode(raw))
            except CheckpointError as exc:
                m.TITLE_EXCHANGE_MERGED.labels(outcome="rejected").inc()
                log.warning("snapshot of shard %d refused: %s", shard, exc)
        merged = self.exchange.merge(snaps) if snaps else 0
        m.TITLE_EXCHANGE_MERGED.labels(outcome="merged").inc(merged)
        m.TITLE_EXCHANGE_MERGED.labels(outcome="skipped").inc(len(snaps) - merged)
        m.TITLE_EXCHANGE_PEERS.set(len(self.exchange.peers()))
        return merged

    async def publish(self) -> int:
        """Send this worker's contribution, one record per shard; returns the bytes."""
        records = self.exchange.publish()
        topic = self.settings.title_contributions_topic
        for shard, raw in enumerate(records):
            await self._send_blob(topic, shard, self.worker, raw)
        size = sum(len(r) for r in records)
        m.TITLE_EXCHANGE_PUBLISHED.inc()
        m.TITLE_EXCHANGE_BYTES.set(size)
        return size

    async def publish_snapshots(self) -> int:
        """Snapshot every caught-up shard this worker aggregates that has news (or none
        since it was gained); returns how many were sent."""
        reader, sent = self.contributions, 0
        version = self.exchange.rec.model_version
        for shard, agg in sorted(reader.aggregators.items()):
            if shard not in reader.caught_up:
                continue
            if not agg.changed and shard in self.published_snapshot:
                continue
            raw = agg.publish(version, self._gen())
            await self._send_blob(self.settings.title_global_topic, shard, str(shard), raw)
            self.published_snapshot.add(shard)
            m.TITLE_EXCHANGE_SNAPSHOTS.inc()
            sent += 1
        return sent

    def resumed(self) -> bool:
        """Whether this worker may publish: after adopting another worker's checkpoint it
        first takes back its own published contribution (read in the background)."""
        if not self.exchange.resume_needed:
            return True
        if self.resuming is None:
            self.resuming = asyncio.create_task(read_own_records(self.settings, self.worker))
        if not self.resuming.done():
            return False
        task, self.resuming = self.resuming, None
        try:
            n = self.exchange.resume(task.result())
        except Exception as exc:  # Kafka, a bad record: try again at the next round
            log.warning("taking back this worker's contribution failed (%s); retrying", exc)
            return False
        log.warning("took back this worker's published contribution (%d shard records)", n)
        return True

    async def tick(self, owned: set[int] | None) -> None:
        """One round; ``owned``: the title-events partitions this worker holds (None
        while a rebalance is in progress: the aggregated shards stay as they are)."""
        self.take_in(owned)
        await self.send_out()

    def take_in(self, owned: set[int] | None) -> None:
        """A round's first half: the shards to aggregate, the snapshots received merged."""
        if owned is not None:
            self.contributions.want(owned)
        self.merge_inbox()

    async def send_out(self) -> None:
        """A round's second half: this worker's contribution and its shards' snapshots.
        Apart from :meth:`take_in` so that the worker can run a batch between the two
        (each is atomic against batches and checkpoints; together 70-140 ms at 50,000
        titles)."""
        if self.resumed() and self.exchange.dirty():
            await self.publish()
        await self.publish_snapshots()

    def debug(self, detail: bool = False) -> dict[str, Any]:
        """What this worker holds (``/debug/title-exchange``): its seq and run, the
        snapshot of each shard it applied (who aggregated it, which seq of each worker it
        includes), the shards it aggregates; with ``detail``, per title: the MF factors,
        their initial vectors, this worker's own displacement (published or not), the
        displacement held from elsewhere (``applied``), and the decayed masses with the
        clock reference they are stored against. For operators and tests."""
        x = self.exchange
        rec = x.rec
        reader = self.contributions
        out: dict[str, Any] = {
            "worker": self.worker,
            "run": x.run,
            "seq": x.seq,
            "shards": self.shards,
            "rules": {"factors": x.factors, "ranker": x.ranker_rule},
            "snapshots": {str(s): r for s, r in sorted(x.received.items())},
            "aggregating": {
                str(s): {
                    "caught_up": s in reader.caught_up,
                    "included": {w: seq for w, (_, seq) in agg.included.items()},
                }
                for s, agg in sorted(reader.aggregators.items())
            },
            "dirty": x.dirty(),  # something not yet published
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
                "applied": x.applied.mf[i, :k].tolist(),
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
