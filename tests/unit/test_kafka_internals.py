"""Guards for each private Faust and aiokafka attribute streams/adapters/kafka_internals uses.

Each test fails when an upgrade moves what the adapter relies on, so the breakage shows
here instead of as a silent change of behaviour in a running worker.
"""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace

import aiokafka.codec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams import poison
from streams.adapters import kafka_internals
from tests.unit.faust_stand_ins import Event as _Event
from tests.unit.faust_stand_ins import Msg as _Msg

TP = TopicPartition("events", 3)
LZ4, ZSTD, SNAPPY, GZIP = 3, 4, 2, 1


def batch(codec: int, base_offset: int = 0, n: int = 3) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i in range(n):
        builder.append(i, timestamp=None, key=b"u1", value=b'{"i":%d}' % i, headers=[("h", b"x")])
    raw = bytearray(builder.build())
    raw[0:8] = base_offset.to_bytes(8, "big")  # the broker assigns the base offset
    return bytes(raw)


def fetched(buffer: bytes, fetch_offset: int = 0) -> list:
    """Records as aiokafka's fetcher yields them from one fetch response, guard installed."""
    records = kafka_internals.GuardedPartitionRecords(
        TP, MemoryRecords(buffer), None, fetch_offset, None, None, True, 0
    )
    return [records._consumer_record(TP, r) for r in records._records_iterator]


# --- the private attributes themselves ------------------------------------------------------


async def test_aiokafka_consumer_keeps_fetch_max_wait_ms_as_private_attribute() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=321)
    assert consumer._fetch_max_wait_ms == 321


async def test_aiokafka_client_keeps_its_metadata_topic_list_in_topics() -> None:
    client = AIOKafkaClient(bootstrap_servers="127.0.0.1:1")
    assert client._topics == set()
    client.add_topic("scores")
    assert "scores" in client._topics


def test_faust_consumer_thread_creates_its_consumer_in_create_worker_consumer() -> None:
    assert hasattr(faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer")
    assert hasattr(faust_aiokafka.Consumer, "_new_consumer_thread")
    assert (
        "transport"
        in inspect.signature(
            faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
        ).parameters
    )


def test_aiokafka_fetcher_builds_partition_records_by_module_global_name() -> None:
    source = inspect.getsource(aiokafka_fetcher.Fetcher)
    assert "PartitionRecords(" in source
    params = list(inspect.signature(aiokafka_fetcher.PartitionRecords.__init__).parameters)
    assert params[:3] == ["self", "tp", "records"]
    assert AIOKafkaProducer  # the producer subclass only adds a topic before send


def test_install_record_guard_replaces_the_fetchers_class_and_is_idempotent() -> None:
    kafka_internals.install_record_guard()
    kafka_internals.install_record_guard()
    assert aiokafka_fetcher.PartitionRecords is kafka_internals.GuardedPartitionRecords


# --- what the guard does with real record batches -------------------------------------------


@pytest.mark.parametrize("codec", [0, GZIP, SNAPPY, LZ4, ZSTD])
def test_every_codec_decodes_with_the_declared_libraries(codec: int) -> None:
    records = fetched(batch(codec, base_offset=10), fetch_offset=10)
    assert [r.offset for r in records] == [10, 11, 12]
    assert [r.value for r in records] == [b'{"i":0}', b'{"i":1}', b'{"i":2}']
    assert all(poison.rejection(r.headers) is None for r in records)
    assert records[0].headers == (("h", b"x"),)


def test_batch_with_a_missing_codec_becomes_one_stand_in_per_offset(monkeypatch) -> None:
    raw = batch(LZ4, base_offset=40, n=4)
    monkeypatch.setattr(aiokafka.codec, "cramjam", None)  # as if the library were missing
    records = fetched(raw, fetch_offset=40)
    assert [r.offset for r in records] == [40, 41, 42, 43]
    assert all(r.value is None and r.key is None for r in records)
    reasons = {poison.rejection(r.headers).reason for r in records}
    assert reasons == {poison.UNSUPPORTED_CODEC}
    assert "lz4" in poison.rejection(records[0].headers).detail


def test_corrupt_batch_becomes_stand_ins_and_the_next_batch_is_read() -> None:
    bad = bytearray(batch(GZIP, base_offset=0, n=2))
    bad[-3] ^= 0xFF  # flip payload bits: the CRC no longer matches
    good = batch(0, base_offset=2, n=2)
    records = fetched(bytes(bad) + good)
    assert [r.offset for r in records] == [0, 1, 2, 3]
    assert [poison.rejection(r.headers) is not None for r in records] == [1, 1, 0, 0]
    assert poison.rejection(records[0].headers).reason == poison.CORRUPT_BATCH
    assert records[2].value == b'{"i":0}'


def test_fetch_position_moves_past_an_unreadable_batch(monkeypatch) -> None:
    raw = batch(ZSTD, base_offset=7, n=3)
    monkeypatch.setattr(aiokafka.codec, "cramjam", None)
    records = kafka_internals.GuardedPartitionRecords(
        TP, MemoryRecords(raw), None, 7, None, None, True, 0
    )
    assert len(list(records)) == 3
    assert records.next_fetch_offset == 10  # committed like any other offset


# --- Faust's table partitions: the rebalance checkpoint bug ---------------------------------


def _write(store, user: str, partition: int, offset: int) -> None:
    from features.user_profile import UserProfile

    store.bind(_Event(_Msg(partition, offset)))
    prof = UserProfile()
    prof.events = offset
    store[user] = prof
    store.flush()


def test_faust_store_reads_the_partition_of_the_current_event(profile_store):
    """Why every table read binds the record's event first (Faust's behaviour, kept in
    view: checkpoints once read rows outside the stream loop and missed them)."""
    _write(profile_store, "alice", 0, 7)
    _write(profile_store, "bob", 2, 9)  # the last record handled: partition 2
    profile_store.forget()  # a rebalance drops the cache
    assert profile_store.get("alice") is None  # read from partition 2's store: missed


def test_a_row_keeps_its_state_as_of_the_checkpoint_round_through_the_table(profile_store):
    """The pre-image a restore rewinds to is part of the row (one changelog record): it
    survives a rebalance that drops the cache, and other partitions' rows are untouched."""
    from features.user_profile import UserProfile

    _write(profile_store, "bob", 2, 9)  # a user of another partition, idle from now on
    _write(profile_store, "alice", 0, 7)
    profile_store.gen = 100  # a checkpoint round was written
    profile_store.bind(_Event(_Msg(0, 8)))
    profile_store.capture("alice")  # alice's first change since the round
    alice = profile_store["alice"]
    alice.events = 8
    alice.affinity["genre:drama"] = 1.0  # in place: the kept pre-image must not follow
    profile_store["alice"] = alice
    profile_store.flush()
    profile_store.forget()  # a rebalance
    profile_store.bind(_Event(_Msg(0, 8)))
    assert profile_store["alice"].events == 8
    assert profile_store.rewind("alice", 99) is False  # a later round than asked: refused
    assert profile_store.rewinds_refused == 1
    assert profile_store.rewind("alice", 100) is True
    assert profile_store["alice"].events == 7 and profile_store["alice"].affinity == {}
    profile_store["alice"].affinity["genre:drama"] = 2.0  # the live row again, in place
    assert profile_store.rewind("alice", 100) is True
    assert profile_store["alice"].affinity == {}
    profile_store.bind(_Event(_Msg(2, 10)))
    assert profile_store.rewind("bob", 100) is False  # unchanged since the round
    assert profile_store["bob"].events == 9
    profile_store.bind(_Event(_Msg(0, 11)))
    profile_store.capture("carol")  # new since the round: rewinds to no state at all
    profile_store["carol"] = UserProfile()
    profile_store["carol"].events = 1
    assert profile_store.rewind("carol", 100) is True
    assert profile_store["carol"].events == 0


def _change(store, user: str, partition: int, offset: int) -> None:
    from features.user_profile import UserProfile

    store.bind(_Event(_Msg(partition, offset)))
    store.capture(user)
    prof = store.get(user) or UserProfile()
    prof.events = offset
    store[user] = prof
    store.flush()


def test_a_row_changed_while_its_round_is_written_can_rewind_to_the_last_landed_one(
    profile_store,
):
    """A round is written alongside the next batches: a worker that dies before it lands
    restores the round before, and every row changed in between rewinds to that one."""
    store = profile_store
    _write(store, "bob", 0, 9)  # before any round; unchanged in round 100
    store.round_taken(100)
    store.round_landed(100)
    _change(store, "alice", 0, 7)  # keeps (100, as of 100): new then
    _change(store, "alice", 0, 8)
    store.round_taken(200)  # taken, being written
    assert store.in_flight
    _change(store, "alice", 0, 10)
    _change(store, "bob", 0, 11)
    _change(store, "carol", 0, 12)
    store.forget()  # the worker dies before round 200 lands
    store.restored(100)  # its successor adopts round 100
    store.bind(_Event(_Msg(0, 13)))
    assert store["alice"].events == 10
    assert store.rewind("alice", 100) is True and store["alice"].events == 0  # new at 100
    assert store.rewind("bob", 100) is True and store["bob"].events == 9
    assert store.rewind("carol", 100) is True and store["carol"].events == 0
    assert store.rewinds_refused == 0


def test_once_the_round_lands_the_prior_state_is_dropped(profile_store):
    store = profile_store
    store.round_taken(100)
    store.round_landed(100)
    _change(store, "alice", 0, 7)
    store.round_taken(200)
    _change(store, "alice", 0, 8)
    assert store.prior["alice"] == (100, store.prior["alice"][1])
    store.round_landed(200)
    assert not store.in_flight and store.prior == {}
    _change(store, "alice", 0, 9)  # the row is written again without its prior state
    store.forget()
    store.bind(_Event(_Msg(0, 10)))
    assert store["alice"].events == 9 and "alice" not in store.prior
    assert store.rewind("alice", 100) is False and store.rewinds_refused == 1
    assert store.rewind("alice", 200) is True and store["alice"].events == 7


def test_faust_producer_keeps_its_aiokafka_producer_in_producer_attribute():
    source = inspect.getsource(faust_aiokafka.Producer)
    assert "self._producer" in source
    assert "fetch_all_metadata" in dir(AIOKafkaClient)


def test_faust_consumer_commits_explicit_offsets_with_commit():
    from faust.transport.consumer import Consumer

    params = list(inspect.signature(Consumer._commit).parameters)
    assert params[:2] == ["self", "offsets"]


def test_faust_consumer_keeps_read_offsets_per_partition_in_read_offset():
    from faust.transport.consumer import Consumer

    assert "_read_offset" in Consumer.__annotations__
    assert "self._read_offset = defaultdict(lambda: None)" in inspect.getsource(Consumer)


def test_faust_rocksdb_store_lists_active_partition_dbs():
    from faust.stores.rocksdb import Store

    assert callable(Store._dbs_for_actives)


# --- offset commits after a rebalance (Consumer._new_offset) ------------------------------

FAUST_NEW_OFFSET_SHA256 = "1d2c7ea89a7ad4f1a216c1d51936e569162cd66bd56f889e13fd29c910b58eb0"


def test_faust_new_offset_is_the_one_the_adapter_replaces() -> None:
    """The adapter copies Faust 0.15's ``_new_offset`` with one fix; a new Faust must be
    read again (is the duplicate-ack bug fixed upstream? did the gap logic change?)."""
    import hashlib

    from faust.transport.consumer import Consumer as FaustConsumer

    src = inspect.getsource(FaustConsumer._new_offset)
    assert hashlib.sha256(src.encode()).hexdigest() == FAUST_NEW_OFFSET_SHA256
    for name in ("_acked", "_gap", "_committed_offset", "_acked_index"):
        assert name in inspect.getsource(FaustConsumer.__init__) or name in inspect.getsource(
            FaustConsumer
        )


def test_faust_consumer_adds_gaps_and_seeks_with_the_methods_the_adapter_logs() -> None:
    from faust.transport.consumer import Consumer as FaustConsumer

    assert inspect.iscoroutinefunction(FaustConsumer._add_gap)
    assert list(inspect.signature(FaustConsumer._add_gap).parameters) == [
        "self",
        "tp",
        "offset_from",
        "offset_to",
    ]
    assert inspect.iscoroutinefunction(FaustConsumer.perform_seek)
    assert "_add_gap(" in inspect.getsource(FaustConsumer._drain_messages)


def test_faust_drain_loop_fetches_through_getmany_and_seeks_with_seek() -> None:
    """The adapter filters each fetch by overriding ``getmany`` and seeks a partition again
    with ``_seek(tp, offset)`` (Faust's aiokafka consumer: aiokafka's ``seek``)."""
    from faust.transport.consumer import Consumer as FaustConsumer

    assert inspect.isasyncgenfunction(FaustConsumer.getmany)
    assert list(inspect.signature(FaustConsumer.getmany).parameters) == ["self", "timeout"]
    assert "getmany = self.getmany" in inspect.getsource(FaustConsumer._drain_messages)
    seek = faust_aiokafka.Consumer._seek
    assert inspect.iscoroutinefunction(seek)
    assert list(inspect.signature(seek).parameters) == ["self", "partition", "offset"]


async def test_a_gap_is_logged_with_its_offsets_and_still_recorded(caplog) -> None:
    state, tp = _offsets_state([], [], committed=10)
    state._read_offset = {tp: 10}
    with caplog.at_level("INFO", logger="reelstream.kafka"):
        await kafka_internals.Consumer._add_gap(state, tp, 11, 14)
    assert "offsets 11-13 of events-0 skipped in delivery (committed 10, read 10)" in caplog.text
    assert sorted((i.begin, i.end) for i in state._gap[tp]) == [(11, 15)]


def _offsets_state(acked: list[int], gaps: list[tuple[int, int]], committed: int | None):
    from collections import defaultdict

    from intervaltree import IntervalTree

    tp = TopicPartition("events", 0)
    state = type("State", (), {})()
    state._acked = defaultdict(list, {tp: list(acked)})
    state._acked_index = defaultdict(set, {tp: set(acked)})
    tree = IntervalTree()
    for begin, end in gaps:
        tree.addi(begin, end)
    state._gap = defaultdict(IntervalTree, {tp: tree})
    state._committed_offset = defaultdict(lambda: None, {tp: committed})
    state._head_gaps, state._rereads, state._read_offset = {}, set(), {}
    state._head_gap = lambda *a: kafka_internals.Consumer._head_gap(state, *a)
    return state, tp


def _faust_new_offset(state, tp):
    from faust.transport.consumer import Consumer as FaustConsumer

    return FaustConsumer._new_offset(state, tp)


def test_gap_over_offsets_acked_again_stalls_faust_and_not_the_adapter() -> None:
    # After a seek back, 686-688 are acked again while a gap recorded before the seek
    # covers 686-689: Faust's fill appends them twice.
    acked, gaps = [685, 686, 687, 688, 689, 690, 691], [(686, 690)]
    state, tp = _offsets_state(acked, gaps, committed=685)
    assert _faust_new_offset(state, tp) == 687  # the first run ends at the duplicate
    state, tp = _offsets_state(acked, gaps, committed=685)
    assert kafka_internals.Consumer._new_offset(state, tp) == 692
    assert state._acked[tp] == [] and not state._gap[tp]


async def test_a_head_gap_that_lasts_reads_the_partition_again_from_the_commit(
    monkeypatch, caplog
) -> None:
    """Offsets 698-707 never acked while 708-712 were (test_fault_join_leave,
    2026-12-05): after HEAD_GAP_S the partition is sought back to 698, once per period."""
    clock = [100.0]
    monkeypatch.setattr(kafka_internals.time, "monotonic", lambda: clock[0])
    seeks: list[tuple[int, int]] = []
    state, tp = _offsets_state(list(range(708, 713)), [], committed=698)
    state._read_offset = kafka_internals.ReadOffsets()

    async def _seek(tp_, offset):
        seeks.append((tp_.partition, offset))

    state._seek = _seek
    state.assignment = lambda: {tp}
    state.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True))
    state._seek_back = lambda *a: kafka_internals.Consumer._seek_back(state, *a)
    state.read_again_from = lambda *a: kafka_internals.Consumer.read_again_from(state, *a)
    with caplog.at_level("INFO", logger="reelstream.kafka"):
        answers = [kafka_internals.Consumer._new_offset(state, tp)]
        clock[0] += kafka_internals.HEAD_GAP_S + 1
        answers.append(kafka_internals.Consumer._new_offset(state, tp))
        answers.append(kafka_internals.Consumer._new_offset(state, tp))  # same period
        await asyncio.gather(*state._rereads)
    assert answers == [None, None, None]  # nothing committed past the gap
    assert seeks == [(0, 698)] and state._read_offset.expected(tp) == 698
    assert state._read_offset.checked[tp] == (698, state._read_offset.epoch)
    assert "offsets from 698 of events-0 block the partition's commits" in caplog.text
    assert "commits of events-0 wait for offset 698" in caplog.text


def test_new_offset_keeps_fausts_answers_without_duplicates() -> None:
    cases = [
        ([5, 6, 7, 9], [], 5),  # a hole: commit up to it
        ([8, 9], [], 5),  # a gap at the head: nothing to commit yet
        ([5, 6, 9], [(7, 9)], 5),  # a gap that Kafka skipped (compaction): filled
        ([], [], 5),
        ([3, 4, 5, 6], [], 5),  # below the committed offset: already held
    ]
    for acked, gaps, committed in cases:
        ours = kafka_internals.Consumer._new_offset(*_offsets_state(acked, gaps, committed))
        if acked and min(acked) >= committed:
            assert ours == _faust_new_offset(*_offsets_state(acked, gaps, committed)), acked
    assert kafka_internals.Consumer._new_offset(*_offsets_state([3, 4, 5, 6], [], 5)) == 7
    assert kafka_internals.Consumer._new_offset(*_offsets_state([8, 9], [], 5)) is None


def test_a_row_written_by_a_later_record_marks_an_earlier_one_reordered(profile_store):
    """Across a restart: the row of a worker killed after handling offset 40 makes the
    replayed offset 17 a reordered record (lateness not judged), offset 41 not."""
    _write(profile_store, "carol", 1, 40)
    profile_store.forget()  # the restarted worker reads the row back
    profile_store.bind(_Event(_Msg(1, 17)))
    assert profile_store.written_after("carol", 17)
    assert not profile_store.written_after("carol", 41)
    assert not profile_store.written_after("dave", 17)  # no row yet


async def test_aiokafka_get_conn_keeps_the_shape_the_reconnect_backoff_wraps():
    params = inspect.signature(kafka_internals._original_get_conn).parameters
    assert list(params)[:2] == ["self", "node_id"] and {"group", "no_hint"} <= set(params)
    source = inspect.getsource(kafka_internals._original_get_conn)
    assert "return None" in source  # a refused connection is None, not an exception
    assert "self._conns" in source and hasattr(AIOKafkaClient(), "_conns")


async def test_a_refused_node_is_retried_after_a_growing_backoff_not_at_once():
    kafka_internals.install_client_guards()
    client = AIOKafkaClient(bootstrap_servers="127.0.0.1:1")  # nothing listens there
    attempts = 0
    deadline = asyncio.get_running_loop().time() + 0.6
    while asyncio.get_running_loop().time() < deadline:
        assert await client._get_conn(0) is None
        attempts += 1
    # Without the backoff this loop makes thousands of attempts; with it 50 + 100 + 200 +
    # 400 ms of waits (+/-20 %) leave room for at most five.
    assert 2 <= attempts <= 6, attempts
    failures, _ = kafka_internals._refused[client][(0, kafka_internals.ConnectionGroup.DEFAULT)]
    assert failures == attempts


# --- records fetched before a seek back (ReadOffsets) -------------------------------------


class _Flag:
    def __init__(self) -> None:
        self.on = False

    def is_set(self) -> bool:
        return self.on


def _drain_after_seek(
    read_offsets, seek_to: int, batches: list[list[int]], overtaken=0, before=None, sought=True
):
    """Run Faust's own ``Consumer._drain_messages`` over scripted fetches after a seek of
    partition 0 to ``seek_to``; the first ``overtaken`` fetches began before the seek
    (their records come from the old position). Each fetch goes through the adapter's
    filter when ``read_offsets`` is the adapter's. ``before``: fetch index -> a call made
    before that fetch (``"seek"``: the seek). ``sought=False``: no seek unless ``before``
    makes it (a partition just assigned). Returns (offsets handed to the agents,
    gaps recorded, the adapter's seeks)."""
    from faust.transport.consumer import Consumer as FaustConsumer

    state, tp = _offsets_state([], [], committed=seek_to)
    handed: list[int] = []
    seeks: list[tuple[int, int]] = []
    stopped, fetcher = _Flag(), SimpleNamespace(_stopped=_Flag())
    script = iter(enumerate(batches))
    adapter = isinstance(read_offsets, kafka_internals.ReadOffsets)

    def seek() -> None:
        read_offsets.update({tp: seek_to})  # what Faust's perform_seek does
        if adapter:
            read_offsets.seeked({tp: seek_to})  # what the adapter's perform_seek adds

    async def callback(message) -> None:
        handed.append(message.offset)

    async def fetch(timeout: float):
        i, batch = next(script, (None, None))
        if batch is None:
            stopped.on = True
            return
        if before and i in before:
            seek() if before[i] == "seek" else before[i]()
        if overtaken and i == overtaken - 1:
            seek()  # the seek lands while this fetch (and those before it) is under way
        for off in batch:
            yield tp, SimpleNamespace(offset=off, topic=tp.topic, key=None, value=None)

    def getmany(timeout: float):
        if adapter:
            return kafka_internals.drop_overtaken(state, fetch(timeout))
        return fetch(timeout)

    async def wait_first(*coros):
        await coros[0]
        for c in coros[1:]:
            c.close()

    async def nothing(*_: object) -> None:
        return None

    async def _seek(tp_: TopicPartition, offset: int) -> None:
        seeks.append((tp_.partition, offset))

    state.callback, state.getmany, state._stopped = callback, getmany, stopped
    state._read_offset = read_offsets
    state._seek = _seek
    state._commit_every = None
    state.diag = SimpleNamespace(set_flag=lambda _f: None, unset_flag=lambda _f: None)
    state.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda _t: True))
    state.sleep, state.wait_first = nothing, wait_first
    state.suspend_flow = SimpleNamespace(wait=lambda: nothing())
    state.should_stop = False
    state.consumer_stopped_errors = ()
    state.log = SimpleNamespace(dev=lambda *a, **k: None)
    state._add_gap = lambda *a: kafka_internals.Consumer._add_gap(state, *a)
    if not overtaken and sought:
        seek()
    asyncio.run(FaustConsumer._drain_messages(state, fetcher))
    return handed, sorted((i.begin, i.end) for i in state._gap[tp]), seeks


# As seen in test_scale_out (run 2, 2026-12-05): a restored checkpoint seeks events-1 back
# to 877 while 945 on, fetched from the previous commit, still arrive first; then the
# fetches from 877.
RUN_2 = [list(range(945, 951)), list(range(877, 951))]


def test_records_fetched_before_a_seek_back_drop_the_ones_after_it_in_faust_alone() -> None:
    from collections import defaultdict

    handed, gaps, _ = _drain_after_seek(defaultdict(lambda: None), 877, RUN_2, overtaken=1)
    assert not set(range(878, 945)) & set(handed)  # dropped as already read ...
    assert gaps == [(878, 946)]  # ... and counted as acked once 945 is


def test_the_adapter_hands_over_every_record_from_the_seek_position_in_order() -> None:
    read = kafka_internals.ReadOffsets()
    handed, gaps, seeks = _drain_after_seek(read, 877, RUN_2, overtaken=1)
    # The overtaken records are dropped and read again after the seek, in order: a
    # user's events are never folded in a different order than in the log.
    assert handed == list(range(877, 951)) and gaps == []
    assert seeks == [(0, 877)] and read.dropped == 6 and not read.sought
    # In order after a normal seek: nothing changes.
    handed, gaps, seeks = _drain_after_seek(kafka_internals.ReadOffsets(), 10, [[*range(10, 20)]])
    assert handed == list(range(10, 20)) and gaps == [] and seeks == []


def test_a_kept_partitions_prefetched_records_wait_for_the_seek_position() -> None:
    # As seen in test_fault_join_leave (2026-12-05): worker a keeps events-3 through a
    # rebalance and restarts at its commit, 3427; 3428-3483, fetched before, came first
    # and 3427 after them, so one user's sessions were counted in another order.
    handed, gaps, seeks = _drain_after_seek(
        kafka_internals.ReadOffsets(),
        3427,
        [list(range(3428, 3484)), list(range(3427, 3490))],
        overtaken=1,
    )
    assert handed == list(range(3427, 3490)) and gaps == [] and seeks == [(0, 3427)]


def test_overtaken_records_at_or_below_the_seek_position_go_through() -> None:
    # A fetch the seek overtook that holds the position itself: in order from there on.
    handed, gaps, seeks = _drain_after_seek(
        kafka_internals.ReadOffsets(), 20, [list(range(15, 30))], overtaken=1
    )
    assert handed == list(range(20, 30)) and gaps == [] and seeks == []


def test_a_real_gap_is_recorded_once_a_read_from_its_start_shows_it_again() -> None:
    # 15-17 never come (a transaction's markers, deleted records): 18 is dropped and the
    # partition read again from 15; the fetch after that starts at 18 too, so the gap is
    # real and recorded, as Faust does.
    read = kafka_internals.ReadOffsets()
    handed, gaps, seeks = _drain_after_seek(read, 10, [[10, 11, 12, 13, 14, 18, 19], [18, 19, 20]])
    assert handed == [10, 11, 12, 13, 14, 18, 19, 20] and gaps == [(15, 19)]
    assert seeks == [(0, 15)] and read.dropped == 2
    # ... and reported to the agents' order (streams/worker/offset_order.py).
    consumer, tp = SimpleNamespace(_read_offset=read), TopicPartition("events", 0)
    assert kafka_internals.gap_reported(consumer, tp, 15, 18)
    assert not kafka_internals.gap_reported(consumer, tp, 14, 18)
    assert kafka_internals.take_seeks(consumer) == {}
    read.rebalance_seeks[tp] = 15
    assert kafka_internals.take_seeks(consumer) == {tp: 15}
    assert kafka_internals.take_seeks(consumer) == {}  # taken once


def test_a_partition_that_resumes_past_the_seek_position_is_read_again_from_it() -> None:
    # As seen in test_fault_join_leave (2026-12-05): after a rebalance Faust sought
    # events-0 to its commit, 2006, and the first fetch began at 2050 (a later commit);
    # Faust counted 2007-2049 as acked without handing them over.
    handed, gaps, seeks = _drain_after_seek(
        kafka_internals.ReadOffsets(), 2006, [list(range(2050, 2060)), list(range(2006, 2060))]
    )
    assert handed == list(range(2006, 2060)) and gaps == [] and seeks == [(0, 2006)]


def test_a_real_gap_at_the_seek_position_is_recorded_once_a_later_fetch_shows_it() -> None:
    # 10-12 never come. The fetch the seek overtook is dropped (its records may be from
    # the old position); the next fetch, begun after the seek, starts at 13: a real gap.
    handed, gaps, seeks = _drain_after_seek(
        kafka_internals.ReadOffsets(), 10, [[13, 14, 15], [13, 14, 15, 16]], overtaken=1
    )
    assert handed == [13, 14, 15, 16] and gaps == [(11, 14)] and seeks == [(0, 10)]


def test_a_partition_just_assigned_hands_nothing_over_before_its_seek() -> None:
    # As seen in test_fault_join_leave (2026-12-06): worker a got events-0 back; Faust's
    # recovery resumed it just before seeking it to its commit, 249, and 253-265, fetched
    # from wherever aiokafka stood, were folded in before 249-252.
    read = kafka_internals.ReadOffsets()
    handed, gaps, seeks = _drain_after_seek(
        read,
        249,
        [list(range(253, 266)), list(range(249, 270))],
        before={1: "seek"},
        sought=False,
    )
    assert handed == list(range(249, 270)) and gaps == [] and seeks == []
    assert read.dropped == 13 and read.unknown_dropped == {TopicPartition("events", 0): (253, 13)}


def test_after_a_rebalance_an_uncommitted_partition_restarts_at_its_first_dropped_record():
    # aiokafka's seek_to_committed seeks only to a commit above 0: a partition without
    # one stays past the records dropped while its position was unknown.
    read = kafka_internals.ReadOffsets()
    e0, e1, e2, e3 = (TopicPartition("events", p) for p in range(4))
    cl = TopicPartition("changelog", 0)
    for tp, offsets in ((e0, [7, 5, 6]), (e1, [40, 41]), (e2, [0, 1]), (e3, [3])):
        for off in offsets:
            read.drop_unknown(tp, off)
    # Faust's perform_seek: e0 has no commit, e1 one at 38, e2 one at 0, e3 was revoked.
    read.update({e0: None, e1: 38, e2: 0, cl: None})
    read.pop(e3, None)
    seeks, dropped = read.after_seek(lambda topic: topic == "events")
    assert seeks == {e0: 5, e2: 0}  # e1: aiokafka sought it to 38
    assert dropped == {e0: (5, 3), e1: (40, 2), e2: (0, 2)}
    assert read.expected(e0) == 5 and read.expected(e1) == 38 and read.expected(e2) == 0
    assert read.rebalance_seeks == {e0: 5, e1: 38, e2: 0} and read.known == {e0, e1, e2}
    assert read.unknown_dropped == {}


def test_a_revoked_partitions_position_is_unknown_until_it_is_sought_again() -> None:
    read, tp = kafka_internals.ReadOffsets(), TopicPartition("events", 0)
    assert tp not in read.known and read[tp] is None and tp not in read.known  # a default
    read[tp] = 41  # handed over from
    assert tp in read.known
    read.pop(tp, None)  # what Faust's on_partitions_revoked does
    assert tp not in read.known
    read.update({tp: None})  # Faust's perform_seek: no commit yet ...
    read.seeked({tp: None})  # ... and the adapter's: known, the first record sets it
    assert tp in read.known and read.expected(tp) is None
    del read[tp]
    assert tp not in read.known


def test_aiokafka_seeks_to_committed_only_above_zero() -> None:
    """Why ``ReadOffsets.after_seek`` seeks a partition without a commit itself."""
    from aiokafka import AIOKafkaConsumer

    src = inspect.getsource(AIOKafkaConsumer.seek_to_committed)
    assert "if offset and offset > 0:" in src and "self._fetcher.seek_to(tp, offset)" in src


def test_faust_forgets_a_revoked_partitions_read_offset_with_pop() -> None:
    from faust.transport.consumer import Consumer as FaustConsumer

    assert "self._read_offset.pop(tp, None)" in inspect.getsource(
        FaustConsumer.on_partitions_revoked
    )
    assert "read_offset.update(" in inspect.getsource(FaustConsumer.perform_seek)


# --- records cleared from the stream queues when flow resumes (FlowControl) ----------------


def _queued(fc, offsets: list[tuple[TopicPartition, int]]):
    from mode.utils.queues import FlowControlQueue

    queue = FlowControlQueue(flow_control=fc, clear_on_resume=True)
    for tp, off in offsets:
        queue.put_nowait(SimpleNamespace(message=SimpleNamespace(tp=tp, offset=off)))
    return queue


async def test_a_resume_that_clears_the_queues_reports_each_partitions_first_dropped_offset():
    from faust.types import TP as FaustTP

    reported: list[dict] = []
    app = SimpleNamespace(
        consumer=SimpleNamespace(read_again_from=lambda first, why: reported.append(first))
    )
    fc = kafka_internals.FlowControl(app)
    e3, e1 = FaustTP("events", 3), FaustTP("events", 1)
    q1 = _queued(fc, [(e3, 698), (e3, 699), (e1, 40)])
    q2 = _queued(fc, [(e3, 700), (e1, 39)])
    fc.resume()  # what Faust's recovery does once it has sought the stream partitions
    assert q1.empty() and q2.empty()
    assert reported == [{e3: 698, e1: 39}]
    fc.resume()  # nothing queued: nothing to report
    assert len(reported) == 1


def test_records_cleared_after_the_seek_are_handed_over_again_in_order() -> None:
    # As seen in test_fault_join_leave (2026-12-05): events-3 is sought to its commit,
    # 698; 698-707 are handed over, then cleared from the stream queue when Faust's
    # recovery resumes flow; 708 on arrived and were processed, 698-707 never.
    read = kafka_internals.ReadOffsets()
    tp = TopicPartition("events", 0)
    handed, gaps, seeks = _drain_after_seek(
        read,
        698,
        [list(range(698, 708)), list(range(708, 713)), list(range(698, 713))],
        before={1: lambda: read.rewind(tp, 698)},
    )
    assert handed == [*range(698, 708), *range(698, 713)] and gaps == []
    assert seeks == [(0, 698)]  # the first record past it sought the partition back


def test_a_pending_seek_below_the_cleared_records_is_kept() -> None:
    read = kafka_internals.ReadOffsets()
    tp = TopicPartition("events", 0)
    read[tp] = 730  # records up to 730, fetched before the seek, were handed over
    read.seeked({tp: 698})  # then the partition was sought back to its commit
    assert not read.rewind(tp, 720)  # the cleared 720-730 are read again from 698 anyway
    assert read.expected(tp) == 698
    read[tp] = 705  # read back to 705; then 700-705 are cleared
    assert read.rewind(tp, 700) and read.expected(tp) == 700 and read[tp] == 699


async def test_read_again_from_seeks_back_assigned_acked_partitions_only() -> None:
    from faust.types import TP as FaustTP

    e0, e1, cl = FaustTP("events", 0), FaustTP("events", 1), FaustTP("changelog", 0)
    read = kafka_internals.ReadOffsets()
    for tp in (e0, e1, cl):
        read[tp] = 50
    seeks: list[tuple] = []

    async def _seek(tp, offset) -> None:
        seeks.append((tp, offset))

    consumer = SimpleNamespace(
        _read_offset=read,
        _rereads=set(),
        _seek=_seek,
        assignment=lambda: {e0, cl},
        _committed_offset={e0: 40, cl: None},
        app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: t == "events")),
    )
    consumer._seek_back = lambda tp, o: kafka_internals.Consumer._seek_back(consumer, tp, o)
    kafka_internals.Consumer.read_again_from(consumer, {e0: 45, e1: 46, cl: 47}, "test")
    await asyncio.gather(*consumer._rereads)
    assert seeks == [(e0, 45)]  # e1 is not assigned; the changelog has no acks
    assert read.expected(e0) == 45 and read.checked[e0] == (45, read.epoch)
    assert read.expected(e1) == 51 and read.expected(cl) == 51
    # Never below the commit: those records were processed, here or by the previous owner.
    consumer._committed_offset[e0] = 60
    kafka_internals.Consumer.read_again_from(consumer, {e0: 45}, "test")
    assert consumer._rereads == set() and len(seeks) == 1
    assert kafka_internals.committed_offsets(consumer) == {e0: 60}


def test_faust_clears_stream_queues_through_the_apps_flow_control_on_resume() -> None:
    """The names FlowControl relies on: mode's ``_queues`` and ``clear`` called by
    ``resume``, asyncio's ``Queue._queue``, and channels taking their queue's flow
    control from ``App.flow_control``."""
    from faust.channels import Channel
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    assert "self.clear()" in inspect.getsource(FlowControlEvent.resume)
    fc = FlowControlEvent()
    queue = FlowControlQueue(flow_control=fc, clear_on_resume=True)
    assert queue in fc._queues and hasattr(queue, "_queue")
    assert "clear_on_resume=True" in inspect.getsource(Channel.queue.fget)
    assert "flow_control=self.flow_control" in inspect.getsource(
        kafka_internals.App.FlowControlQueue
    )
    app = kafka_internals.App("guard-flow-control", broker="memory://")
    assert isinstance(app.flow_control, kafka_internals.FlowControl)
