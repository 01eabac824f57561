"""Model checkpoints on Kafka: the ``<app_id>-model-checkpoints`` compacted topic.

Layout (docs/models.md, "Durability"). The topic has as many partitions as the
events topic; everything about events partition ``p`` lives in checkpoint
partition ``p``, a worker's shared state in partition ``crc32(worker) % n``.
Two slots per owner, written alternately, so a crash half-way through a write
leaves the previous checkpoint intact:

* ``p/<p>/<slot>/<i>`` chunks and ``p/<p>/<slot>/m`` manifest: the offset the round
  covers in events partition ``p`` (``"<events topic>:<p>" -> next offset``, plus
  reordered offsets already learned past it) and a reference to the shared state
  written in the same round. No user state: each user's record, the models' part
  included, is a row of the profile table (streams/worker/profile_store.py).
* ``s/<worker>/<slot>/<i>`` and ``s/<worker>/<slot>/m``: the worker's shared state.

Chunks are written before their manifest; a manifest is trusted only if its chunks
reassemble to its size and SHA-256. Bad checkpoints are logged, counted in
``reelstream_checkpoints_rejected_total`` and skipped for the other slot, else empty.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from online_models import checkpoint as codec
from online_models.checkpoint import CheckpointError, OffsetLedger
from online_models.durable import (
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    CheckpointPolicy,
    ReplayGuard,
    RestoredPartition,
    assemble,
    export_shared,
    import_shared,
    parse_chunk,
    split_blob,
    validate_manifest,
)
from online_models.engine import Engine
from streams import metrics as m
from streams.adapters.kafka_admin import earliest_reader
from streams.settings import Settings

log = logging.getLogger("reelstream.checkpoints")


# A checkpoint is written at a fraction of the event loop's time: after each step of
# its encode and write it waits ``REELSTREAM_CHECKPOINT_PACE`` times as long as the step
# took, so the batches that run meanwhile keep their pace (at 50,000 titles a round is
# 100-200 ms of CPU, and taken in one go it queued a second of events behind it at half
# capacity).
MIN_PACE_S = 0.002
# The producer's work for one 0.9 MB chunk (batching, CRC), done by its sender task
# after ``send`` returns: counted in the pause after each chunk.
CHUNK_SEND_S = 0.003


async def pace(step_s: float, ratio: float) -> None:
    await asyncio.sleep(max(step_s * ratio, MIN_PACE_S))


def shared_partition(worker: str, partitions: int) -> int:
    return zlib.crc32(worker.encode()) % partitions


class CheckpointIO:
    """Reads and writes checkpoint records (its own producer and group-less consumer)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.checkpoint_topic
        self._producer: AIOKafkaProducer | None = None

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                **self.settings.kafka_client_kwargs(),
                acks="all",
                enable_idempotence=True,
                max_request_size=2 * 1024 * 1024,
                linger_ms=5,
            )
            await self._producer.start()
        return self._producer

    async def write(self, partition: int, prefix: str, gen: int, blob: bytes, meta: dict) -> int:
        """Chunks then manifest of one blob under ``prefix`` (e.g. ``p/3/0``); returns bytes."""
        # In a thread: the SHA-256 of a 50,000-title state is 6-10 ms, and hashlib lets
        # the event loop run meanwhile.
        man, chunks = await asyncio.to_thread(split_blob, blob, gen)
        prod = await self.producer()
        futs = []
        for i, c in enumerate(chunks):
            t0 = time.perf_counter()
            futs.append(
                await prod.send(self.topic, c, key=f"{prefix}/{i}".encode(), partition=partition)
            )
            await pace(time.perf_counter() - t0 + CHUNK_SEND_S, self.settings.checkpoint_pace)
        await asyncio.gather(*futs)  # every chunk on the broker before the manifest
        doc = {"format": MANIFEST_FORMAT, "v": MANIFEST_VERSION, **man, **meta}
        await prod.send_and_wait(
            self.topic, orjson.dumps(doc), key=f"{prefix}/m".encode(), partition=partition
        )
        return len(blob)

    async def read(self, partitions: set[int]) -> dict[str, bytes]:
        """Latest value per key in the given checkpoint partitions (tombstones removed)."""
        if not partitions:
            return {}
        consumer = earliest_reader(self.settings, max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            latest: dict[str, bytes] = {}
            while True:
                pending = [tp for tp in tps if await consumer.position(tp) < end[tp]]
                if not pending:
                    return latest
                batch = await consumer.getmany(*pending, timeout_ms=1000)
                for records in batch.values():
                    for r in records:
                        k = r.key.decode("utf-8", "replace") if r.key else ""
                        if r.value is None:
                            latest.pop(k, None)
                        else:
                            latest[k] = r.value
        finally:
            await consumer.stop()

    async def end_offsets(self, topic: str, partitions: set[int]) -> dict[int, int]:
        if not partitions:  # aiokafka waits forever on an empty request
            return {}
        consumer = AIOKafkaConsumer(**self.settings.kafka_client_kwargs(), group_id=None)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in partitions]
            end = await consumer.end_offsets(tps)
            return {tp.partition: off for tp, off in end.items()}
        finally:
            await consumer.stop()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def candidates(records: dict[str, bytes], prefix: str) -> list[tuple[int, dict, bytes]]:
    """(slot, manifest, blob) for each slot of ``prefix`` that reassembles, newest first.

    Slots that do not (missing chunks, bad hash, bad manifest) are rejected, logged and
    counted; the caller falls back to the next one.
    """
    out = []
    for slot in (0, 1):
        raw = records.get(f"{prefix}/{slot}/m")
        if raw is None:
            continue
        try:
            man = validate_manifest(orjson.loads(raw))
            chunks = []
            for i in range(man["chunks"]):
                c = records.get(f"{prefix}/{slot}/{i}")
                if c is not None:
                    chunks.append(parse_chunk(c))
            blob = assemble(man, chunks)
        except (CheckpointError, orjson.JSONDecodeError) as exc:
            reject(f"{prefix}/{slot}", exc)
            continue
        out.append((slot, man, blob))
    out.sort(key=lambda t: -t[1]["gen"])
    return out


def ranges_ahead(raw: Any, offset: int) -> list[list[int]]:
    """A checkpoint's learned ranges above its offset, checked (older checkpoints have none)."""
    if raw is None:
        return []
    ok = isinstance(raw, list) and all(
        isinstance(r, list | tuple)
        and len(r) == 2
        and all(isinstance(v, int) for v in r)
        and offset < r[0] < r[1]
        for r in raw
    )
    if not ok or any(a[1] >= b[0] for a, b in pairwise(raw)):
        raise CheckpointError("learned ranges ahead must be sorted [start, end) pairs above it")
    return [[int(a), int(b)] for a, b in raw]


def reject(where: str, exc: Exception) -> None:
    m.CHECKPOINTS_REJECTED.inc()
    log.error("model checkpoint %s rejected, falling back: %s", where, exc)


@dataclass(slots=True)
class _Round:
    """One checkpoint round as taken between batches: its state, bytes and where they go."""

    gen: int
    state: dict[str, Any] | None  # the shared state's snapshot, until encoded
    shared: bytes | None  # encoded: kept for a write that has to be tried again
    shared_slot: int
    blobs: list[tuple[int, str, bytes]]  # (events partition, "p/<p>/<slot>", blob)
    meta: dict[str, Any]
    taken_s: float
    flush_s: float


class ModelDurability:
    """The worker's checkpoint/restore logic around the shared :class:`Engine`.

    Hooks: :meth:`admit` per record, :meth:`before_event` per event, :meth:`after_batch`
    after each batch, :meth:`on_assigned`, :meth:`restore` (on rebalance complete, before
    Faust seeks to committed offsets) and :meth:`on_revoked`.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        store: Any,
        commit: Callable[[dict[int, int]], Awaitable[Any]],
        flush: Callable[[], Awaitable[Any]],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.commit = commit
        self.flush = flush
        self.io = CheckpointIO(settings)
        self.guard = ReplayGuard()
        self.policy = CheckpointPolicy(settings.checkpoint_interval_s, settings.checkpoint_events)
        self.worker = settings.resolved_worker_id
        self.owned: set[int] = set()
        self.pending: set[int] = set()
        self.learned_any = False
        self.shared_checked = False
        self.next_slot: dict[str, int] = {}
        # Held for each batch (and its checkpoint): checkpoints see batch boundaries only.
        self.lock = asyncio.Lock()
        self.last_gen = 0
        self.to_import: list[codec.Checkpoint] = []
        # The round taken and not yet on Kafka, and the task writing it.
        self.unlanded: _Round | None = None
        self.writing: asyncio.Task[int] | None = None

    # --- per record / event ------------------------------------------------------------

    def admit(self, msg: Any) -> bool:
        """False when the models already hold this record (it is then skipped entirely)."""
        if self.to_import:
            self._import()
        admitted = self.guard.admit(msg.topic, msg.partition, msg.offset)
        if self.guard.ledger.abandoned:
            for key, start, end in self.guard.ledger.abandoned:
                log.warning(
                    "offsets %d-%d of %s never arrived while %d later records did: "
                    "treated as absent (transaction markers or deleted records)",
                    start,
                    end - 1,
                    key,
                    OffsetLedger.MAX_AHEAD,
                )
            self.guard.ledger.abandoned.clear()
        if admitted:
            self.guard.events_since += 1
            self.learned_any = True
            return True
        m.REPLAY_RECORDS_SKIPPED.inc()
        return False

    def reordered(self, msg: Any) -> bool:
        """Whether the record just admitted came after higher offsets of its partition."""
        return self.guard.ledger.last_reordered

    def before_event(self, msg: Any, uid: str) -> None:
        """Before an event changes a user's row: at the user's first event of a replayed
        partition, put the row back to the restored round; keep the pre-image of the row
        for the next restore (TableProfileStore.capture)."""
        gen = self.guard.first_touch(msg.partition, uid)
        if gen is not None:
            refused = self.store.rewinds_refused
            if self.store.rewind(uid, gen):
                m.PROFILES_REWOUND.inc()
            elif self.store.rewinds_refused > refused:
                log.warning(
                    "user %s: the row holds a later round than %d; its replay is dropped by "
                    "its event gate (%d such rows)",
                    uid,
                    gen,
                    self.store.rewinds_refused,
                )
        self.store.capture(uid)

    def _due(self) -> bool:
        # A round that failed to land is due again after the interval, events or not.
        return self.policy.due(self.guard.events_since + (self.unlanded is not None))

    async def after_batch(self) -> None:
        """Call with :attr:`lock` held, after a batch."""
        if self._due() and not self.writing_now:
            await self.checkpoint(wait=False)

    async def tick(self) -> None:
        """Periodic: checkpoint an idle worker whose interval has passed."""
        if self._due() and not self.writing_now and not self.lock.locked():
            async with self.lock:
                await self.checkpoint(wait=False)

    # --- writing -----------------------------------------------------------------------

    @property
    def writing_now(self) -> bool:
        return self.writing is not None and not self.writing.done()

    def _slot(self, prefix: str) -> int:
        slot = self.next_slot.get(prefix, 0)
        self.next_slot[prefix] = 1 - slot
        return slot

    async def checkpoint(self, partitions: set[int] | None = None, *, wait: bool = True) -> int:
        """Take a round of the shared state and every owned partition's offsets, and write
        it; call with :attr:`lock` held. Returns the bytes written when ``wait``; else the
        write runs on while the next batches do (0 returned).

        A round that has not landed is written again first (same round, same slots: the
        other slot keeps the last round that did), and no new round is taken before it
        lands."""
        await self.settle()
        if self.unlanded is not None:
            self.writing = asyncio.create_task(self._land(self.unlanded))
            if not wait or not await self.writing:
                return 0
        rnd = await self._take(partitions)
        if rnd is None:
            return 0
        self.writing = asyncio.create_task(self._land(rnd))
        return await self.writing if wait else 0

    async def settle(self) -> None:
        """Wait for a round being written (its failure is logged, and it stays unlanded)."""
        if self.writing is not None:
            await asyncio.shield(self.writing)
            self.writing = None

    async def _take(self, partitions: set[int] | None) -> _Round | None:
        """The round's bytes at one instant between batches (the lock is held)."""
        parts = sorted(self.owned if partitions is None else partitions)
        topic = self.settings.events_topic
        parts = [p for p in parts if self.guard.ledger.known(OffsetLedger.key(topic, p))]
        if not parts:
            return None
        started = time.perf_counter()
        # Profile rows and their changelog (and everything sent so far) reach the broker
        # before a checkpoint claims the offsets they cover.
        await self.flush()
        flushed = time.perf_counter()
        gen = max(int(time.time() * 1000), self.last_gen + 1)
        self.last_gen = gen
        rec = self.engine.models
        # Everything below is taken synchronously: one consistent instant. A snapshot
        # (arrays copied) is encoded afterwards, while the next batches run.
        state = codec.snapshot(export_shared(rec))
        blobs = []
        for p in parts:
            key = OffsetLedger.key(topic, p)
            offset, ahead = self.guard.ledger.covered(key)
            blobs.append((p, codec.encode({"ahead": ahead}, {key: offset}, "", gen)))
        sprefix = f"s/{self.worker}"
        rnd = _Round(
            gen=gen,
            state=state,
            shared=None,
            shared_slot=self._slot(sprefix),
            blobs=[(p, f"p/{p}/{self._slot(f'p/{p}')}", blob) for p, blob in blobs],
            meta={"created_ms": gen, "worker": self.worker, "model_version": rec.model_version},
            taken_s=time.perf_counter() - started,
            flush_s=flushed - started,
        )
        # Rows changed from now on keep their state as of this round (and, until it lands,
        # as of the last one that did: TableProfileStore.capture).
        self.store.round_taken(gen)
        self.unlanded = rnd
        self.guard.events_since = 0
        self.policy.last = time.monotonic()
        m.CHECKPOINT_SECONDS.labels(op="take").observe(rnd.taken_s)
        return rnd

    async def _land(self, rnd: _Round) -> int:
        """Write a taken round: shared state, then each partition's manifest; bytes written,
        0 when it failed (logged and counted; it is written again when next due)."""
        started = time.perf_counter()
        n = self.settings.partitions
        encoded = started
        try:
            if rnd.shared is None:
                assert rnd.state is not None
                pieces = []
                it = codec.encode_pieces(rnd.state, {}, rnd.meta["model_version"], rnd.gen)
                while True:
                    t0 = time.perf_counter()
                    piece = next(it, None)
                    if piece is None:
                        break
                    pieces.append(piece)
                    await pace(time.perf_counter() - t0, self.settings.checkpoint_pace)
                rnd.shared, rnd.state = b"".join(pieces), None
            encoded = time.perf_counter()
            total = await self.io.write(
                shared_partition(self.worker, n),
                f"s/{self.worker}/{rnd.shared_slot}",
                rnd.gen,
                rnd.shared,
                rnd.meta,
            )
            ref = {"worker": self.worker, "slot": rnd.shared_slot, "gen": rnd.gen}
            for p, at, blob in rnd.blobs:
                total += await self.io.write(p % n, at, rnd.gen, blob, {**rnd.meta, "shared": ref})
        except Exception as exc:
            m.CHECKPOINT_FAILURES.inc()
            self.policy.last = time.monotonic()
            log.error(
                "model checkpoint %d not written, retried in %.0f s: %r",
                rnd.gen,
                self.policy.every_s,
                exc,
            )
            return 0
        if self.unlanded is rnd:
            self.unlanded = None
        self.store.round_landed(rnd.gen)
        sent = time.perf_counter() - started
        m.CHECKPOINTS_WRITTEN.inc()
        m.CHECKPOINT_BYTES.set(total)
        m.CHECKPOINT_SECONDS.labels(op="write").observe(sent)
        log.info(
            "model checkpoint %d: %d partitions, %d bytes; taken in %.3f s between batches "
            "(flush %.3f), encoded and written in %.3f + %.3f s alongside them",
            rnd.gen,
            len(rnd.blobs),
            total,
            rnd.taken_s,
            rnd.flush_s,
            encoded - started,
            sent - (encoded - started),
        )
        return total

    # --- rebalance ---------------------------------------------------------------------

    def on_assigned(self, assigned: set[int]) -> None:
        """Track ownership; forget the offsets of partitions that went elsewhere."""
        for p in self.owned - assigned:
            self.guard.drop_partition(self.settings.events_topic, p)
        self.pending |= assigned - self.owned
        self.pending &= assigned
        self.owned = set(assigned)

    async def on_revoked(self) -> None:
        """Checkpoint at the batch boundary so the next owner replays nothing."""
        try:
            async with asyncio.timeout(10):
                async with self.lock:
                    await self.settle()
                    if self.guard.events_since or self.unlanded is not None:
                        await self.checkpoint()
        except Exception:  # a failed final checkpoint only means a longer replay
            log.exception("checkpoint on revoke failed")

    async def restore(self) -> dict[int, int]:
        """At start, adopt the newest checkpoint round of the assigned partitions and
        replay the partitions it covers from its offsets (committed here, so Faust's seek
        to committed offsets starts there); returns those offsets.

        Only a worker that has learned nothing adopts a round: its shared models then are
        that round's, and the replayed events are learned once by them and by the rows,
        which are put back to the round as each user's first replayed event arrives
        (:meth:`before_event`). Partitions assigned later, or covered by another round,
        continue from their committed offsets: the rows hold every user's state.

        Runs inside Faust's rebalance, where the catalog may still be loading: the shared
        state is imported (title ids mapped to rows) at the first record, see :meth:`admit`.
        """
        parts = set(self.pending)
        self.pending.clear()
        if not parts or self.shared_checked or self.learned_any:
            return {}
        topic = self.settings.events_topic
        early = {p for p in parts if self.guard.ledger.known(OffsetLedger.key(topic, p))}
        if early:  # (learned_any is set by then; kept for a direct call)
            log.warning("records of partitions %s arrived before the restore", sorted(early))
            m.CHECKPOINTS_SKIPPED_EARLY.inc(len(early))
            parts -= early
        self.shared_checked = True
        started = time.perf_counter()
        n = self.settings.partitions
        records = await self.io.read({p % n for p in parts})
        chosen: dict[int, tuple[dict, codec.Checkpoint]] = {}
        for p in parts:
            for slot, man, blob in candidates(records, f"p/{p}"):
                try:
                    ck = codec.decode(blob)
                    key = OffsetLedger.key(topic, p)
                    if set(ck.offsets) != {key}:
                        raise CheckpointError(f"not a checkpoint of {key}")
                    ranges_ahead(ck.state.get("ahead"), ck.offsets[key])
                except CheckpointError as exc:
                    reject(f"p/{p}/{slot}", exc)
                    continue
                self.next_slot[f"p/{p}"] = 1 - slot
                chosen[p] = (man, ck)
                break
        found = await self._read_shared(chosen, records)
        if found is None:
            return {}
        ref, shared = found
        end = await self.io.end_offsets(topic, set(chosen))
        commits: dict[int, int] = {}
        size = 0
        for p, (man, ck) in chosen.items():
            r = man.get("shared") or {}
            if (r.get("gen"), r.get("worker"), r.get("slot")) != ref:
                continue  # written in another round: these shared models never saw it
            key = OffsetLedger.key(topic, p)
            offset = ck.offsets[key]
            self.guard.ledger.offsets[key] = offset
            self.guard.ledger.ahead.pop(key, None)
            ahead = ranges_ahead(ck.state.get("ahead"), offset)
            if ahead:
                self.guard.ledger.ahead[key] = ahead
            self.guard.restored[p] = RestoredPartition(offset, end.get(p, offset), ref[0])
            commits[p] = offset
            size += man["size"]
        self.to_import.append(shared)
        self.store.restored(ref[0])
        self.last_gen = max(self.last_gen, ref[0])
        if commits:
            await self.commit(commits)
        elapsed = time.perf_counter() - started
        m.CHECKPOINT_SECONDS.labels(op="restore").observe(elapsed)
        m.CHECKPOINTS_RESTORED.inc(len(commits))
        log.warning(
            "adopted model checkpoint %d of %s (partition records: %d bytes) in %.3f s; "
            "replaying %s",
            ref[0],
            ref[1],
            size,
            elapsed,
            commits,
        )
        return commits

    def _import(self) -> None:
        """Load the adopted shared state into the models (at the first record: catalog loaded)."""
        started = time.perf_counter()
        rec = self.engine.models
        rec.titles.sync()
        todo, self.to_import = self.to_import, []
        for ck in todo:
            try:
                import_shared(rec, ck.state)
            except CheckpointError as exc:
                # Offsets are committed already: the replay teaches fresh models.
                reject("shared state", exc)
        log.warning("imported model checkpoints in %.3f s", time.perf_counter() - started)

    async def _read_shared(
        self, chosen: dict, records: dict[str, bytes]
    ) -> tuple[tuple[int, str, int], codec.Checkpoint] | None:
        """The newest shared state a chosen partition checkpoint refers to, as
        ((gen, worker, slot), checkpoint), trying older rounds when one is unreadable."""
        refs = sorted(
            {
                (r["gen"], r["worker"], r["slot"])
                for man, _ in chosen.values()
                if (r := man.get("shared"))
            },
            reverse=True,
        )
        n = self.settings.partitions
        for gen, worker, slot in refs:
            sp = shared_partition(worker, n)
            more = await self.io.read({sp}) if sp not in {p % n for p in chosen} else records
            for s_slot, man, blob in candidates(more, f"s/{worker}"):
                if s_slot != slot or man["gen"] != gen:
                    continue
                try:
                    ck = codec.decode(blob)
                except CheckpointError as exc:
                    reject(f"s/{worker}/{slot}", exc)
                    continue
                if worker == self.worker:
                    self.next_slot[f"s/{worker}"] = 1 - slot
                return (gen, worker, slot), ck
            reject(f"s/{worker}/{slot}", CheckpointError(f"shared state gen {gen} not found"))
        return None


async def read_latest(settings: Settings) -> dict[int, codec.Checkpoint]:
    """The newest valid checkpoint of every events partition, plus shared state under -1
    (the one the newest partition checkpoint references). For operators and tests."""
    io = CheckpointIO(settings)
    records = await io.read(set(range(settings.partitions)))
    out: dict[int, codec.Checkpoint] = {}
    ref = None
    for p in range(settings.partitions):
        for _, man, blob in candidates(records, f"p/{p}"):
            out[p] = codec.decode(blob)
            if man.get("shared") and (ref is None or man["shared"]["gen"] > ref["gen"]):
                ref = man["shared"]
            break
    if ref is not None:
        for slot, man, blob in candidates(records, f"s/{ref['worker']}"):
            if slot == ref["slot"] and man["gen"] == ref["gen"]:
                out[-1] = codec.decode(blob)
    return out
