"""GET /experiments/{id} end to end without Kafka: batch core -> fold -> sink -> Redis fake
-> API handler; plus the per-arm Prometheus gauges and the shard codec."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from online_models import hooks
from online_models.engine import Engine
from online_models.experiment_live import ArmTotals
from streams.adapters.feature_sink import FeatureSink
from streams.adapters.redis_keys import experiment_key
from streams.adapters.redis_values import ExperimentShard
from streams.api.web import Api, run_handler
from streams.settings import Settings
from streams.tools.synthetic import SimConfig, Simulation
from streams.worker import experiment_metrics
from streams.worker.batch_core import process_batch
from tests.unit.test_batch_core import FakeEvent, FakeMessage, NoHealth, RecordingHooks

TOML = """
salt = "api-test"
[[experiment]]
id = "art"
layer = "artwork"
traffic = 1.0
[[experiment.arm]]
name = "first"
share = 0.5
[[experiment.arm]]
name = "lints"
share = 0.5
"""


class FakeRedis:
    """HSET/HGETALL through a pipeline, as the sink and the API use them."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[bytes, bytes]] = {}
        self.down = False

    def pipeline(self, transaction: bool = False) -> FakeRedis._Pipe:
        return FakeRedis._Pipe(self)

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        return dict(self.hashes.get(key, {}))

    class _Pipe:
        def __init__(self, r: FakeRedis) -> None:
            self.r, self.ops = r, []

        def hset(self, key: str, field: str, value: bytes) -> None:
            self.ops.append((key, field, value))

        async def execute(self) -> None:
            from redis.exceptions import ConnectionError as RedisConnectionError

            if self.r.down:
                raise RedisConnectionError("down")
            for key, field, value in self.ops:
                self.r.hashes.setdefault(key, {})[field.encode()] = value


def engine_with_experiments(tmp_path) -> Engine:
    path = tmp_path / "exp.toml"
    path.write_text(TOML)
    sim = Simulation(SimConfig(users=40, titles=30, seed=8))
    eng = Engine()
    from features.catalog import parse_title

    for t in sim.catalog:
        eng.catalog.upsert(parse_title(t))
    hooks.install(eng, Settings(experiments_file=str(path)))
    events = list(sim.events(limit=1200))
    batch = [
        FakeEvent(FakeMessage("ev", int(ev["user_id"][-1]) % 4, i, None), orjson.dumps(ev))
        for i, ev in enumerate(events)
    ]
    # two batches: exposures happen at each batch's score messages, events after them count
    for part in (batch[:400], batch[400:]):
        process_batch(part, eng, RecordingHooks(), NoHealth(), now_ms=events[-1]["ts"] + 1)
    return eng


def test_batch_core_feeds_the_fold_and_the_api_reads_what_the_sink_wrote(tmp_path):
    eng = engine_with_experiments(tmp_path)
    fold = eng.experiment_fold
    assert fold is not None and fold.users
    # every enrolled user is on the partition its events came from, in the arm it was served
    for uid, u in fold.users.items():
        assert u.partition == int(uid[-1]) % 4
        assert dict(u.arms)["art"] == eng.experiments.assign(uid)["artwork"][1].name
    redis = FakeRedis()
    sink = FeatureSink(redis, "rs", 60)
    redis.down = True
    assert not asyncio.run(sink.write_experiments(fold, eng.experiments.experiments, 7))
    assert fold.dirty  # kept for the next try
    redis.down = False
    assert asyncio.run(sink.write_experiments(fold, eng.experiments.experiments, 9))
    stored = redis.hashes[experiment_key("rs", "art")]
    assert set(stored) == {f"p{p}".encode() for p in fold.sums}
    api = Api(None, Settings(), eng, None, asyncio.Event(), redis)
    status, body = asyncio.run(run_handler(api.experiment, "/x", (), {}, {"experiment_id": "art"}))
    assert status == 200, body
    assert sum(body["users"].values()) == len(fold.users)
    for arm in ("first", "lints"):
        mine = [u.stats for u in fold.users.values() if dict(u.arms)["art"] == arm]
        assert sum(s.impressions for s in mine) > 0
        rate = sum(s.plays for s in mine) / sum(s.impressions for s in mine)
        assert body["metrics"][arm]["impression_to_play"]["value"] == pytest.approx(rate)
    assert body["decision"]["verdict"] == "continue"  # 40 simulated users: too few
    assert body["coverage"]["partitions"] == sorted(fold.sums)
    assert body["coverage"]["written"] == 9
    assert set(body["comparisons"]) == {"lints"}
    assert list(body["srm"]["counts"]) == [body["users"]["first"], body["users"]["lints"]]


def _local(fold) -> dict[str, ArmTotals]:
    return {a: t for (e, a), t in fold.local_totals().items() if e == "art"}


def test_unknown_or_invalid_experiment_ids_answer_404_and_400_before_any_redis_key(tmp_path):
    eng = engine_with_experiments(tmp_path)
    redis = FakeRedis()

    async def boom(key: str) -> dict:
        raise AssertionError(f"Redis read for {key}")

    redis.hgetall = boom  # type: ignore[method-assign]
    api = Api(None, Settings(), eng, None, asyncio.Event(), redis)
    status, body = asyncio.run(run_handler(api.experiment, "/x", (), {}, {"experiment_id": "nope"}))
    assert (status, body["error"]) == (404, "unknown_experiment")
    assert "art" in body["detail"]
    for bad in ("a}b", "{x}", "a b", "x" * 200):
        status, body = asyncio.run(
            run_handler(api.experiment, "/x", (), {}, {"experiment_id": bad})
        )
        assert (status, body["error"]) == (400, "invalid_experiment_id"), bad
    api.engine = SimpleNamespace(experiments=None)
    status, body = asyncio.run(run_handler(api.experiment, "/x", (), {}, {"experiment_id": "art"}))
    assert status == 404 and "no experiments configured" in body["detail"]


def test_an_unreadable_shard_is_skipped_and_reported(tmp_path):
    eng = engine_with_experiments(tmp_path)
    redis = FakeRedis()
    good = ExperimentShard(0, 1, 2, {"first": ArmTotals(n=3, imp=6, play=3)})
    redis.hashes[experiment_key("rs", "art")] = {
        b"p0": good.encode(),
        b"p1": b"{not json",
        b"p2": orjson.dumps(
            {"v": 1, "partition": 2, "since": 1, "written": 2, "arms": {"first": {"n": -5}}}
        ),
    }
    api = Api(None, Settings(), eng, None, asyncio.Event(), redis)
    status, body = asyncio.run(run_handler(api.experiment, "/x", (), {}, {"experiment_id": "art"}))
    assert status == 200
    assert body["users"] == {"first": 3, "lints": 0}
    assert body["coverage"]["unreadable_fields"] == ["p1", "p2"]
    assert ExperimentShard.decode(good.encode()) == good


def test_per_arm_gauges_have_config_labels_only_and_sum_the_fold(tmp_path):
    eng = engine_with_experiments(tmp_path)
    reg = CollectorRegistry()
    experiment_metrics.register(eng, registry=reg)
    fams = {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}
    assert set(experiment_metrics.family_names()) >= set(fams)
    users = {s.labels["arm"]: s.value for s in fams["reelstream_experiment_users"].samples}
    local = _local(eng.experiment_fold)
    assert users == {a: pytest.approx(local[a].n) for a in ("first", "lints")}
    watch = fams["reelstream_experiment_watch_seconds"].samples
    assert sum(s.value for s in watch) == pytest.approx(
        sum(u.stats.watch_s for u in eng.experiment_fold.users.values())
    )
    assert {tuple(sorted(s.labels)) for s in watch} == {("arm", "experiment")}
