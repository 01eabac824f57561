"""GET /experiments/{id} on a live worker: per-arm sums folded from Kafka, written to the
real Redis per partition, read back and analysed by the API."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
import redis

from streams.adapters.producer import EventProducer
from streams.adapters.redis_keys import experiment_key
from streams.adapters.redis_values import ExperimentShard
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "experiments.example.toml"


async def test_experiment_route_reads_the_per_partition_sums_the_worker_wrote(
    run_settings, start_worker
):
    worker = start_worker(REELSTREAM_EXPERIMENTS_FILE=str(EXAMPLE))
    sim = Simulation(SimConfig(users=60, titles=40, seed=21))
    events = list(sim.events(limit=3000))
    async with EventProducer(run_settings) as producer:
        await producer.send_titles(sim.catalog)
        for ev in events:
            await producer.send(ev)
    await wait_for(
        lambda: worker.metrics().get("reelstream_records_consumed_total", 0) >= len(events),
        "the worker to consume the events",
    )

    def get(path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}{path}", timeout=5) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())

    r = redis.Redis.from_url(run_settings.redis_url)
    raw = r.hgetall(experiment_key(run_settings.key_prefix, "artwork-policy"))
    shards = [ExperimentShard.decode(v) for v in raw.values()]
    assert shards and {s.partition for s in shards} <= set(range(run_settings.partitions))
    stored_users = sum(t.n for s in shards for t in s.arms.values())
    status, body = get("/experiments/artwork-policy")
    assert status == 200, body
    assert sum(body["users"].values()) == stored_users > 0
    assert set(body["users"]) == {"first-variant", "lints"}
    assert body["decision"]["verdict"] in ("continue", "stop: SRM") or body["decision"][
        "verdict"
    ].startswith("arm ")
    assert body["coverage"]["partitions"] == sorted(s.partition for s in shards)
    # Prometheus: the worker's gauges hold the same users (one worker owns every partition)
    scraped = worker.metrics()
    assert scraped.get("reelstream_experiment_users", 0) >= stored_users
    assert get("/experiments/no-such-experiment")[0] == 404
    assert get("/experiments/bad%20id")[0] == 400
