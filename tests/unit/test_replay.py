"""Prequential replay: the quality bar on a small synthetic log, and the CLI's file handling."""

import io
import json

import pytest

from online_models.evaluation import RankingMetrics, replay
from streams.adapters.jsonl import write_jsonl
from streams.cli import main
from streams.tools.synthetic import SimConfig, Simulation


@pytest.fixture(scope="module")
def small_replay():
    sim = Simulation(SimConfig(users=400, titles=300, seed=5))
    catalog = sim.title_catalog()
    return replay(sim.events(limit=50_000), catalog, k=10, min_history=5)


def test_model_beats_popularity_twice_for_users_with_history(small_replay):
    m, b = small_replay["model"]["history"], small_replay["baseline"]["history"]
    assert m["positives"] >= 200
    assert m["recall@10"] >= 2 * b["recall@10"]
    assert m["ndcg@10"] >= 2 * b["ndcg@10"]


def test_coverage_and_ranker_auc(small_replay):
    assert small_replay["model"]["coverage"] >= 0.5
    ranker = small_replay["ranker"]
    assert ranker["click"]["auc"] >= 0.7
    assert ranker["watch"]["auc"] > 0.5
    assert ranker["all"]["auc"] >= 0.75
    assert small_replay["events"] == 50_000 and small_replay["events_per_s"] > 0


def test_ranking_metrics_by_segment():
    rm = RankingMetrics(k=3, min_history=2)
    rm.add(["a", "b", "c"], "a", history=0)  # rank 1
    rm.add(["a", "b", "c"], "c", history=5)  # rank 3
    rm.add(["a", "b", "c"], "z", history=5)  # miss
    s = rm.summary(10)
    assert s["all"]["positives"] == 3 and s["all"]["recall@3"] == pytest.approx(2 / 3)
    assert s["history"]["recall@3"] == pytest.approx(0.5)
    assert s["history"]["ndcg@3"] == pytest.approx(0.5 * 0.5)


def test_replay_cli_skips_invalid_lines_and_writes_json(tmp_path, capsys):
    sim = Simulation(SimConfig(users=60, titles=80, seed=9))
    events = list(sim.events(limit=3000))
    ev_path, cat_path, out = tmp_path / "ev.jsonl", tmp_path / "cat.jsonl", tmp_path / "r.json"
    write_jsonl(cat_path, [*sim.catalog, {"title_id": "bad id!", "name": "x"}])
    with open(ev_path, "wb") as fh:
        for ev in reversed(events):  # out of order on purpose: replay sorts by ts
            fh.write(json.dumps(ev).encode() + b"\n")
        fh.write(b"not json\n")
        fh.write(
            b'{"event_id": "x1", "user_id": "u", "title_id": "t", "event_type": "nope",'
            b' "ts": 1767571200000}\n'
        )
    rc = main(
        [
            "replay",
            "--events",
            str(ev_path),
            "--catalog",
            str(cat_path),
            "--json",
            str(out),
            "--min-history",
            "2",
        ]
    )
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["events"] == 3000
    assert rep["invalid_events"] == 2
    assert rep["invalid_by_reason"] == {"invalid_json": 1, "unknown_event_type": 1}
    assert rep["invalid_titles"] == 1
    assert rep["min_history"] == 2 and rep["model"]["all"]["positives"] > 0
    assert rep["baselines"]["co-occurrence"]["second_half"]["history"]["positives"] >= 0
    assert rep["split_ts"] > 0
    captured = capsys.readouterr()
    assert "recall@10" in captured.out and "skipped 2 invalid lines" in captured.err


def test_format_table_mentions_both_systems():
    from streams.tools.replay import format_table

    sim = Simulation(SimConfig(users=30, titles=40, seed=2))
    catalog = sim.title_catalog()
    text = format_table(replay(sim.events(limit=2000), catalog))
    assert "hybrid-lr-1" in text and "impression -> play" in text
    assert "co-occur" in text and "decayed" in text and "vs best" in text
    assert io.StringIO(text).read().count("recall@10") == 6  # whole log and both halves


def test_every_baseline_answers_the_same_requests_in_both_halves(small_replay):
    rep = small_replay
    assert set(rep["baselines"]) == {"most-popular", "decayed-popularity", "co-occurrence"}
    n = rep["model"]["all"]["positives"]
    halves = [rep["model"][h]["all"]["positives"] for h in ("first_half", "second_half")]
    assert sum(halves) == n and min(halves) > 0
    for b in rep["baselines"].values():
        assert b["all"]["positives"] == n
        assert [b[h]["all"]["positives"] for h in ("first_half", "second_half")] == halves
    assert rep["baseline"] == rep["baselines"]["most-popular"]


def test_the_replay_runs_the_worker_batch_core_with_the_same_result_as_the_engine():
    """``reelstream replay`` folds events in through streams/worker/batch_core.py; a log with
    a duplicate and a too-late event gives the figures of folding through Engine.ingest,
    and the core's refusals are counted by reason."""
    from streams.tools.replay import BatchCoreIngest

    sim = Simulation(SimConfig(users=80, titles=60, seed=4))
    catalog = sim.title_catalog()
    events = list(sim.events(limit=6000))
    dup = dict(events[100])
    late = {**events[200], "event_id": "late-1", "ts": events[-1]["ts"] - 2 * 3_600_000}
    late["user_id"] = events[-1]["user_id"]
    log = [*events[:3000], dup, *events[3000:], late]
    core = BatchCoreIngest()
    via_core = replay(log, catalog, k=10, min_history=2, ingest=core)
    via_engine = replay(log, catalog, k=10, min_history=2)
    assert core.refused == {"too_late": 1}  # duplicates are dropped, not refused
    assert core.offset == len(log)
    assert via_core["model"] == via_engine["model"]
    assert via_core["ranker"] == via_engine["ranker"]
    assert via_core["model"]["all"]["positives"] > 50
