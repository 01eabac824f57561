"""Title-side exchange between workers: counts exactly once, factors travel, checkpoints."""

import json

import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner

from features.catalog import parse_title
from online_models.checkpoint import CheckpointError
from online_models.durable import export_shared, import_shared
from online_models.engine import Engine
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


def test_a_record_applied_twice_or_out_of_order_counts_once(log):
    catalog, _, events = log
    fed = run(catalog, events[:1500], workers=2, partitions=2)
    a, b = fed.engines
    xa = TitleExchange(a.models, "a", factors="sum", ranker="sum")
    xb = TitleExchange(b.models, "b", factors="sum", ranker="sum")
    old = xb.publish()  # b's contribution so far: b learned from before it tracked
    assert xb.mine.cw_counts.sum() == 0  # (only what is learned after tracking counts)
    for ev in events[1500:]:
        if fed.worker_of(ev["user_id"]) == 1:
            b.ingest(ev)
    new = xb.publish()
    before = a.models.popular.raw(None).copy()
    xa.merge(new)
    once = a.models.popular.raw(None).copy()
    xa.merge(new)  # the compacted topic re-read: nothing changes
    np.testing.assert_allclose(a.models.popular.raw(None), once)
    assert once.sum() > before.sum()
    xa.merge(old)  # b restored an older checkpoint: its later mass is taken back
    np.testing.assert_allclose(a.models.popular.raw(None), before, atol=1e-9)
    assert xa.merge(xa.publish()) is False  # own record
    with pytest.raises(CheckpointError):
        xa.merge(b'{"format": "nope"}')


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
    TitleExchange(fresh, "worker-0")
    import_shared(fresh, shared)
    x0, x1 = fed.exchanges[0], fresh.exchange
    assert x1.applied.keys() == x0.applied.keys() == {"worker-1"}
    np.testing.assert_allclose(x1.mine.mf, x0.mine.mf)
    assert not x1.dirty()
    # the same peer record changes nothing more on the restored worker than on the original
    raw = fed.exchanges[1].publish()
    x0.merge(raw)
    x1.merge(raw)
    np.testing.assert_allclose(fresh.popular.raw(None), src.popular.raw(None), rtol=1e-9)
    # restored under another id, worker-0's own contribution becomes a peer's
    other = Engine(catalog=catalog).models
    TitleExchange(other, "worker-9")
    import_shared(other, shared)
    assert set(other.exchange.applied) == {"worker-0", "worker-1"}


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
