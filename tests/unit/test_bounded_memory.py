"""Bounded memory (issue 11): the user cache's LRU, the expiry sweep's selection, windows.

The cache and the sweep's reads run over a real Faust RocksDB table (``profile_table``,
tests/unit/conftest.py); those tests are async because Faust's changelog send makes a
future on the running loop.
"""

from __future__ import annotations

import pytest

from features.user_profile import UserProfile
from online_models.experiment_live import LiveFold
from online_models.health import ModelHealth
from online_models.ranker import STATS_WINDOW, PrequentialStats, Ranker
from streams.adapters import kafka_internals
from streams.worker.expiry import ExpirySweep, last_activity
from tests.unit.faust_stand_ins import Event as _Event
from tests.unit.faust_stand_ins import Msg as _Msg

DAY = 86_400_000


def _store(table, cache_max: int):
    from streams.worker.profile_store import TableProfileStore

    return TableProfileStore(table, cache_max)


def _write(store, user: str, partition: int, offset: int, last_ts: int = 0) -> None:
    store.bind(_Event(_Msg(partition, offset)))
    prof = store.get(user) or UserProfile()
    prof.events += 1
    prof.last_ts = last_ts
    store[user] = prof
    store.flush()


# --- the user cache: least recently used out, the row read back ------------------------


async def test_the_cache_keeps_the_most_recently_used_records_and_no_more(profile_table):
    store = _store(profile_table, cache_max=2)
    _write(store, "a", 0, 1)
    _write(store, "b", 0, 2)
    store.bind(_Event(_Msg(0, 3)))
    assert store["a"].events == 1  # a read makes "a" the most recently used
    _write(store, "c", 0, 3)
    assert list(store.cache) == ["a", "c"]
    assert store.evicted == 1 and "b" not in store.src


async def test_an_evicted_record_is_read_back_whole_from_its_row(profile_table):
    store = _store(profile_table, cache_max=1)
    store.gen = 7  # a checkpoint round: the row keeps its pre-image (_base)
    store.bind(_Event(_Msg(1, 10)))
    store.capture("a")
    _write(store, "a", 1, 10)
    _write(store, "b", 1, 11)  # evicts "a" with its _src and pre-image
    assert "a" not in store.cache and "a" not in store.src and "a" not in store.base
    store.bind(_Event(_Msg(1, 12)))
    assert store["a"].events == 1
    assert store.src["a"] == 10 and store.base["a"] == (7, None)
    assert store.written_after("a", 9) and not store.written_after("a", 10)


async def test_a_batch_larger_than_the_cache_loses_no_write(profile_table):
    store = _store(profile_table, cache_max=2)
    store.bind(_Event(_Msg(0, 1)))
    for u in "abcde":  # one batch touching five users: all dirty until the flush
        store[u] = UserProfile()
    assert len(store.cache) == 5
    assert store.flush() == 5
    assert len(store.cache) == 2
    store.forget()
    store.bind(_Event(_Msg(0, 2)))
    assert all(store.get(u) is not None for u in "abcde")


# --- expiry: what the sweep selects, the delete --------------------------------------------


def test_last_activity_is_the_latest_event_time_a_row_holds():
    assert last_activity({"last_ts": 5, "gate": [9, [], []]}) == 9
    assert last_activity({"last_ts": 5, "gate": [0, [], []]}) == 5
    assert last_activity({}) == 0 and last_activity(None) == 0


def _rows(by_partition):
    """A read function over {partition: [(user, last_ts)]}, in key order like RocksDB."""

    def read(p, after, n):
        rows = sorted((u.encode(), u, {"last_ts": ts}) for u, ts in by_partition.get(p, []))
        return [r for r in rows if after is None or r[0] > after][:n]

    return read


def test_a_row_is_idle_when_older_than_the_ttl_on_its_own_partitions_clock():
    read = _rows({0: [("a", 1 * DAY), ("b", 9 * DAY)], 1: [("c", 1 * DAY)]})
    sweep = ExpirySweep(ttl_ms=5 * DAY, scan=10)
    sweep.observe({0: 10 * DAY, 1: 3 * DAY})  # partition 1 is two days in: nothing idle
    assert sweep.tick(read, 0.0) == [(0, "a")]
    assert sweep.tick(read, 0.0) == []
    sweep.observe({1: 7 * DAY})
    assert sweep.tick(read, 0.0) == [(0, "a")]  # partition 0 again (round robin; not deleted here)
    assert sweep.tick(read, 0.0) == [(1, "c")]


def test_the_sweep_reads_a_bounded_slice_per_tick_and_resumes_where_it_stopped():
    users = [(f"u{i:02}", 0) for i in range(7)]
    reads = []

    def read(p, after, n):
        reads.append((after, n))
        return _rows({0: users})(p, after, n)

    sweep = ExpirySweep(ttl_ms=DAY, scan=3)
    sweep.observe({0: 5 * DAY})
    got = [sweep.tick(read, 0.0) for _ in range(4)]
    assert [[u for _, u in g] for g in got] == [
        ["u00", "u01", "u02"],
        ["u03", "u04", "u05"],
        ["u06"],
        ["u00", "u01", "u02"],  # a new pass
    ]
    assert reads == [(None, 3), (b"u02", 3), (b"u05", 3), (None, 3)]
    assert sweep.passes == 1


def test_the_sweep_rests_after_a_pass_over_every_partition():
    read = _rows({0: [("a", 0)], 1: [("b", 0)]})
    sweep = ExpirySweep(ttl_ms=DAY, scan=10, pause_s=600)
    sweep.observe({0: 5 * DAY, 1: 5 * DAY})
    assert sweep.tick(read, 0.0) == [(0, "a")]  # partition 0 done, 1 still to read
    assert sweep.tick(read, 1.0) == [(1, "b")]  # the pass is over
    assert sweep.passes == 1
    assert sweep.tick(read, 600.0) == [] and sweep.tick(read, 601.0) == [(0, "a")]


def test_no_clock_no_sweep_and_revoked_partitions_are_forgotten():
    read = _rows({0: [("a", 0)], 2: [("b", 0)]})
    sweep = ExpirySweep(ttl_ms=DAY, scan=10)
    assert sweep.tick(read, 0.0) == []  # no batch seen: no clock to judge by
    sweep.observe({0: 5 * DAY, 2: 5 * DAY})
    sweep.keep_partitions({2})
    assert sweep.tick(read, 0.0) == [(2, "b")] and sweep.tick(read, 0.0) == [(2, "b")]
    assert ExpirySweep(ttl_ms=0, scan=10).enabled is False


async def test_the_table_slice_and_expire_work_on_the_real_table(profile_table):
    store = _store(profile_table, cache_max=10)
    for i, u in enumerate(["d", "a", "c", "b"]):
        _write(store, u, 3, i, last_ts=i * DAY)
    _write(store, "other", 1, 9)
    first = kafka_internals.table_slice(profile_table, 3, None, 3)
    assert [k for _, k, _ in first] == ["a", "b", "c"]
    rest = kafka_internals.table_slice(profile_table, 3, first[-1][0], 3)
    assert [(k, r["last_ts"]) for _, k, r in rest] == [("d", 0)]
    assert kafka_internals.table_slice(profile_table, 2, None, 3) == []  # no store for it

    sweep = ExpirySweep(ttl_ms=DAY, scan=10)
    sweep.observe({3: 3 * DAY})
    idle = sweep.tick(
        lambda p, after, n: kafka_internals.table_slice(profile_table, p, after, n), 0.0
    )
    assert sorted(idle) == [(3, "a"), (3, "d")]  # last_ts 1 day and 0; c is at 2 days
    for p, u in idle:
        stand_in = kafka_internals.PartitionEvent("events", p)
        store.bind(stand_in)
        store.expire(u)
    assert "a" not in store.cache and "d" not in store.cache
    left = [k for _, k, _ in kafka_internals.table_slice(profile_table, 3, None, 10)]
    assert left == ["b", "c"]


async def test_expire_refuses_a_record_with_an_unflushed_change(profile_table):
    store = _store(profile_table, cache_max=10)
    store.bind(_Event(_Msg(0, 1)))
    store["a"] = UserProfile()
    with pytest.raises(RuntimeError):
        store.expire("a")


# --- windows and per-user maps -----------------------------------------------------------


def test_prequential_lists_are_windowed_in_the_worker_and_whole_offline():
    r = Ranker(["x"], warmup=0)
    for i in range(STATS_WINDOW + 500):
        r.learn("watch", {"x": float(i % 2)}, i % 2 == 1)
    s = r.stats["watch"]
    assert len(s.preds) == len(s.labels) == STATS_WINDOW and s.n == STATS_WINDOW + 500
    assert r.metrics()["watch"]["auc"] is not None
    preds, labels = s.tail(10)
    assert len(preds) == 10 and labels == [i % 2 == 1 for i in range(STATS_WINDOW + 490, s.n)]
    r.keep_all_predictions()
    for _ in range(10):
        r.learn("watch", {"x": 1.0}, True)
    assert len(r.stats["watch"].preds) == STATS_WINDOW + 10
    assert PrequentialStats(None).window is None


def test_the_hit_rates_served_lists_are_bounded_and_forgotten_with_the_user():
    h = ModelHealth(window=10, served_max=3)
    for i in range(5):
        h.served(f"u{i}", ["t1"])
    assert list(h.last) == ["u2", "u3", "u4"]
    h.forget("u3")
    assert list(h.last) == ["u2", "u4"]
    assert h.play("u0", "t1") is None  # evicted: not counted


def test_the_experiment_fold_forgets_an_expired_user_and_keeps_the_sums():
    fold = LiveFold()
    fold.expose("u1", "e:a", 0, 0.0, 1)
    fold.observe({"user_id": "u1", "event_type": "play", "title_id": "t", "ts": 2})
    before = fold.snapshot(0)
    fold.forget("u1")
    assert "u1" not in fold.users and fold.snapshot(0) == before


# --- a record that leaves the cache is freed at once, not by a full collection ---------


def test_a_users_record_leaving_the_cache_leaves_no_reference_cycle():
    """Cached records live in the oldest generation; a cycle among an evicted record's
    objects would wait for a full collection, and a worker whose full collections are
    rare would hold every evicted record until then."""
    import gc

    from features.catalog import parse_title
    from online_models.engine import Engine
    from streams.tools.synthetic import SimConfig, Simulation

    sim = Simulation(SimConfig(users=40, titles=60, seed=3))
    eng = Engine()
    for rec in sim.catalog:
        eng.catalog.upsert(parse_title(rec))
    evs = list(sim.events(limit=3000))
    assert any(ev["event_type"] == "impression" for ev in evs)
    for ev in evs:
        eng.ingest(ev)
    pending = [u for u, p in eng.profiles.items() if p.model.impressions]
    assert pending, "some record must hold pending impressions (and their context)"
    gc.collect()
    gc.disable()
    try:
        for uid in list(eng.profiles):
            del eng.profiles[uid]
        assert gc.collect() == 0
    finally:
        gc.enable()
