"""Bandit traffic in the worker, the pure parts and the adapters without Kafka: config keys,
allocation records, assignment under moving shares, per-batch sums, AIPW from sums, the
allocating step, the follower and the API's adaptive analysis."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest

from online_models.bandit_live import (
    Allocation,
    BatchSums,
    Switch,
    aipw_batches,
    expected_shares,
    merge_batches,
    next_allocation,
    parse_record,
    record_key,
)
from online_models.bandit_traffic import aipw
from online_models.engine import Engine
from online_models.experiment_live import LiveFold
from online_models.experiments import Assigner, ConfigError
from streams.adapters.allocation_follower import AllocationFollower
from streams.adapters.feature_sink import FeatureSink
from streams.adapters.redis_keys import experiment_key
from streams.adapters.redis_values import ExperimentShard
from streams.api.web import Api, run_handler
from streams.settings import Settings
from streams.worker.allocation import allocate
from tests.unit.test_experiment_api import FakeRedis

USERS = [f"u{i:06d}" for i in range(20_000)]


def cfg(**bandit: object) -> dict:
    return {
        "salt": "bandit-test",
        "experiment": [
            {
                "id": "blend",
                "layer": "ranking",
                "arm": [{"name": "control", "share": 0.5}, {"name": "b", "share": 0.5}],
            },
            {
                "id": "art",
                "layer": "artwork",
                "allocation": "thompson",
                "min_share": 0.1,
                "batch_interval_s": 1,
                "batch_min_units": 10,
                **bandit,
                "arm": [
                    {"name": "first", "share": 0.4},
                    {"name": "lints", "share": 0.3},
                    {"name": "ucb", "share": 0.3},
                ],
            },
        ],
    }


ARMS = ["first", "lints", "ucb"]


@pytest.mark.parametrize(
    "change",
    [
        {"min_share": 0.5},  # 3 arms * 0.5 > 1
        {"min_share": 0.35},  # above an arm's starting share
        {"outcome": "click"},
        {"allocation": "greedy"},
        {"batch_interval_s": 0},
        {"max_batches": 0},
        {"batch_min_units": "many"},
    ],
)
def test_the_config_refuses_bad_bandit_keys(change):
    with pytest.raises(ConfigError):
        Assigner.from_dict(cfg(**change))


def test_bandit_keys_on_a_fixed_experiment_are_refused_and_fixed_ones_stay_as_they_were():
    bad = cfg()
    bad["experiment"][0]["min_share"] = 0.1
    with pytest.raises(ConfigError, match="thompson"):
        Assigner.from_dict(bad)
    a = Assigner.from_dict(cfg())
    blend = a.experiments["blend"]
    assert blend.bandit is None and a.experiments["art"].bandit.min_share == 0.1
    assert "blend" not in a.allocations
    # the fixed experiment's assignment is the plain salted hash, whatever the bandit does
    before = [a.assign(u)["ranking"][1].name for u in USERS[:300]]
    a.set_switch("art", True)
    assert [a.assign(u)["ranking"][1].name for u in USERS[:300]] == before
    assert before == [blend.arm_for("bandit-test", u).name for u in USERS[:300]]


def test_allocation_records_are_validated_against_the_experiments_file():
    exps = Assigner.from_dict(cfg()).experiments
    good = Allocation("art", 4, {"first": 0.1, "lints": 0.8, "ucb": 0.1}, False, 9)
    assert parse_record("allocation/art", good.as_dict(), exps) == good
    killed = good.killed_now("first")
    assert parse_record("allocation/art", killed.as_dict(), exps) == killed
    sw = Switch("art", True, 5)
    assert parse_record("switch/art", sw.as_dict(), exps) == sw

    def bad(key: str, **change: object) -> None:
        doc = {**good.as_dict(), **change}
        with pytest.raises(ValueError):
            parse_record(key, doc, exps)

    bad("allocation/blend")  # not a bandit experiment
    bad("allocation/nope", experiment="nope")  # not in the file
    bad("allocation/art", experiment="blend")  # body and key disagree
    bad("other/art")
    bad("allocation/art", shares={"first": 0.5, "lints": 0.5})  # an arm missing
    bad("allocation/art", shares={"first": 0.5, "lints": 0.5, "ucb": 0.5})  # sum 1.5
    bad("allocation/art", shares={"first": 0.05, "lints": 0.9, "ucb": 0.05})  # < min_share
    bad("allocation/art", shares={"first": 0.1, "lints": 0.8, "ucb": float("nan")})
    bad("allocation/art", killed=True)  # killed but traffic outside control
    bad("allocation/art", batch=True)
    bad("allocation/art", batch=-1)
    bad("allocation/art", v=2)
    bad("allocation/art", extra=1)
    with pytest.raises(ValueError):
        parse_record("switch/art", {"v": 1, "experiment": "art", "killed": "yes", "as_of": 1}, exps)


def test_assignment_follows_the_shares_in_force_and_is_redrawn_every_batch():
    a, b = Assigner.from_dict(cfg()), Assigner.from_dict(cfg())
    in_art = [u for u in USERS if "artwork" in a.assign(u)]
    shares = {"first": 0.1, "lints": 0.8, "ucb": 0.1}
    for x in (a, b):
        assert x.set_allocation(Allocation("art", 1, shares, False, 5))
    arms1 = [a.assign(u)["artwork"][1].name for u in in_art]
    assert arms1 == [b.assign(u)["artwork"][1].name for u in in_art]  # every worker agrees
    assert arms1.count("lints") / len(arms1) == pytest.approx(0.8, abs=0.015)
    a.set_allocation(Allocation("art", 2, shares, False, 6))
    arms2 = [a.assign(u)["artwork"][1].name for u in in_art]
    moved = sum(x != y for x, y in zip(arms1, arms2, strict=True)) / len(in_art)
    assert moved == pytest.approx(1 - (0.1**2 + 0.8**2 + 0.1**2), abs=0.02)  # independent draws
    assert not a.set_allocation(Allocation("art", 1, shares, False, 7))  # older: ignored
    # each exposure carries the batch and its shares, the propensities the analysis needs
    units = a.bandit_units(in_art[0])
    assert [(u.experiment, u.batch, dict(u.shares)) for u in units] == [("art", 2, shares)]
    a.arm_label(in_art[0])  # cached label; the switch must not serve it stale
    a.set_switch("art", True)
    assert {a.assign(u)["artwork"][1].name for u in in_art} == {"first"}
    assert a.arm_label(in_art[0], count=False).startswith("art:first,")
    assert a.bandit_units(in_art[0]) == []
    assert a.allocation_doc("art")["killed"] and a.allocation_doc("art")["kill_switch"]
    a.set_switch("art", False)
    assert [a.assign(u)["artwork"][1].name for u in in_art] == arms2


def _log(seed: int = 3, batches: int = 6, size: int = 400) -> tuple:
    """An adaptive log: per exposure arm, outcome, shares in force and batch."""
    rng = np.random.default_rng(seed)
    means = {"first": 0.2, "lints": 0.35, "ucb": 0.25}
    shares_by_batch = [
        {"first": 0.4, "lints": 0.3, "ucb": 0.3},
        {"first": 0.2, "lints": 0.6, "ucb": 0.2},
        {"first": 0.1, "lints": 0.8, "ucb": 0.1},
    ]
    assigned, outcomes, props, bids = [], [], [], []
    for b in range(batches):
        sh = shares_by_batch[min(b, 2)]
        for _ in range(size):
            arm = str(rng.choice(ARMS, p=[sh[a] for a in ARMS]))
            assigned.append(arm)
            outcomes.append(float(rng.random() < means[arm]))
            props.append([sh[a] for a in ARMS])
            bids.append(b)
    return assigned, outcomes, props, bids


def test_aipw_from_per_batch_sums_equals_aipw_on_the_exposure_log():
    assigned, outcomes, props, bids = _log()
    sums: dict[int, BatchSums] = {}
    for arm, y, p, b in zip(assigned, outcomes, props, bids, strict=True):
        bs = sums.setdefault(b, BatchSums.empty(dict(zip(ARMS, p, strict=True))))
        bs.n[arm] += 1
        bs.s[arm] += y
    want = aipw(ARMS, assigned, outcomes, props, bids, control="first")
    got = aipw_batches(ARMS, sums, control="first")
    for kind in ("arms", "contrasts"):
        assert set(got[kind]) == set(want[kind])
        for arm, e in want[kind].items():
            g = got[kind][arm]
            assert (g.value, g.low, g.high) == pytest.approx((e.value, e.low, e.high), rel=1e-9)
    # a killed batch (zero shares, no units) changes nothing
    killed = {**sums, 99: BatchSums.empty({"first": 1.0, "lints": 0.0, "ucb": 0.0})}
    assert aipw_batches(ARMS, killed, "first")["arms"]["lints"] == got["arms"]["lints"]
    # sums split over partitions merge back to the same totals
    halves = [
        {b: BatchSums(s.shares, {a: s.n[a] // 2 for a in ARMS}, {a: 0.0 for a in ARMS})}
        for b, s in sums.items()
    ]
    rest = [
        {b: BatchSums(s.shares, {a: s.n[a] - s.n[a] // 2 for a in ARMS}, dict(s.s))}
        for b, s in sums.items()
    ]
    merged = merge_batches(halves + rest)
    assert {b: (m.n, m.s) for b, m in merged.items()} == {b: (s.n, s.s) for b, s in sums.items()}
    assert expected_shares(ARMS, sums) == pytest.approx(list(np.mean(props, axis=0)), rel=1e-9)


def test_the_fold_opens_one_unit_per_user_and_batch_and_counts_its_outcome_once():
    from online_models.bandit_live import Unit

    fold = LiveFold()
    sh = {"first": 0.5, "lints": 0.3, "ucb": 0.2}

    def ev(etype: str) -> dict:
        return {"user_id": "u1", "title_id": "t1", "event_type": etype, "ts": 1, "position_s": 0}

    fold.expose("u1", "art:lints", 2, 0.0, 10, [Unit("art", 3, "lints", sh, "play")])
    fold.observe(ev("play"))
    fold.observe(ev("play"))  # the unit's outcome is 0 or 1
    fold.expose("u1", "art:lints", 2, 0.0, 11, [Unit("art", 3, "lints", sh, "play")])  # same unit
    fold.expose("u1", "art:ucb", 2, 0.0, 12, [Unit("art", 4, "ucb", sh, "play")])  # next batch
    fold.observe(ev("impression"))
    snap = fold.batch_snapshot(2)["art"]
    assert (snap[3].n["lints"], snap[3].s["lints"], snap[4].n["ucb"], snap[4].s["ucb"]) == (
        1,
        1,
        1,
        0,
    )
    assert snap[3].shares == sh and fold.take_dirty() == {2}
    fold.drop_partitions({2})
    assert fold.batch_snapshot(2) == {} and fold.units == {}


def test_next_allocation_kills_at_once_resumes_and_moves_shares_toward_the_better_arm():
    exp = Assigner.from_dict(cfg()).experiments["art"]
    cur = Allocation.initial(exp)
    few = {
        0: BatchSums(
            {"first": 0.4, "lints": 0.3, "ucb": 0.3},
            {"first": 3.0, "lints": 3.0, "ucb": 3.0},
            {a: 0.0 for a in ARMS},
        )
    }
    assert next_allocation(exp, cur, False, few, 10_000) is None  # 9 units < 10
    sums = {
        0: BatchSums(
            {"first": 0.4, "lints": 0.3, "ucb": 0.3},
            {"first": 400.0, "lints": 300.0, "ucb": 300.0},
            {"first": 40.0, "lints": 90.0, "ucb": 30.0},
        )
    }
    nxt = next_allocation(exp, cur, False, sums, 10_000)
    assert nxt is not None and nxt.batch == 1 and not nxt.killed
    assert nxt.shares["lints"] > 0.7 and min(nxt.shares.values()) >= 0.1 - 1e-12
    assert nxt == next_allocation(exp, cur, False, sums, 10_000)  # seeded: same shares
    assert next_allocation(exp, nxt, False, sums, 10_500) is None  # interval (1 s) not over
    killed = next_allocation(exp, nxt, True, sums, 10_600)
    assert killed is not None and killed.killed and killed.batch == 2
    assert killed.shares == {"first": 1.0, "lints": 0.0, "ucb": 0.0}
    assert next_allocation(exp, killed, True, sums, 99_000) is None
    resumed = next_allocation(exp, killed, False, sums, 10_700)  # at once, no interval
    assert resumed is not None and resumed.batch == 3 and resumed.shares["lints"] > 0.7
    last = Allocation("art", exp.bandit.max_batches, nxt.shares, False, 0)
    assert next_allocation(exp, last, False, {500: sums[0]}, 10**9) is None


def test_the_allocating_step_reads_the_shards_and_the_follower_applies_what_it_sent():
    assigner = Assigner.from_dict(cfg())
    redis = FakeRedis()
    shard = ExperimentShard(
        0,
        1,
        2,
        {},
        {
            0: BatchSums(
                {"first": 0.4, "lints": 0.3, "ucb": 0.3},
                {"first": 40.0, "lints": 30.0, "ucb": 30.0},
                {"first": 4.0, "lints": 20.0, "ucb": 3.0},
            )
        },
    )
    assert ExperimentShard.decode(shard.encode()) == shard
    redis.hashes[experiment_key("rs", "art")] = {b"p0": shard.encode(), b"p1": b"junk"}
    sent: list[tuple[str, bytes | None, bytes]] = []

    async def send(topic: str, key: bytes | None, value: bytes) -> None:
        sent.append((topic, key, value))

    out = asyncio.run(allocate(assigner, redis, "rs", "alloc", send, 5_000))
    assert [r.batch for r in out] == [1] and sent[0][1] == record_key("allocation", "art").encode()
    follower = AllocationFollower(Settings(), assigner)
    assert follower.apply(sent[0][1], sent[0][2]) is None
    assert assigner.in_force("art") == out[0]
    assert asyncio.run(allocate(assigner, redis, "rs", "alloc", send, 5_100)) == []  # interval
    switch = Switch("art", True, 6)
    assert follower.apply(b"switch/art", orjson.dumps(switch.as_dict())) is None
    assert assigner.in_force("art").killed
    refused = follower.apply(b"allocation/nope", sent[0][2])
    assert refused is not None and refused.reason == "bad_allocation"
    assert follower.apply(b"allocation/art", b"{").reason == "invalid_json"
    assert follower.apply(None, b"{}").reason == "missing_key"


def test_the_api_shows_the_allocation_and_aipw_estimates_of_a_bandit_experiment():
    eng = Engine()
    eng.experiments = Assigner.from_dict(cfg())
    eng.experiment_fold = LiveFold()
    rng = np.random.default_rng(5)
    means = {"first": 0.1, "lints": 0.5, "ucb": 0.1}
    for i, u in enumerate(USERS[:3000]):
        units = eng.experiments.bandit_units(u)
        if not units:
            continue
        label = eng.experiments.arm_label(u)
        eng.experiment_fold.expose(u, label, i % 4, 0.0, 1, units)
        if rng.random() < means[units[0].arm]:
            eng.experiment_fold.observe(
                {"user_id": u, "title_id": "t1", "event_type": "play", "ts": 2, "position_s": 0}
            )
    redis = FakeRedis()
    sink = FeatureSink(redis, "rs", 60)
    assert asyncio.run(sink.write_experiments(eng.experiment_fold, eng.experiments.experiments, 9))
    api = Api(None, Settings(), eng, None, asyncio.Event(), redis)
    status, body = asyncio.run(run_handler(api.experiment, "/x", (), {}, {"experiment_id": "art"}))
    assert status == 200, body
    orjson.dumps(body)  # plain floats only: the route serialises it
    alloc = body["allocation"]
    assert (alloc["batch"], alloc["killed"], alloc["mode"]) == (0, False, "thompson")
    assert [h["batch"] for h in alloc["history"]] == [0]
    est = body["aipw"]["arms"]
    assert est["lints"]["low"] < 0.5 < est["lints"]["high"]
    assert body["aipw"]["contrasts"]["lints"]["low"] > 0
    assert body["decision"]["verdict"] == "arm lints better"
    assert not body["srm"]["mismatch"]
    assert sum(body["units"].values()) == sum(body["users"].values())
    status, listing = asyncio.run(run_handler(api.experiments, "/x", (), {}, {}))
    art = next(e for e in listing["experiments"] if e["id"] == "art")
    assert art["allocation"]["shares"] == {"first": 0.4, "lints": 0.3, "ucb": 0.3}
    blend = next(e for e in listing["experiments"] if e["id"] == "blend")
    assert "allocation" not in blend
