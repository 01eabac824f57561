"""Per-arm sums folded live: they reproduce the per-user analysis, add across partitions,
and the decision reads SRM, sample size and the primary metric's interval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from online_models.experiment_live import ArmTotals, LiveFold, analyze_totals, merge_shards
from online_models.experiments import Assigner, ConfigError, UserStats, analyze

CFG = {
    "salt": "live",
    "experiment": [
        {
            "id": "art",
            "layer": "artwork",
            "traffic": 1.0,
            "arm": [{"name": "first", "share": 0.5}, {"name": "lints", "share": 0.5}],
        }
    ],
}


def sessions(uid: str, rng: np.random.Generator, lift: float) -> list[dict]:
    """A user's events after exposure: impressions, plays, progress, sometimes a complete."""
    out, ts = [], 10
    for k in range(int(rng.integers(1, 4))):
        tid = f"t{k}"
        out.append({"user_id": uid, "title_id": tid, "event_type": "impression", "ts": ts})
        if rng.random() < 0.6:
            out.append({"user_id": uid, "title_id": tid, "event_type": "play", "ts": ts + 1,
                        "position_s": 0})  # fmt: skip
            pos = float(rng.lognormal(6, 0.7)) * lift
            out.append({"user_id": uid, "title_id": tid, "event_type": "progress", "ts": ts + 2,
                        "position_s": pos})  # fmt: skip
            if rng.random() < 0.3:
                out.append({"user_id": uid, "title_id": tid, "event_type": "complete",
                            "ts": ts + 3, "position_s": pos + 300})  # fmt: skip
        ts += 10
    return out


def run(n_users: int, lift: float, seed: int = 3, drop_every: int = 0):
    a = Assigner.from_dict(CFG)
    exp = a.experiments["art"]
    rng = np.random.default_rng(seed)
    fold = LiveFold()
    users: dict[str, UserStats] = {}
    arm_of: dict[str, str] = {}
    for i in range(n_users):
        uid = f"u{i:06d}"
        arm = exp.arm_for(a.salt, uid).name
        if drop_every and arm == "lints" and i % drop_every == 0:
            continue  # an exposure logging bug in one arm
        pre = float(rng.lognormal(7, 1.0))
        fold.expose(uid, f"art:{arm}", partition=i % 4, pre_watch_s=pre, now_ms=1)
        fold.expose(uid, f"art:{arm}", partition=i % 4, pre_watch_s=0.0, now_ms=2)  # no-op
        arm_of[uid] = arm
        users[uid] = UserStats(pre_watch_s=pre)
        evs = sessions(uid, rng, lift if arm == "lints" else 1.0)
        for ev in evs:
            fold.observe(ev)
        # the reference: the same counts computed directly
        s = users[uid]
        s.impressions = sum(e["event_type"] == "impression" for e in evs)
        s.plays = sum(e["event_type"] == "play" for e in evs)
        s.completes = sum(e["event_type"] == "complete" for e in evs)
        s.watch_s = (
            sum(min(e["position_s"], 900.0) for e in evs if e["event_type"] == "progress")
            + 300.0 * s.completes
        )
    return exp, fold, users, arm_of


def test_sums_reproduce_the_per_user_analysis_exactly():
    exp, fold, users, arm_of = run(3000, lift=1.15)
    shards = [fold.snapshot(p)["art"] for p in range(4)]
    totals = merge_shards(shards)
    assert sum(t.n for t in totals.values()) == 3000
    live = analyze_totals(exp, totals)
    ref = analyze(exp, users, arm_of)
    assert live["users"] == ref["users"]
    for arm in ("first", "lints"):
        for metric, st in ref["metrics"][arm].items():
            got = live["metrics"][arm][metric]
            assert got["n"] == st["n"]
            assert got["value"] == pytest.approx(st["value"], rel=1e-9), (arm, metric)
            assert got["var"] == pytest.approx(st["var"], rel=1e-6), (arm, metric)
    for metric, c in ref["comparisons"]["lints"].items():
        got = live["comparisons"]["lints"][metric]
        assert (got["low"], got["high"]) == pytest.approx((c["low"], c["high"]), rel=1e-6)
    assert live["cuped"]["theta"] == pytest.approx(ref["cuped"]["theta"], rel=1e-9)
    assert live["cuped"]["variance_reduction"] == pytest.approx(
        ref["cuped"]["variance_reduction"], rel=1e-6, abs=1e-9
    )
    assert live["srm"]["p_value"] == pytest.approx(ref["srm"]["p_value"])


def test_decision_sees_a_planted_effect_waits_on_none_and_stops_on_srm():
    exp, fold, *_ = run(4000, lift=1.5, seed=5)
    res = analyze_totals(exp, merge_shards(fold.snapshot(p)["art"] for p in range(4)))
    assert res["decision"]["verdict"] == "arm lints better", res["decision"]
    assert res["comparisons"]["lints"]["minutes_per_user_cuped"]["low"] > 0
    exp, fold, *_ = run(4000, lift=1.0, seed=6)
    res = analyze_totals(exp, merge_shards(fold.snapshot(p)["art"] for p in range(4)))
    assert res["decision"]["verdict"] == "continue"
    exp, fold, *_ = run(4000, lift=1.5, seed=5, drop_every=4)
    res = analyze_totals(exp, merge_shards(fold.snapshot(p)["art"] for p in range(4)))
    assert res["srm"]["mismatch"] and res["decision"]["verdict"] == "stop: SRM"
    exp, fold, *_ = run(60, lift=3.0, seed=5)
    res = analyze_totals(exp, merge_shards(fold.snapshot(p)["art"] for p in range(4)))
    assert res["decision"]["verdict"] == "continue" and "fewer than" in res["decision"]["detail"]


def test_snapshots_are_per_partition_and_dropping_a_partition_forgets_its_users():
    _, fold, *_ = run(400, lift=1.0)
    assert fold.take_dirty() == {0, 1, 2, 3} and fold.take_dirty() == set()
    n = {p: sum(d["n"] for d in fold.snapshot(p)["art"].values()) for p in range(4)}
    assert sum(n.values()) == 400 and all(v == 100 for v in n.values())
    fold.drop_partitions({1})
    assert fold.snapshot(1) == {} and all(u.partition != 1 for u in fold.users.values())
    assert sum(t.n for t in fold.local_totals().values()) == 300
    # events of a forgotten user no longer move any sums
    fold.observe({"user_id": "u000001", "title_id": "t0", "event_type": "impression", "ts": 5})
    assert fold.take_dirty() == set()


def test_arm_totals_decoding_is_strict():
    good = ArmTotals(n=2, imp=3).as_dict()
    assert ArmTotals.from_dict(good) == ArmTotals(n=2, imp=3)
    for bad in (
        {**good, "n": -1},
        {**good, "imp": math.nan},
        {**good, "imp": "3"},
        {**good, "imp": True},
        {k: v for k, v in good.items() if k != "min"},
        {**good, "extra": 1},
        [1, 2],
    ):
        with pytest.raises(ValueError):
            ArmTotals.from_dict(bad)  # type: ignore[arg-type]


def test_primary_metric_is_configurable_and_checked():
    cfg = {**CFG, "experiment": [{**CFG["experiment"][0], "primary_metric": "completion_rate"}]}
    assert Assigner.from_dict(cfg).experiments["art"].primary == "completion_rate"
    cfg["experiment"][0]["primary_metric"] = "revenue"
    with pytest.raises(ConfigError):
        Assigner.from_dict(cfg)
