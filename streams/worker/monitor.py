"""Periodic gauges of the worker: consumer lag per partition, table sizes, stalls.

Runs as Faust timers (every ``INTERVAL_S``); failures are counted, never raised
into the worker. Lag is measured against the broker's end offsets, for the
events-topic partitions assigned to this worker; partitions that move away are
removed from the gauge so a label never reports a stale value.

A partition of a watched topic (the events topic and the title-events topic) is
*stalled* when it has records to read and this worker has read none of them for
``stall_s`` seconds, or when records were handed to its agent and the agent has finished
no batch of that partition for ``stall_s`` (an agent stuck in a batch: every record may
already be read, so the read position alone does not show it). Faust has been seen to
stop fetching a partition after a rebalance without any error (faust-streaming#175,
#523; here after SIGKILL restarts under load). A stall is logged once with what the
consumer says about the partition (paused, position) and the worker's task stacks, counted in
``reelstream_consumer_stalled_partitions``, and makes ``/healthz`` fail so that the
orchestrator restarts the worker (a restart resumes from the committed offsets;
nothing is lost).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from streams import metrics as m
from streams.adapters.kafka_internals import active_partition_dbs, read_offsets

INTERVAL_S = 5.0
log = logging.getLogger("reelstream.monitor")
K = TypeVar("K", bound=Hashable)  # a partition: its number, or a Faust TP


# RocksDB's memory properties, by the ``kind`` label of reelstream_rocksdb_memory_bytes.
ROCKSDB_MEMORY_PROPERTIES = {
    "memtables": "rocksdb.size-all-mem-tables",  # with those iterators pin
    "table_readers": "rocksdb.estimate-table-readers-mem",
    "block_cache": "rocksdb.block-cache-usage",
}


def _int_property(db: Any, name: str) -> int | None:
    prop = getattr(db, "property_int_value", None)
    if prop is None:
        return None
    try:
        value = prop(name)
    except Exception:
        return None
    return None if value is None else int(value)


def rocksdb_memory(table: Any) -> dict[str, int] | None:
    """RocksDB memory of the table's active partitions by kind (None: not RocksDB).
    Each partition has its own block cache (streams/settings.py), so they add up."""
    dbs = active_partition_dbs(table)
    if dbs is None:
        return None
    out = dict.fromkeys(ROCKSDB_MEMORY_PROPERTIES, 0)
    for db in dbs:
        for kind, name in ROCKSDB_MEMORY_PROPERTIES.items():
            out[kind] += _int_property(db, name) or 0
    return out


def table_keys(table: Any) -> int:
    """Keys in the table's active partitions: RocksDB's estimate, counting when absent."""
    dbs = active_partition_dbs(table)
    if dbs is None:
        return len(table.data)
    total = 0
    for db in dbs:
        n = _int_property(db, "rocksdb.estimate-num-keys")
        if n is None:
            n = sum(1 for _ in db.keys())  # noqa: SIM118 - rocksdict
        total += int(n)
    return total


def lag_by_partition(
    assigned: list[K], end_offsets: dict[K, int], read_offsets: dict[K, int | None]
) -> dict[K, int]:
    """Records after the last one read, per partition (the whole partition if none read yet).

    >>> lag_by_partition([0, 1], {0: 10, 1: 5}, {0: 7, 1: None})
    {0: 2, 1: 5}
    """
    out = {}
    for p in assigned:
        last = read_offsets.get(p)
        nxt = 0 if last is None else last + 1
        out[p] = max(0, end_offsets.get(p, 0) - nxt)
    return out


class StallWatch:
    """Partitions with records to read whose read offset has not moved for ``stall_s``.

    >>> w = StallWatch(stall_s=60.0)
    >>> w.observe({0: 5, 1: 0}, {0: 10, 1: 3}, now=0.0)
    set()
    >>> w.observe({0: 5, 1: 0}, {0: 10, 1: 3}, now=61.0)  # 1 has nothing to read
    {0}
    >>> w.observe({0: 4, 1: 0}, {0: 11, 1: 3}, now=62.0)  # 0 moved again
    set()
    """

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self.since: dict[Hashable, tuple[int | None, float]] = {}  # partition -> (read, since)

    def observe(self, lags: dict[K, int], read: dict[K, int | None], now: float) -> set[K]:
        stalled = set()
        for p, lag in lags.items():
            last = self.since.get(p)
            if last is None or last[0] != read.get(p) or lag == 0:
                self.since[p] = (read.get(p), now)
            elif self.stall_s > 0 and now - last[1] >= self.stall_s:
                stalled.add(p)
        for gone in set(self.since) - set(lags):
            del self.since[gone]
        return stalled


class Progress:
    """The last offset each partition's agent finished processing (``note`` after a batch),
    for the stall watch. Forgotten on revocation: a partition that comes back starts over.

    >>> from collections import namedtuple
    >>> Ev = namedtuple("Ev", "message"); Msg = namedtuple("Msg", "tp offset")
    >>> TP = namedtuple("TP", "topic partition"); a, b = TP("ev", 0), TP("ev", 1)
    >>> p = Progress(); p.note([Ev(Msg(a, 4)), Ev(Msg(a, 7)), Ev(Msg(b, 1))])
    >>> p.done[a], p.done[b]
    (7, 1)
    """

    def __init__(self) -> None:
        self.done: dict[Any, int] = {}
        self.last: dict[Any, int] = {}  # kept through revocations: the order the agent saw

    def note(self, batch: list[Any]) -> None:
        last = self.last
        for event in batch:
            msg = event.message
            if msg.offset > self.done.get(msg.tp, -1):
                self.done[msg.tp] = msg.offset
            before = last.get(msg.tp)
            if before is not None and msg.offset != before + 1:
                # A skip or a read again, as the agent saw it (a rebalance reads from the
                # commit; a skip is records the consumer handed over and the agent never got).
                # The partition in the template: the log's repeat filter limits lines per
                # template, and each partition's own order is what a report needs.
                where = f"{msg.tp.topic}-{msg.tp.partition}"
                log.info("the agent took offset %d of " + where + " after %d", msg.offset, before)
            last[msg.tp] = msg.offset

    def forget(self) -> None:
        self.done.clear()


class Monitor:
    def __init__(
        self,
        app: Any,
        events_topic: str,
        tables: dict[str, Any],
        stall_s: float = 60.0,
        describe: Callable[[set[str]], str] | None = None,
        watched_topics: tuple[str, ...] = (),
        progress: Progress | None = None,
    ) -> None:
        self.app = app
        self.progress = progress
        self.busy_watch = StallWatch(stall_s)
        self.events_topic = events_topic
        self.watched = {events_topic, *watched_topics}
        self.tables = tables
        self.reported: set[int] = set()
        self.watch = StallWatch(stall_s)
        self.stalled: set[str] = set()  # "topic:partition"
        self.describe = describe

    async def update_lag(self) -> None:
        consumer = self.app.consumer
        try:
            tps = [tp for tp in consumer.assignment() if tp.topic in self.watched]
        except Exception:  # consumer not started yet
            return
        try:
            ends = await consumer.highwaters(*tps) if tps else {}
        except Exception as exc:
            m.KAFKA_ERRORS.labels(op="end_offsets").inc()
            log.warning("could not read end offsets: %s", exc)
            return
        read = read_offsets(consumer, tps)
        lags = lag_by_partition(tps, dict(ends), read)
        events_lags = {tp.partition: n for tp, n in lags.items() if tp.topic == self.events_topic}
        for p, lag in events_lags.items():
            m.CONSUMER_LAG.labels(partition=str(p)).set(lag)
        for gone in self.reported - set(events_lags):
            m.CONSUMER_LAG.remove(str(gone))
        self.reported = set(events_lags)
        now = time.monotonic()
        unread = self.watch.observe(lags, read, now)
        unprocessed: set[Any] = set()
        if self.progress is not None:
            # Read but not processed: only partitions whose agent finished a batch since
            # their assignment (before that, the read position may predate it).
            done = {tp: self.progress.done.get(tp) for tp in tps}
            behind = {
                tp: (read[tp] or 0) - d if d is not None and (read[tp] or -1) > d else 0
                for tp, d in done.items()
            }
            unprocessed = self.busy_watch.observe(behind, done, now)
        stalled = {f"{tp.topic}:{tp.partition}" for tp in unread | unprocessed}
        if stalled - self.stalled:
            detail = self.describe(stalled) if self.describe is not None else ""
            log.error(
                "partitions %s have records to read but none was read, or records read but "
                "none processed, for %.0f s (read: %s; processed: %s): the worker reports "
                "unhealthy on /healthz so that it is restarted. %s",
                sorted(stalled),
                self.watch.stall_s,
                sorted(f"{tp.topic}:{tp.partition}" for tp in unread),
                sorted(f"{tp.topic}:{tp.partition}" for tp in unprocessed),
                detail,
            )
        self.stalled = stalled
        m.CONSUMER_STALLED.set(len(stalled))

    def update_tables(self) -> None:
        for name, table in self.tables.items():
            try:
                m.TABLE_KEYS.labels(table=name).set(table_keys(table))
                for kind, size in (rocksdb_memory(table) or {}).items():
                    m.ROCKSDB_MEMORY.labels(table=name, kind=kind).set(size)
            except Exception as exc:
                log.warning("could not size table %s: %s", name, exc)


def register(
    app: Any,
    events_topic: str,
    tables: dict[str, Any],
    stall_s: float = 60.0,
    describe: Callable[[set[str]], str] | None = None,
    watched_topics: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> Monitor:
    mon = Monitor(app, events_topic, tables, stall_s, describe, watched_topics, progress)

    @app.timer(INTERVAL_S)
    async def _monitor() -> None:
        await mon.update_lag()
        mon.update_tables()

    return mon
