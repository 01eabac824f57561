"""The stall watch over both consumed topics (streams/worker/monitor.py), with a stand-in
consumer: a title-events partition that stops moving must fail /healthz like an events one."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from faust.types import TP

from streams import metrics as m
from streams.worker import monitor


class _Consumer:
    def __init__(self, ends: dict[TP, int]) -> None:
        self.ends = ends
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: None)

    def assignment(self) -> set[TP]:
        return set(self.ends)

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.ends[tp] for tp in tps}


class _App:
    def __init__(self, consumer: _Consumer) -> None:
        self.consumer = consumer


EV0, EV1, TI0 = TP("events", 0), TP("events", 1), TP("title-events", 0)


async def test_a_title_events_partition_that_stops_reading_is_reported_stalled(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(monitor.time, "monotonic", lambda: clock[0])
    consumer = _Consumer({EV0: 10, EV1: 5, TI0: 40})
    consumer._read_offset.update({EV0: 9, EV1: 4, TI0: 12})  # title-events: 27 records behind
    seen: list[set[str]] = []
    mon = monitor.Monitor(
        _App(consumer),
        "events",
        {},
        stall_s=60.0,
        describe=lambda s: seen.append(s) or "",
        watched_topics=("title-events",),
    )
    await mon.update_lag()
    assert mon.stalled == set()
    clock[0] += 61
    await mon.update_lag()
    assert mon.stalled == {"title-events:0"}
    assert seen == [{"title-events:0"}]
    assert m.REGISTRY.get_sample_value("reelstream_consumer_stalled_partitions") == 1
    consumer._read_offset[TI0] = 20  # it moved again
    clock[0] += 5
    await mon.update_lag()
    assert mon.stalled == set()


async def test_only_events_partitions_feed_the_lag_gauge():
    consumer = _Consumer({EV0: 10, TI0: 40})
    consumer._read_offset.update({EV0: 6})
    mon = monitor.Monitor(_App(consumer), "events", {}, watched_topics=("title-events",))
    await mon.update_lag()
    assert mon.reported == {0}
    assert m.REGISTRY.get_sample_value("reelstream_consumer_lag_records", {"partition": "0"}) == 3


class _Msg:
    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.offset = tp, offset


class _Ev:
    def __init__(self, tp: TP, offset: int) -> None:
        self.message = _Msg(tp, offset)


def _watching_progress(consumer: _Consumer, progress: monitor.Progress) -> monitor.Monitor:
    return monitor.Monitor(
        _App(consumer),
        "events",
        {},
        stall_s=60.0,
        watched_topics=("title-events",),
        progress=progress,
    )


async def test_an_agent_stuck_in_a_batch_is_reported_although_every_record_was_read(
    monkeypatch,
):
    clock = [0.0]
    monkeypatch.setattr(monitor.time, "monotonic", lambda: clock[0])
    consumer = _Consumer({EV0: 10, TI0: 40})
    consumer._read_offset.update({EV0: 9, TI0: 39})  # nothing left to read anywhere
    progress = monitor.Progress()
    progress.note([_Ev(EV0, 9), _Ev(TI0, 20)])  # title agent: finished up to 20, then stuck
    mon = _watching_progress(consumer, progress)
    await mon.update_lag()
    clock[0] += 61
    await mon.update_lag()
    assert mon.stalled == {"title-events:0"}
    progress.note([_Ev(TI0, 39)])  # the batch finished
    clock[0] += 5
    await mon.update_lag()
    assert mon.stalled == set()


async def test_a_partition_not_processed_since_its_assignment_is_not_judged_on_progress(
    monkeypatch,
):
    clock = [0.0]
    monkeypatch.setattr(monitor.time, "monotonic", lambda: clock[0])
    consumer = _Consumer({TI0: 40})
    consumer._read_offset.update({TI0: 39})  # a read position from before a rebalance
    progress = monitor.Progress()
    mon = _watching_progress(consumer, progress)
    await mon.update_lag()
    clock[0] += 120
    await mon.update_lag()
    assert mon.stalled == set()


def test_rocksdb_memory_reads_every_kind_from_real_rocksdb(tmp_path) -> None:
    """The property names are RocksDB's: a wrong one would read as 0, not fail."""
    from types import SimpleNamespace

    from rocksdict import Rdict

    dbs = [Rdict(str(tmp_path / f"p{i}")) for i in range(2)]
    try:
        for i, db in enumerate(dbs):
            for k in range(500):
                db[f"u{i}-{k}".encode()] = b"x" * 200
        table = SimpleNamespace(data=SimpleNamespace(_dbs_for_actives=lambda: iter(dbs)))
        mem = monitor.rocksdb_memory(table)
        assert mem is not None and set(mem) == set(monitor.ROCKSDB_MEMORY_PROPERTIES)
        one = monitor.rocksdb_memory(
            SimpleNamespace(data=SimpleNamespace(_dbs_for_actives=lambda: iter(dbs[:1])))
        )
        assert one is not None
        assert mem["memtables"] > one["memtables"] >= 500 * 200  # summed over partitions
        for db in dbs:
            db.flush()
        after = monitor.rocksdb_memory(table)
        assert after is not None and after["table_readers"] > 0  # rows now in SST files
        assert monitor.rocksdb_memory(SimpleNamespace(data={})) is None  # not RocksDB
    finally:
        for db in dbs:
            db.close()


def test_progress_logs_where_the_agent_skipped_or_read_again(caplog):
    tp = TP("events", 2)

    def batch(*offsets):
        return [SimpleNamespace(message=SimpleNamespace(tp=tp, offset=o)) for o in offsets]

    progress = monitor.Progress()
    with caplog.at_level("INFO", logger="reelstream.monitor"):
        progress.note(batch(2537, 2538, 2539))
        progress.note(batch(2540, 2541))  # in order: nothing said
        progress.forget()  # a revocation: the order the agent saw is kept
        progress.note(batch(2551, 2552))  # 2542-2550 never reached the agent
        progress.note(batch(2537))  # read again from the commit
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "the agent took offset 2551 of events-2 after 2541",
        "the agent took offset 2537 of events-2 after 2552",
    ]
    assert progress.done == {tp: 2552}  # the highest since the revocation
