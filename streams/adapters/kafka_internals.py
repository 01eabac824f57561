"""Every private Faust and aiokafka attribute this project relies on, in one place.

Each one has a guard in ``tests/unit/test_kafka_internals.py`` that fails when an
upgrade of the dependency moves it, instead of the worker breaking silently.

- Fetch wait: Faust hard-codes ``fetch_max_wait_ms=1500``. When the worker falls
  briefly behind, fetches for quiet partitions wait out those 1.5 s and freshness sits
  on a 1-1.7 s plateau; with 100 ms, p99 at half load fell from 1.6 s to 0.1-0.5 s
  (docs/performance.md). Uses aiokafka's ``_fetch_max_wait_ms``.
- Producer metadata: see :class:`Producer`. Uses the aiokafka client's ``_topics``.
- Undecodable batches: see :func:`install_record_guard`. Wraps aiokafka's
  ``PartitionRecords``, the per-partition record iterator of its fetcher.
- Table partitions: Faust's RocksDB store reads and writes the partition of the
  *current event*, a context variable only Faust's own stream loop sets. Our write-back
  caches flush outside that loop: :func:`bind_event` sets it
  (``faust.streams._current_event``). Checkpoints read no table (user state is only in
  the rows), so nothing reads a partition other than the current event's.
- Offsets: :func:`commit_offsets` commits explicit offsets through Faust's consumer
  (``Consumer._commit``), which restoring a model checkpoint needs before Faust seeks.
- Read positions for the lag gauge and the stall watch (streams/worker/monitor.py):
  :func:`read_offsets` (Faust consumer's ``_read_offset``, the last offset handed to a
  stream per partition).
- Table size: :func:`active_partition_dbs` (the RocksDB store's ``_dbs_for_actives``).
- Expiry sweep (streams/worker/expiry.py): :func:`table_slice` reads a partition's rows
  in key order from a key (the store's ``_dbs``, ``offset_key``, ``_decode_key``,
  ``_decode_value``; rocksdict's ``items(from_key=)``); deletes outside the stream loop
  bind a :class:`PartitionEvent`.
- Offset commits after a rebalance: :meth:`Consumer._new_offset` replaces Faust's
  (``_acked``, ``_gap``, ``_committed_offset``, ``_acked_index``), whose gap filling can
  put an offset in the acked list twice and then commits one offset per commit.
  ``Consumer._add_gap`` and ``perform_seek`` are Faust's, logged.
- Records in order: :class:`ReadOffsets` replaces the consumer's ``_read_offset``
  (Faust's drain loop drops every record below it) and :meth:`Consumer.getmany`
  (Faust's) drops a record past its partition's next offset (fetched before a seek, or
  a position that moved past a seek) and seeks the partition there again
  (``Consumer._seek``), and nothing of a partition assigned but not yet sought (Faust
  pops a revoked partition's read offset), so every record of the events topic is
  handed over, in order.
- Broker health for ``/readyz``: :func:`broker_metadata_ok` (Faust producer's ``_producer``).
- Records cleared from the stream queues when flow resumes: :class:`FlowControl` (mode's
  ``FlowControlEvent._queues``, asyncio's ``Queue._queue``) reports them to
  :meth:`Consumer.read_again_from`, which reads them again (:meth:`ReadOffsets.rewind`).
- The agents' order (streams/worker/offset_order.py): :func:`take_seeks` (where each
  rebalance sought the partitions) and :func:`gap_reported` (real gaps handed over), kept
  in :class:`ReadOffsets`, and :func:`committed_offsets` (``Consumer._committed_offset``);
  :meth:`Consumer.read_again_from` reads a partition again from a record that never
  reached its agent.
- Reconnects: :func:`install_reconnect_backoff` wraps ``AIOKafkaClient._get_conn`` so a node
  that refused a connection is retried after a growing backoff (50 ms to 1 s), not at once.

The transport is selected by the broker URL scheme ``reelstream+kafka://``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import faust
from aiokafka import errors as kafka_errors
from aiokafka.client import AIOKafkaClient, ConnectionGroup
from aiokafka.consumer import fetcher as aiokafka_fetcher
from faust.streams import _current_event
from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.utils.functional import consecutive_numbers
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from streams import poison

SCHEME = "reelstream+kafka"
_log = logging.getLogger("reelstream.kafka")


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    fetch_max_wait_ms = 100

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its Fetcher in start(), which has not run yet.
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer


class ReadOffsets(defaultdict):
    """Faust's read offsets (``Consumer._read_offset``, the last offset handed to the
    agents per partition), with what the adapter needs to hand records over in order:
    each seek's position until a record at or below it is handed over, a count of
    seeks, and the positions it has sought again itself.

    Faust's drain loop hands a record to the agents only if its offset is at or above
    the partition's read offset, then sets the read offset to it; a record past the
    next offset leaves a gap that counts as acked once a later offset is. Two orders
    made it drop or reorder records of the events topic (issue 11):

    * After a seek back (a restored model checkpoint commits its round's offset before
      Faust seeks there; a partition kept through a rebalance restarts at its commit),
      records aiokafka had already returned from the old position still arrive first.
      In Faust alone they moved the read offset past the seek position and the records
      in between were dropped and committed over (``test_scale_out``'s residual loss);
      handed over, they came before the records below them (``test_fault_join_leave``:
      one user's sessions counted in another order).
    * After a rebalance, the first record of a partition was sometimes one past the
      committed offset Faust had just sought to (aiokafka's position came from a later
      commit), and the gap in between was counted as acked.
    * A partition newly assigned has no read offset until Faust's recovery seeks it, and
      the recovery resumes it just before that seek. Records fetched in between were
      handed over from wherever aiokafka stood: worker a folded in 253-265 of events-0
      and, once the seek to the commit (249) landed, 249-252 after them
      (``test_fault_join_leave``, 2026-12-06: 300 watch seconds too many for 4 users).

    So :func:`drop_overtaken` holds each acks-enabled partition to its next offset
    (:meth:`expected`): a record past it is dropped and the partition sought back to
    that offset, and only a fetch begun after that seek may show a real gap there (a
    transaction's markers, deleted records), which then goes through as in Faust.
    aiokafka never returns a record fetched before a seek from a fetch begun after it.
    A partition whose position is not known (:attr:`known`: assigned, not yet sought,
    never handed over) hands nothing over: the seek that follows reads it from there.
    """

    def __init__(self) -> None:
        super().__init__(lambda: None)
        self.sought: dict[TP, int] = {}  # partition -> seek position not yet read back
        self.epoch = 0  # seeks so far: a fetch that began at an older count may be stale
        self.checked: dict[TP, tuple[int, int]] = {}  # tp -> (offset, epoch) sought again
        self.resought_in: dict[TP, int] = {}  # tp -> epoch of the fetch it was sought in
        self.dropped = 0
        # For the agents' order (streams/worker/offset_order.py): real gaps handed over,
        # the latest few per partition as [start, end), and where the last rebalance's
        # seeks put each partition, until taken (take_seeks).
        self.gaps: dict[TP, deque[tuple[int, int]]] = {}
        self.rebalance_seeks: dict[TP, int | None] = {}
        # Partitions with a known position: sought, or handed over from. Faust pops a
        # revoked partition's read offset, so a partition assigned again is unknown until
        # its rebalance's seek; its records fetched before are dropped (counted here).
        self.known: set[TP] = set()
        self.unknown_dropped: dict[TP, tuple[int, int]] = {}  # tp -> (first offset, count)

    def seeked(self, positions: dict[TP, int | None]) -> None:
        self.epoch += 1
        self.known.update(positions)
        for tp, at in positions.items():
            if at is None:
                self.sought.pop(tp, None)
            else:
                self.sought[tp] = at

    def expected(self, tp: TP) -> int | None:
        """The next offset the partition should hand over (None: not known yet)."""
        at = self.sought.get(tp)
        if at is not None:
            return at
        last = self.get(tp)
        return None if last is None else last + 1

    def verdict(self, tp: TP, offset: int, fetched_at: int) -> int | None:
        """None to hand a record over; else the offset to read the partition again from
        (the record is dropped). ``fetched_at``: the seek count when its fetch began."""
        want = self.expected(tp)
        if want is None or offset <= want:
            return None
        checked = self.checked.get(tp)
        if checked is not None and checked[0] == want and fetched_at >= checked[1]:
            return None  # read again from ``want`` and still past it: a real gap
        return want

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        self.sought.pop(tp, None)  # read back
        if offset is not None:
            self.known.add(tp)
        super().__setitem__(tp, offset)

    def __delitem__(self, tp: TP) -> None:
        self.known.discard(tp)
        self.unknown_dropped.pop(tp, None)
        super().__delitem__(tp)

    def pop(self, tp: TP, *default: Any) -> Any:
        """Faust pops a revoked partition's read offset: its position is unknown again."""
        self.known.discard(tp)
        self.unknown_dropped.pop(tp, None)
        return super().pop(tp, *default)

    def after_seek(
        self, acked: Callable[[str], bool]
    ) -> tuple[dict[TP, int], dict[TP, tuple[int, int]]]:
        """Faust's ``perform_seek`` has set the read offsets: every acks-enabled partition's
        position is known. Returns the partitions the client must still be sought to (it
        left them where they stood, with no commit above 0, past records dropped while
        they were unknown: to the commit 0, else the first dropped record) and the drops."""
        positions = {tp: o for tp, o in self.items() if acked(tp.topic)}
        dropped, self.unknown_dropped = self.unknown_dropped, {}
        seeks: dict[TP, int] = {}
        for tp, (first, _) in dropped.items():
            if tp in positions and not positions[tp]:  # None or 0: not sought
                at = seeks[tp] = positions[tp] = first if positions[tp] is None else 0
                dict.__setitem__(self, tp, at)  # as Faust's perform_seek sets a commit
        self.seeked(positions)
        self.rebalance_seeks.update(positions)
        return seeks, dropped

    def drop_unknown(self, tp: TP, offset: int) -> None:
        """A record of a partition whose position is not known, dropped."""
        self.dropped += 1
        first, n = self.unknown_dropped.get(tp, (offset, 0))
        self.unknown_dropped[tp] = (min(first, offset), n + 1)

    def rewind(self, tp: TP, offset: int) -> bool:
        """Records from ``offset`` on were handed over and then dropped before an agent
        took them (:class:`FlowControl`): hand the partition over again from there.
        False when a seek back at or below ``offset`` is still to be read back (it reads
        them again anyway)."""
        pending = self.sought.get(tp)
        if pending is not None and pending <= offset:
            return False
        super().__setitem__(tp, offset - 1 if offset > 0 else None)  # Faust's gate: >= last
        self.seeked({tp: offset})
        return True


async def drop_overtaken(
    consumer: Any, records: AsyncIterator[tuple[TP, Any]]
) -> AsyncIterator[tuple[TP, Any]]:
    """``records`` (one of Faust's fetches) held to each partition's next offset
    (:class:`ReadOffsets`): a record past it is dropped and its partition sought back
    to that offset once in this fetch (``consumer._seek``), so that the records are
    read again, in order, by a later fetch. The seek count is taken before the fetch
    starts. Topics without acks (changelogs: compacted, gaps are normal) go through."""
    read = consumer._read_offset
    if not isinstance(read, ReadOffsets):
        async for item in records:
            yield item
        return
    acked = consumer.app.topics.acks_enabled_for
    fetched_at = read.epoch
    async for tp, message in records:
        if tp not in read.known and acked(tp.topic):
            # Assigned, not yet sought: from wherever aiokafka stood. The seek reads it.
            read.drop_unknown(tp, message.offset)
            continue
        again = read.verdict(tp, message.offset, fetched_at) if acked(tp.topic) else None
        if again is None:
            yield tp, message
            continue
        read.dropped += 1
        if read.resought_in.get(tp) == fetched_at:
            continue  # sought again in this fetch already
        read.resought_in[tp] = fetched_at
        _log.info(
            "offset %d of %s-%d arrived where %d was next (%s): dropped, read again from %d",
            message.offset,
            tp.topic,
            tp.partition,
            again,
            "fetched before a seek" if fetched_at != read.epoch else "a gap",
            again,
        )
        await consumer._seek(tp, again)
        read.epoch += 1  # fetches that began before this seek may be stale too
        read.checked[tp] = (again, read.epoch)


#: Seconds a gap at the head of a partition's acked offsets may block its commits before
#: the partition is read again from the committed offset (:meth:`Consumer._head_gap`).
HEAD_GAP_S = 10.0


class Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = ReadOffsets()
        self._head_gaps: dict[TP, float] = {}  # partition -> when its head gap was seen
        self._rereads: set[asyncio.Future] = set()

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's ``Consumer._new_offset`` with its acked list kept free of duplicates.

        After a rebalance in which a worker keeps a partition, Faust resets the read offset
        to the committed one while records fetched before the seek still arrive; the gap it
        then records covers offsets that are delivered and acked again after the seek. Its
        gap filling appends them to the acked list a second time, and the first run of
        consecutive numbers (all a commit takes) then ends at every duplicate: the
        partition's commit creeps forward by one offset per commit while processing goes
        on, and the table changelog rows attached to later offsets are never sent (Faust
        publishes them only once their source offset is committed). Seen here as profiles
        missing from the changelog after a join and a leave (tests/integration/
        test_scale_out.py); upstream: robinhood/faust#625, #559, faust-streaming/faust#606.
        """
        acked = self._acked[tp]
        if not acked:
            return None
        gap_for_tp = self._gap[tp]
        if gap_for_tp:
            max_offset = max(acked)
            candidates = sorted(gap_for_tp.overlap(0, max_offset), key=lambda x: x.begin)
            if candidates:
                fill = [o for entry in candidates for o in range(entry.begin, entry.end)]
                acked.extend(fill)
                gap_for_tp.chop(0, max(fill[-1], max_offset + 1))
        committed = self._committed_offset[tp]
        # The fix: each offset once, and none the broker already holds as committed.
        acked[:] = sorted({o for o in acked if committed is None or o >= committed})
        if not acked:
            return None
        if committed and acked[0] - committed > 1:
            self._head_gap(tp, committed, acked)
            return None  # as Faust: a gap at the head, wait for it
        self._head_gaps.pop(tp, None)
        batch = next(consecutive_numbers(acked))
        del acked[: len(batch)]
        self._acked_index[tp].difference_update(batch)
        return int(batch[-1]) + 1

    def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        """Faust's, each partition held to its next offset: :func:`drop_overtaken`."""
        return drop_overtaken(self, super().getmany(timeout))

    def _head_gap(self, tp: TP, committed: int, acked: list[int]) -> None:
        """Offsets from ``committed`` were never acked while later ones were: each batch
        acks in order, so they were never handed over (seen after a rebalance in
        ``test_fault_join_leave``: a kept partition's commit stayed at a record that was
        folded in only after the next rebalance, or never). Once this has lasted
        :data:`HEAD_GAP_S`, the partition is read again from ``committed``: the missing
        records are folded in late rather than lost, and the others are skipped as held."""
        now = time.monotonic()
        since = self._head_gaps.setdefault(tp, now)
        if now - since < HEAD_GAP_S:
            return
        self._head_gaps[tp] = now  # at most once per HEAD_GAP_S
        _log.warning(
            "commits of %s-%d wait for offset %d for %.0f s while %d later offsets are acked "
            "(from %d; read offset %s)",
            tp.topic,
            tp.partition,
            committed,
            now - since,
            len(acked),
            acked[0],
            self._read_offset.get(tp),
        )
        self.read_again_from({tp: committed}, "block the partition's commits")

    def read_again_from(self, first: dict[TP, int], why: str) -> None:
        """Partitions whose records from ``first[tp]`` on never reached an agent (``why``):
        each one still assigned is held to that offset at once (records past it are
        dropped, :func:`drop_overtaken`) and sought back there."""
        read = self._read_offset
        if not isinstance(read, ReadOffsets):
            return
        assigned = self.assignment()
        acked = self.app.topics.acks_enabled_for
        for tp, offset in sorted(first.items()):
            if tp not in assigned or not acked(tp.topic):
                continue  # revoked: its next owner reads it from the commit
            committed = self._committed_offset.get(tp)
            if committed is not None and offset < committed:
                _log.info(
                    "%s-%d not read again from %d: committed up to %d",
                    tp.topic,
                    tp.partition,
                    offset,
                    committed,
                )
                continue  # processed already, here or by the previous owner
            if not read.rewind(tp, offset):
                _log.info(
                    "%s-%d is to be read again from %s already",
                    tp.topic,
                    tp.partition,
                    read.sought.get(tp),
                )
                continue
            _log.info(
                "offsets from %d of %s-%d %s: read again from %d",
                offset,
                tp.topic,
                tp.partition,
                why,
                offset,
            )
            task = asyncio.ensure_future(self._seek_back(tp, offset))
            self._rereads.add(task)  # kept until done: the loop holds tasks weakly
            task.add_done_callback(self._rereads.discard)

    async def _seek_back(self, tp: TP, offset: int) -> None:
        read = self._read_offset
        if read.sought.get(tp) != offset:
            return  # read back, or sought elsewhere (a rebalance's seek) meanwhile
        try:
            await self._seek(tp, offset)
        except Exception as exc:  # e.g. revoked meanwhile: its next owner reads from its commit
            _log.warning(
                "reading %s-%d again from %d failed: %r", tp.topic, tp.partition, offset, exc
            )
            return
        read.epoch += 1  # as drop_overtaken: a fetch begun after this may show a real gap
        read.checked[tp] = (offset, read.epoch)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust's, logged: reached only by a gap a read from its start showed again
        (:func:`drop_overtaken`)."""
        # INFO: a transactional producer's markers make one gap per transaction.
        _log.info(
            "offsets %d-%d of %s-%d skipped in delivery (committed %s, read %s): they count "
            "as acked once a later offset is",
            offset_from,
            offset_to - 1,
            tp.topic,
            tp.partition,
            self._committed_offset[tp],
            self._read_offset.get(tp),
        )
        read = self._read_offset
        if isinstance(read, ReadOffsets):
            read.gaps.setdefault(tp, deque(maxlen=16)).append((offset_from, offset_to))
        await faust_aiokafka.Consumer._add_gap(self, tp, offset_from, offset_to)

    async def perform_seek(self) -> None:
        """Faust's, logged: where each partition restarts after a rebalance; the agents'
        partitions keep their seek position until it is read back (:class:`ReadOffsets`).

        aiokafka seeks only to a commit above 0: a partition without one stays where the
        client stood, past the records dropped while its position was unknown. Such a
        partition is sought to its commit (0), or with none to the first dropped record
        (where the reset policy put the client)."""
        await super().perform_seek()
        read = self._read_offset
        if isinstance(read, ReadOffsets):
            seeks, dropped = read.after_seek(self.app.topics.acks_enabled_for)
            for tp, at in sorted(seeks.items()):
                await self._seek(tp, at)
            if dropped:
                _log.info(
                    "records fetched before the rebalance's seek, dropped (read again from it): %s",
                    ", ".join(
                        f"{tp.topic}-{tp.partition} {first}- ({n})"
                        for tp, (first, n) in sorted(dropped.items())
                    ),
                )
        _log.info(
            "seeked to committed offsets: %s",
            {f"{tp.topic}-{tp.partition}": o for tp, o in sorted(self._read_offset.items())},
        )


class FlowControl(FlowControlEvent):
    """Faust's flow control of the stream queues, telling the consumer what a clear drops.

    Faust clears every stream queue each time flow resumes (mode's ``FlowControlEvent``
    with ``clear_on_resume`` queues), and its recovery resumes flow twice in one
    rebalance: once when no changelog needs reading, and again after it has sought the
    stream partitions to their commits. Records fetched from the commit in between were
    handed over (Faust's read offset moved past them) and then cleared, never acked: the
    partition's commit stayed at the first of them while later records were processed,
    and they were folded in only after the next rebalance's seek, out of order, or never
    (tests/integration/test_fault_join_leave.py, issue 11). Here the clear reports the
    first dropped offset of each partition to :meth:`Consumer.read_again_from`, which reads
    the partition again from it. Uses mode's ``_queues`` and asyncio's ``Queue._queue``.
    """

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._app = app

    def clear(self) -> None:
        first: dict[TP, int] = {}
        last: dict[TP, int] = {}
        count: dict[TP, int] = defaultdict(int)
        for queue in self._queues:
            for item in queue._queue:
                message = getattr(item, "message", None)
                tp, offset = getattr(message, "tp", None), getattr(message, "offset", None)
                if not isinstance(tp, TP) or not isinstance(offset, int):
                    continue
                first[tp] = min(first.get(tp, offset), offset)
                last[tp] = max(last.get(tp, offset), offset)
                count[tp] += 1
        super().clear()
        if not first:
            return
        _log.info(
            "records cleared from the stream queues: %s",
            ", ".join(
                f"{tp.topic}-{tp.partition} {first[tp]}-{last[tp]} ({count[tp]})"
                for tp in sorted(first)
            ),
        )
        read_again = getattr(self._app.consumer, "read_again_from", None)
        if read_again is not None:
            read_again(first, "were cleared from the stream queues before an agent took them")


class App(faust.App):
    """Faust's app with :class:`FlowControl` over its stream queues."""

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return FlowControl(self, loop=self.loop)


class Producer(faust_aiokafka.Producer):
    """Keeps every topic it sends to in the aiokafka client's metadata topic list.

    aiokafka's client starts with an empty list, which means "all topics": a send to a
    topic already in that first answer never adds it to the list. Once any topic is added
    (a send to a topic created later, such as this app's title snapshots), each refresh
    asks for the listed topics only and *replaces* the cluster metadata, so unlisted
    topics (scores, changelogs) vanish from it. Batches already queued for them then have
    no known leader; the sender keeps forcing refreshes that never ask for their topic,
    and ``flush()`` (ours after each batch, Faust's before a commit or on revoke) waits
    forever: the two-worker stall (docs/performance.md). Listing each topic before its
    first send keeps it in every refresh.
    """

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        producer = self._producer
        if producer is not None and topic not in producer.client._topics:
            producer.client.add_topic(topic)  # schedules a refresh; the send waits if needed
        return await super().send(topic, *args, **kwargs)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer


def install(fetch_max_wait_ms: int) -> str:
    """Register the scheme and the client guards; returns the broker URL prefix to use."""
    _ConsumerThread.fetch_max_wait_ms = fetch_max_wait_ms
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
    install_client_guards()
    return f"{SCHEME}://"


def install_client_guards() -> None:
    """Every aiokafka client in this process: undecodable batches become records, and
    connection attempts to a node that refused back off. Idempotent."""
    install_record_guard()
    install_reconnect_backoff()


# --- Undecodable batches ------------------------------------------------------------------


class _StandIn:
    """What aiokafka's fetcher reads from a record: one per offset of a batch it cannot read."""

    __slots__ = ("headers", "offset", "timestamp")
    key = None
    value = None
    checksum = None
    timestamp_type = 0

    def __init__(self, offset: int, header: tuple[str, bytes]) -> None:
        self.offset = offset
        self.timestamp = int(time.time() * 1000)
        self.headers = [header]


def _classify(exc: BaseException) -> str:
    if isinstance(exc, kafka_errors.UnsupportedCodecError):
        return poison.UNSUPPORTED_CODEC
    if isinstance(exc, kafka_errors.CorruptRecordException):
        return poison.CORRUPT_BATCH
    return poison.UNDECODABLE_BATCH


class _GuardedBatch:
    """A record batch whose failures become stand-in records instead of exceptions."""

    def __init__(self, batch: Any) -> None:
        self._batch = batch
        self._crc_ok = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def validate_crc(self) -> bool:
        self._crc_ok = bool(self._batch.validate_crc())
        return True  # reported per offset by __iter__ instead of raised for the partition

    def _stand_ins(self, first: int, reason: str, detail: str) -> Iterator[_StandIn]:
        header = poison.header(reason, detail)
        for offset in range(first, self._batch.next_offset):
            yield _StandIn(offset, header)

    def __iter__(self) -> Iterator[Any]:
        first = getattr(self._batch, "base_offset", self._batch.next_offset - 1)
        if not self._crc_ok:
            yield from self._stand_ins(first, poison.CORRUPT_BATCH, "batch CRC mismatch")
            return
        records: Iterator[Any] | None = None
        while True:
            try:
                if records is None:
                    records = iter(self._batch)  # decompresses
                record = next(records)
            except StopIteration:
                return
            except Exception as exc:  # a codec missing, a decompressor or parser failing
                codec = getattr(self._batch, "compression_type", None)
                detail = f"{type(exc).__name__}: {exc} (compression type {codec})"
                yield from self._stand_ins(first, _classify(exc), detail)
                return
            first = record.offset + 1
            yield record


class _GuardedRecords:
    """aiokafka's ``MemoryRecords`` with each data batch guarded; control batches as they are."""

    def __init__(self, records: Any) -> None:
        self._records = records

    def __getattr__(self, name: str) -> Any:
        return getattr(self._records, name)

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None or batch.is_control_batch:
            return batch
        return _GuardedBatch(batch)


class GuardedPartitionRecords(aiokafka_fetcher.PartitionRecords):
    def __init__(self, tp: Any, records: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(tp, _GuardedRecords(records), *args, **kwargs)


def install_record_guard() -> None:
    """Make every aiokafka consumer in this process hand over undecodable batches as records.

    Without it, one batch compressed with a codec whose library is missing, or one
    corrupt batch, raises out of ``getmany`` on every fetch: Faust crashes, restarts and
    crashes again on the same offsets, and a follower stops. Worker, followers and CLI
    all call this; it is idempotent.
    """
    aiokafka_fetcher.PartitionRecords = GuardedPartitionRecords


# --- Reconnects -----------------------------------------------------------------------------

RECONNECT_BACKOFF_S = 0.05  # Kafka's reconnect.backoff.ms default
RECONNECT_BACKOFF_MAX_S = 1.0  # Kafka's reconnect.backoff.max.ms default
_original_get_conn = AIOKafkaClient._get_conn
# client -> (node_id, group) -> (failures in a row, monotonic time of the next attempt)
_refused: weakref.WeakKeyDictionary[Any, dict[Any, tuple[int, float]]] = weakref.WeakKeyDictionary()


def reconnect_delay(failures: int, jitter: float) -> float:
    """Seconds before the next attempt after ``failures`` refusals in a row: doubling from
    50 ms to 1 s, times ``jitter`` (0.8-1.2) so clients do not retry in step.

    >>> [round(reconnect_delay(n, 1.0), 2) for n in (1, 2, 3, 5, 9)]
    [0.05, 0.1, 0.2, 0.8, 1.0]
    """
    return min(RECONNECT_BACKOFF_MAX_S, RECONNECT_BACKOFF_S * 2 ** (failures - 1)) * jitter


async def _get_conn_with_backoff(
    self: Any, node_id: Any, *, group: Any = ConnectionGroup.DEFAULT, no_hint: bool = False
) -> Any:
    """aiokafka's ``_get_conn``, but an attempt to a node that refused waits out a backoff
    first. aiokafka retries at once (aio-libs/aiokafka#496, PR #1014 unmerged): with the
    broker down, each client tried every millisecond or so (about 2,000 attempts and log
    lines a second per worker). Every caller awaits ``_get_conn``, so waiting here slows
    them all to the backoff, like Kafka's own clients."""
    key = (node_id, group)
    state = _refused.setdefault(self, {})
    held = state.get(key)
    if held is not None and key not in self._conns:
        wait = held[1] - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
    conn = await _original_get_conn(self, node_id, group=group, no_hint=no_hint)
    if conn is None:
        failures = (held[0] if held is not None else 0) + 1
        delay = reconnect_delay(failures, random.uniform(0.8, 1.2))
        state[key] = (failures, time.monotonic() + delay)
    else:
        state.pop(key, None)
    return conn


def install_reconnect_backoff() -> None:
    """Make every aiokafka client in this process back off from a node that refused."""
    AIOKafkaClient._get_conn = _get_conn_with_backoff


# --- Faust tables and offsets -------------------------------------------------------------


def bind_event(event: Any) -> None:
    """Make ``event`` Faust's current event: table reads and writes go to its partition."""
    _current_event.set(weakref.ref(event))


async def commit_offsets(app: Any, topic: str, offsets: dict[int, int]) -> bool:
    """Commit explicit offsets of ``topic`` for this consumer group; False if refused.

    A refusal (a rebalance in progress) is logged, not raised: raising inside Faust's
    rebalance signal would take the worker down, and the replay guard already drops
    records the restored models hold when Faust seeks to an older committed offset.
    """
    tps = {TP(topic, p): off for p, off in offsets.items()}
    if not tps or await app.consumer._commit(tps):
        return True
    _log.warning("the broker refused to commit %s offsets %s; replays are skipped", topic, offsets)
    return False


async def broker_metadata_ok(app: Any, timeout_s: float) -> bool:
    """One metadata round trip through the worker's own producer (Faust's ``_producer``)."""
    producer = getattr(app.producer, "_producer", None)
    if producer is None:
        return False
    try:
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=timeout_s)
    except Exception:
        return False
    return True


def take_seeks(consumer: Any) -> dict[TP, int | None]:
    """Where the rebalances since the last call sought each acks-enabled partition."""
    read = getattr(consumer, "_read_offset", None)
    if not isinstance(read, ReadOffsets) or not read.rebalance_seeks:
        return {}
    out, read.rebalance_seeks = read.rebalance_seeks, {}
    return out


def committed_offsets(consumer: Any) -> dict[TP, int]:
    """The consumer's committed offset per partition it holds (Faust's ``_committed_offset``)."""
    return {tp: o for tp, o in consumer._committed_offset.items() if o is not None}


def gap_reported(consumer: Any, tp: TP, start: int, end: int) -> bool:
    """Whether the consumer handed a record over past a real gap covering [start, end)."""
    read = getattr(consumer, "_read_offset", None)
    if not isinstance(read, ReadOffsets):
        return False
    return any(a <= start and end <= b for a, b in read.gaps.get(tp, ()))


def read_offsets(consumer: Any, tps: Iterable[TP]) -> dict[TP, int | None]:
    """The last offset Faust handed to a stream, per partition (None: none yet)."""
    return {tp: consumer._read_offset.get(tp) for tp in tps}


def active_partition_dbs(table: Any) -> Iterable[Any] | None:
    """The RocksDB databases of a table's active partitions (None for other stores)."""
    dbs = getattr(table.data, "_dbs_for_actives", None)
    return None if dbs is None else dbs()


def table_slice(
    table: Any, partition: int, after: bytes | None, n: int
) -> list[tuple[bytes, Any, Any]]:
    """Up to ``n`` rows of one partition of a RocksDB table (rocksdict), in key order,
    after the key ``after`` (from the start for None): (key bytes, key, value)."""
    data = table.data
    db = data._dbs.get(partition)
    if db is None:
        return []
    out: list[tuple[bytes, Any, Any]] = []
    for k, v in db.items(from_key=after) if after is not None else db.items():
        if k == after or k == data.offset_key:
            continue
        out.append((k, data._decode_key(k), data._decode_value(v)))
        if len(out) >= n:
            break
    return out


class PartitionEvent:
    """A stand-in for a record of ``topic``/``partition``: bound with :func:`bind_event`,
    table writes outside the stream loop (the expiry sweep's deletes) go to that partition
    and its changelog partition. Keep a reference while it is bound (a weak one is held)."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, topic: str, partition: int) -> None:
        self.message = TP(topic, partition)
