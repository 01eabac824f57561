"""Title-side exchange between workers: counts exactly once, factors travel, checkpoints."""

import json

import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner

from features.catalog import parse_title
from online_models import checkpoint as codec
from online_models.checkpoint import CheckpointError
from online_models.durable import export_shared, import_shared
from online_models.engine import Engine
from online_models.exchange_aggregator import ShardAggregator
from online_models.exchange_parts import Dims, part_state
from online_models.federation import Federation, TitleExchange
from online_models.mf import blend_title_factors
from streams.adapters.jsonl import write_jsonl
from streams.adapters.kafka_admin import kafka_partition
from streams.cli import main
from streams.tools.synthetic import SimConfig, Simulation


@pytest.fixture(scope="module")
def log():
    sim = Simulation(SimConfig(users=60, titles=50, seed=11))
    catalog = sim.title_catalog()
    return catalog, sim.catalog, sorted(sim.events(limit=4000), key=lambda e: e["ts"])


def run(catalog, events, **kw):
    fed = Federation(catalog, partition_of=kafka_partition, **kw)
    for ev in events:
        fed.engine_for(ev["user_id"]).ingest(ev)
        fed.tick()
    return fed


def one_engine(catalog, events):
    eng = Engine(catalog=catalog)
    for ev in events:
        eng.ingest(ev)
    return eng.models


def test_partitioner_is_the_producers():
    ps = list(range(6))
    for u in ("u1", "user-42", "ü"):
        assert kafka_partition(u, 6) == DefaultPartitioner()(u.encode(), ps, ps)


def test_counts_after_exchange_equal_one_workers_exactly(log):
    catalog, _, events = log
    fed = run(catalog, events, workers=3, partitions=4, exchange_every=97)
    fed.exchange()  # a last round: everything learned is published
    one = one_engine(catalog, events)
    assert len({fed.worker_of(e["user_id"]) for e in events}) == 3  # all workers got users
    for rec in (e.models for e in fed.engines):
        for name in ("trending", "popular"):
            mine, ref = getattr(rec, name), getattr(one, name)
            f = np.exp((mine.clock.ref_ts - ref.clock.ref_ts) * ref.clock.inv_tau)
            assert set(mine.counts) == set(ref.counts)
            for c, arr in ref.counts.items():
                np.testing.assert_allclose(mine.counts[c] * f, arr, rtol=1e-9, atol=1e-12)
        cw, ref = rec.cowatch, one.cowatch
        f = np.exp((cw.clock.ref_ts - ref.clock.ref_ts) * ref.clock.inv_tau)
        np.testing.assert_allclose(cw.counts * f, ref.counts, rtol=1e-9)
        assert ref.counts.sum() > 0
        pairs = {(a, b): v * f for a, row in cw.rows.items() for b, v in row.items()}
        truth = {(a, b): v for a, row in ref.rows.items() for b, v in row.items()}
        assert pairs.keys() == truth.keys() and len(truth) > 0
        assert all(pairs[key] == pytest.approx(v, rel=1e-9) for key, v in truth.items())


def test_without_exchange_each_worker_counts_only_its_users(log):
    catalog, _, events = log
    fed = run(catalog, events, workers=2, partitions=4)
    one = one_engine(catalog, events)
    ref = one.popular.clock
    totals = [
        e.models.popular.raw(None).sum()
        * np.exp((e.models.popular.clock.ref_ts - ref.ref_ts) * ref.inv_tau)
        for e in fed.engines
    ]
    assert 0 < totals[0] < one.popular.raw(None).sum()
    assert sum(totals) == pytest.approx(one.popular.raw(None).sum(), rel=1e-9)


def exchanges(*engines, shards=2, **kw):
    xs = [
        TitleExchange(e.models, f"w{i}", shards=shards, partition_of=kafka_partition, **kw)
        for i, e in enumerate(engines)
    ]
    dims = Dims.of(engines[0].models)
    aggs = [ShardAggregator(s, shards, dims, "w0", **kw) for s in range(shards)]
    return xs, aggs


def snapshots(aggs, *records):
    """Every shard's aggregator folds the given workers' records and snapshots."""
    for recs in records:
        for agg, raw in zip(aggs, recs, strict=True):
            agg.fold(raw)
    return [agg.publish("v", 1) for agg in aggs]


def merged(x, raws):
    return x.merge([x.decode(raw) for raw in raws])


def mass(model, to):
    """A decayed model's global mass in the clock units of ``to``."""
    return model.raw(None) * np.exp((model.clock.ref_ts - to.clock.ref_ts) * to.clock.inv_tau)


def test_a_snapshot_read_twice_counts_once_and_a_contribution_that_goes_back_is_taken_back(log):
    catalog, _, events = log
    a, b = Engine(catalog=catalog), Engine(catalog=catalog)
    (xa, xb), aggs = exchanges(a, b, factors="sum", ranker="sum")
    engines = (a, b)
    for ev in events[:1500]:
        engines[kafka_partition(ev["user_id"], 2)].ingest(ev)
    snaps = snapshots(aggs, xa.publish(), xb.publish())
    merged(xa, snaps)
    merged(xb, snaps)
    # b's checkpoint, as of its seq 1 (through the codec: the export shares live arrays)
    ckpt = codec.decode(codec.encode(export_shared(b.models), {}, "v", 1)).state
    later = [ev for ev in events[1500:] if kafka_partition(ev["user_id"], 2) == 1]
    for ev in later:
        b.ingest(ev)
    before = a.models.popular.raw(None).copy()
    snaps = snapshots(aggs, xb.publish())
    assert merged(xa, snaps) == 2
    once = a.models.popular.raw(None).copy()
    assert once.sum() > before.sum()
    assert merged(xa, snaps) == 2  # the snapshot topic re-read: nothing changes
    np.testing.assert_allclose(a.models.popular.raw(None), once)

    # b crashes and restarts from its checkpoint: a new run, the same seq numbers
    b2 = Engine(catalog=catalog)
    xb2 = TitleExchange(b2.models, "w1", shards=2, partition_of=kafka_partition, ranker="sum")
    import_shared(b2.models, ckpt)
    assert xb2.seq == 1 and xb2.run != xb.run and xb2.dirty()  # it must announce its run
    held = b2.models.popular.raw(None).copy()
    assert merged(xb2, snaps) == 0  # holds a part of b's previous run: skipped
    np.testing.assert_allclose(b2.models.popular.raw(None), held)
    # its contribution went back: the aggregators take the difference back from everyone
    snaps = snapshots(aggs, xb2.publish())
    merged(xa, snaps)
    np.testing.assert_allclose(a.models.popular.raw(None), before, atol=1e-9)
    assert merged(xb2, snaps) == 2
    np.testing.assert_allclose(mass(b2.models.popular, a.models.popular), before, rtol=1e-9)
    # and the replay adds the events back, once
    for ev in later:
        b2.ingest(ev)
    snaps = snapshots(aggs, xb2.publish())
    merged(xa, snaps)
    merged(xb2, snaps)
    np.testing.assert_allclose(a.models.popular.raw(None), once, rtol=1e-9)
    np.testing.assert_allclose(mass(b2.models.popular, a.models.popular), once, rtol=1e-9)

    with pytest.raises(CheckpointError):
        xa.decode(b'{"format": "nope"}')
    with pytest.raises(CheckpointError):
        aggs[0].fold(xa.publish()[1])  # shard 1's record read as shard 0's
    other, _ = exchanges(a, shards=3)
    with pytest.raises(CheckpointError):
        other[0].decode(snaps[0])  # a snapshot of another shard count


def test_sum_factors_are_init_plus_every_workers_displacement(log):
    catalog, _, events = log
    fed = run(
        catalog, events, workers=3, partitions=4, exchange_every=97, factors="sum", ranker="sum"
    )
    fed.exchange()  # a last round: everything learned is published
    k = fed.engines[0].models.mf.k
    own = sum(x.mine.mf for x in fed.exchanges)
    assert min(np.abs(x.mine.mf).max() for x in fed.exchanges) > 1e-3  # everyone learned
    for x in fed.exchanges:
        mf = x.rec.mf
        init = np.stack([mf._init_vec(f"title:{i}") for i in range(mf.n)])
        np.testing.assert_allclose(mf.q, init + own[:, :k], atol=1e-4)
        np.testing.assert_allclose(mf.bias, own[:, k], atol=1e-4)
        for h in x.mine.rk:  # the ranker starts at 0: its weights are everyone's steps
            want = sum(y.mine.rk[h] for y in fed.exchanges)
            np.testing.assert_allclose(x._rk_params(h), want, atol=1e-6)


def test_a_local_ranker_is_never_merged(log):
    catalog, _, events = log
    fed = run(catalog, events, workers=2, partitions=4, exchange_every=500, ranker="local")
    fed.exchange()
    for x in fed.exchanges:
        assert min(x.rec.ranker.learned.values()) > 0
        for h, own in x.mine.rk.items():  # the ranker starts at 0: only its own steps
            np.testing.assert_allclose(x._rk_params(h), own, atol=1e-9)
            assert not x.applied.rk[h].any()


def test_a_new_aggregator_folds_the_same_global_state(log):
    """Hand-over: the next owner of a shard reads every worker's latest record once."""
    catalog, _, events = log
    fed = run(catalog, events, workers=3, partitions=4, exchange_every=400)
    last = [x.publish() for x in fed.exchanges]
    for s, agg in enumerate(fed.aggregators):
        new = ShardAggregator(s, 4, agg.dims, "next")
        for recs in last:
            agg.fold(recs[s])
            new.fold(recs[s])
        old_snap, new_snap = agg.snapshot(), new.snapshot()
        assert old_snap.included == new_snap.included
        old_ids = [agg.ids[i] for i in old_snap.part.rows]
        order = [new.ids[i] for i in new_snap.part.rows]
        at = np.array([order.index(t) for t in old_ids])  # the same titles, read in order
        assert sorted(order) == sorted(old_ids)
        old_p, new_p = old_snap.part, new_snap.part
        np.testing.assert_allclose(new_p.mf[at], old_p.mf, atol=1e-9)
        np.testing.assert_allclose(new_p.cw_counts[at], old_p.cw_counts, rtol=1e-9)
        for name, (ref, counts) in old_p.decayed.items():
            assert new_p.decayed[name][0] == ref
            for c, arr in counts.items():
                np.testing.assert_allclose(new_p.decayed[name][1][c][at], arr, rtol=1e-9)


def test_bytes_read_per_worker_do_not_grow_with_workers(log):
    catalog, _, events = log
    cost = {}
    for w in (2, 4):
        fed = run(catalog, events, workers=w, partitions=4, exchange_every=len(events) // 4)
        assert fed.rounds == 4
        cost[w] = fed.last
    two, four = cost[2], cost[4]
    # every worker reads every shard's snapshot: the catalog's state, once
    assert four.snapshot_bytes == pytest.approx(two.snapshot_bytes, rel=0.05)
    # plus the records of the shards it aggregates: S / W shards x W workers' parts
    assert np.mean(four.read) <= 1.05 * np.mean(two.read)
    assert max(four.read) <= 1.05 * max(two.read)
    # where reading every peer's record would have been about (W - 1) x a record
    peers = [(w - 1) * np.mean(c.published) for w, c in cost.items()]
    assert peers[1] > 1.5 * peers[0]


def test_factors_learned_on_b_reach_a(log):
    catalog, _, events = log
    fed = run(catalog, events, workers=2, partitions=4, exchange_every=len(events) + 1)
    a, b = (e.models for e in fed.engines)
    xa, xb = fed.exchanges
    q_a = a.mf.q.copy()
    only_b = np.flatnonzero((xb.rec.mf.updates > 0) & (xa.rec.mf.updates == 0))
    moved_b = b.mf.q[only_b] - q_a[only_b]  # same initial vectors on every worker
    assert len(only_b) and np.abs(moved_b).max() > 0
    fed.exchange()
    # a title only b trained: on a it now equals b's (sum and blend agree: one contributor)
    np.testing.assert_allclose(a.mf.q[only_b], b.mf.q[only_b], rtol=1e-5, atol=1e-6)


def test_blend_round_is_blend_title_factors(log):
    catalog, _, events = log
    fed = run(catalog, events[:3000], workers=2, partitions=4, exchange_every=1000, factors="blend")
    xa, xb = fed.exchanges
    before = [x.rec.mf.q.astype(np.float64) for x in (xa, xb)]
    for ev in events[3000:]:
        fed.engine_for(ev["user_id"]).ingest(ev)
    qa, qb = (x.rec.mf.q.astype(np.float64) for x in (xa, xb))
    na, nb = (x.rec.mf.updates - x.n_ref for x in (xa, xb))
    assert np.allclose(before[0], before[1], atol=1e-6)  # in step after the last round
    expect = blend_title_factors(qa, na, [(qb, nb)])
    fed.exchange()
    np.testing.assert_allclose(xa.rec.mf.q, expect, atol=1e-5)
    np.testing.assert_allclose(xb.rec.mf.q, expect, atol=1e-5)


def test_exchange_state_survives_a_checkpoint(log):
    catalog, _, events = log
    fed = run(catalog, events, workers=2, partitions=4, exchange_every=500)
    src = fed.engines[0].models
    shared = export_shared(src)
    assert shared["exchange"]["worker"] == "worker-0"
    fresh = Engine(catalog=catalog).models
    TitleExchange(fresh, "worker-0", shards=4, partition_of=kafka_partition)
    import_shared(fresh, shared)
    x0, x1 = fed.exchanges[0], fresh.exchange
    np.testing.assert_allclose(x1.mine.mf, x0.mine.mf)
    np.testing.assert_allclose(x1.applied.mf, x0.applied.mf)
    assert x1.peers() == x0.peers() == {"worker-1"}
    # the restored worker publishes as a new run; once its aggregators include that, the
    # same snapshot puts it where the original is
    for x in (fed.exchanges[1], x1):
        for agg, raw in zip(fed.aggregators, x.publish(), strict=True):
            agg.fold(raw)
    snaps = [agg.publish("v", 9) for agg in fed.aggregators]
    assert x1.merge([x1.decode(raw) for raw in snaps]) == 4
    assert x0.merge([x0.decode(raw) for raw in snaps]) == 0  # the old run: not its part
    w1 = fed.exchanges[1]
    w1.merge([w1.decode(raw) for raw in snaps])
    np.testing.assert_allclose(mass(fresh.popular, w1.rec.popular), w1.rec.popular.raw(None))
    # restored under another id, worker-0's own contribution becomes learning from elsewhere
    other = Engine(catalog=catalog).models
    TitleExchange(other, "worker-9", shards=4, partition_of=kafka_partition)
    import_shared(other, shared)
    assert np.abs(other.exchange.mine.mf).max() == 0
    np.testing.assert_allclose(other.exchange.applied.mf, x0.applied.mf + x0.mine.mf, atol=1e-9)


def test_a_worker_adopting_anothers_state_continues_its_published_contribution(log):
    catalog, _, events = log
    fed = run(catalog, events, workers=3, partitions=4, exchange_every=500)
    fed.exchange()  # everyone holds everything
    x0, x1, x2 = fed.exchanges
    last0 = x0.publish()  # worker-0's latest record of each shard, as on the topic
    for agg, raw in zip(fed.aggregators, last0, strict=True):
        agg.fold(raw)
    shared1 = codec.decode(codec.encode(export_shared(x1.rec), {}, "v", 1)).state
    # worker-0 restarts and adopts worker-1's checkpoint round (its partitions' newest)
    fresh = Engine(catalog=catalog).models
    x = TitleExchange(fresh, "worker-0", shards=4, partition_of=kafka_partition)
    import_shared(fresh, shared1)
    assert x.resume_needed and np.abs(x.mine.mf).max() == 0
    with pytest.raises(CheckpointError):
        x.resume(x2.publish())  # another worker's records
    assert x.resume(last0) == 4 and not x.resume_needed
    np.testing.assert_allclose(x.mine.mf, x0.mine.mf)
    # its next publication continues its contribution: nobody's state moves
    before = x2.rec.popular.raw(None).copy()
    snaps = snapshots(fed.aggregators, x.publish())
    assert merged(x2, snaps) == 4 and merged(x, snaps) == 4
    np.testing.assert_allclose(x2.rec.popular.raw(None), before, rtol=1e-9)
    np.testing.assert_allclose(mass(fresh.popular, x2.rec.popular), before, rtol=1e-9)
    np.testing.assert_allclose(fresh.mf.q, x2.rec.mf.q, atol=1e-4)


def test_a_checkpoint_of_the_per_peer_exchange_loads_as_their_sum(log):
    catalog, _, events = log
    fed = run(catalog, events, workers=3, partitions=4, exchange_every=500)
    st = export_shared(fed.engines[0].models)["exchange"]
    x1, x2 = fed.exchanges[1], fed.exchanges[2]
    ids = list(x1.rec.titles.ids)
    # the layout written before the sharded exchange: one applied part per peer
    st["applied"] = {"worker-1": part_state(x1.mine, ids), "worker-2": part_state(x2.mine, ids)}
    st["received"] = {"worker-1": 3, "worker-2": 3}
    st["rounds"] = {}
    fresh = Engine(catalog=catalog).models
    x = TitleExchange(fresh, "worker-0", shards=4, partition_of=kafka_partition)
    x.load(st)
    np.testing.assert_allclose(x.applied.mf, x1.mine.mf + x2.mine.mf, atol=1e-9)
    assert x.received == {}


def test_replay_cli_compares_workers(tmp_path, log, capsys):
    _, cat_recs, events = log
    ev_path, cat_path, out = tmp_path / "ev.jsonl", tmp_path / "cat.jsonl", tmp_path / "r.json"
    write_jsonl(ev_path, events[:1500])
    write_jsonl(cat_path, cat_recs)
    argv = ["replay", "--events", str(ev_path), "--catalog", str(cat_path), "--quiet"]
    assert main([*argv, "--json", str(out), "--workers", "2", "--exchange-every", "300"]) == 0
    text = capsys.readouterr().out
    assert "1 worker" in text and "2 workers, no exchange" in text
    assert "2 workers, exchange every 300 (sum/blend)" in text
    rep = json.loads(out.read_text())
    assert [r["workers"] for r in rep["runs"]] == [1, 2, 2]
    assert rep["runs"][2]["exchange"]["rounds"] == 5
    assert rep["runs"][0]["events"] == rep["runs"][2]["events"] == 1500


def test_exchange_started_before_the_catalog_counts_what_is_learned_after(log):
    _, cat_recs, events = log
    eng = Engine()  # the worker creates its exchange at import, before the catalog arrives
    x = TitleExchange(eng.models, "w")
    for rec in cat_recs:
        eng.catalog.upsert(parse_title(rec))
    for ev in events:
        eng.ingest(ev)
    x.fold()
    init = np.stack([eng.models.mf._init_vec(f"title:{i}") for i in range(eng.models.mf.n)])
    np.testing.assert_allclose(x.mine.mf[:, :-1], eng.models.mf.q - init, atol=1e-6)
    assert np.abs(x.mine.mf).max() > 1e-3
