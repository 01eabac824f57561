"""Bandit traffic in a live worker on the real Kafka and Redis: shares move toward a planted
better arm batch by batch, the kill switch sends everyone to control, the API and the
gauges show it.

The test plays the viewers: each round, fresh users send a ``play`` (their score message
carries the arm the worker assigned under the shares in force), and each then completes
the title with a probability that depends on that arm (the experiment's outcome is
``complete``): arm ``better`` 0.6, the others 0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest
import redis

from streams.adapters.producer import EventProducer
from streams.adapters.redis_keys import recs_key
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import api_get, settings_env, wait_for

pytestmark = pytest.mark.integration

EXP = "art-bandit"
PLANTED = {"control": 0.1, "better": 0.6, "worse": 0.1}
MIN_SHARE = 0.05
CONFIG = f"""
salt = "it-bandit"
[[experiment]]
id = "{EXP}"
layer = "artwork"
allocation = "thompson"
min_share = {MIN_SHARE}
batch_interval_s = 1
batch_min_units = 40
outcome = "complete"
[[experiment.arm]]
name = "control"
share = 0.34
[[experiment.arm]]
name = "better"
share = 0.33
[[experiment.arm]]
name = "worse"
share = 0.33
"""


class Viewers:
    """Fresh users per round; they play, read their arm from Redis, and complete or not."""

    def __init__(self, settings, producer: EventProducer, title: str) -> None:
        self.settings, self.producer, self.title = settings, producer, title
        self.redis = redis.Redis.from_url(settings.redis_url)
        self.rng = np.random.default_rng(17)
        self.round = 0

    def _event(self, user: str, etype: str) -> dict:
        return {
            "event_id": f"{user}-{etype}",
            "user_id": user,
            "title_id": self.title,
            "event_type": etype,
            "ts": int(time.time() * 1000),
            "position_s": 0 if etype == "play" else 1200,
            "duration_s": 1200,
        }

    async def play_round(self, users: int = 60) -> list[str]:
        """One round; returns the arm each user's score message carried."""
        self.round += 1
        ids = [f"bv{self.round:03d}x{i:03d}" for i in range(users)]
        for u in ids:
            await self.producer.send(self._event(u, "play"))
        await self.producer.flush()
        keys = [recs_key(self.settings.key_prefix, u) for u in ids]
        blobs = await wait_for(
            lambda: all(b := self.redis.mget(keys)) and b, "every user's score message"
        )
        arms = [orjson.loads(b)["experiment_arm"].split(":", 1)[1] for b in blobs]
        for u, arm in zip(ids, arms, strict=True):
            if self.rng.random() < PLANTED[arm]:
                await self.producer.send(self._event(u, "complete"))
        await self.producer.flush()
        return arms


async def test_shares_move_to_the_better_arm_and_the_kill_switch_sends_everyone_to_control(
    run_settings, start_worker, tmp_path
):
    config = tmp_path / "bandit.toml"
    config.write_text(CONFIG)
    sim = Simulation(SimConfig(users=10, titles=20, seed=5))
    async with EventProducer(run_settings) as producer:
        await producer.send_titles(sim.catalog)
    worker = start_worker(REELSTREAM_EXPERIMENTS_FILE=str(config))

    def experiment() -> dict:
        status, body = api_get(worker.port, f"/experiments/{EXP}")
        return body if status == 200 else {}

    await wait_for(experiment, "the API to answer")
    async with EventProducer(run_settings) as producer:
        viewers = Viewers(run_settings, producer, sim.catalog[0]["title_id"])
        # Rounds until the allocating worker has published four batches; a bound on rounds
        # (not on time) turns a bandit that never re-allocates into a failure.
        for _ in range(40):
            await viewers.play_round()
            if experiment()["allocation"]["batch"] >= 4:
                break
        body = experiment()
        alloc = body["allocation"]
        assert alloc["batch"] >= 4 and not alloc["killed"], alloc
        shares = alloc["shares"]
        assert shares["better"] == max(shares.values()) and shares["better"] > 0.5, alloc
        assert min(shares.values()) >= MIN_SHARE - 1e-9
        history = alloc["history"]
        assert [h["batch"] for h in history] == list(range(len(history)))
        assert history[0]["shares"] == {"control": 0.34, "better": 0.33, "worse": 0.33}
        # AIPW estimates with intervals: the planted arm's contrast with control is positive
        est = body["aipw"]["arms"]
        assert est["better"]["value"] > est["control"]["value"]
        assert all(e["low"] <= e["value"] <= e["high"] for e in est.values())
        assert body["aipw"]["contrasts"]["better"]["diff"] > 0
        assert not body["srm"]["mismatch"]
        # the same shares on this worker's gauges (one worker: it allocates and assigns)
        scraped = worker.metrics()
        assert scraped["reelstream_experiment_batch"] == alloc["batch"]
        assert scraped["reelstream_experiment_killed"] == 0
        print(f"\nafter {viewers.round} rounds: batch {alloc['batch']}, shares {shares}")

        # The kill switch: one command, every user of the experiment to control.
        env = {
            **os.environ,
            **settings_env(run_settings),
            "REELSTREAM_EXPERIMENTS_FILE": str(config),
        }
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "streams.cli", "experiments", "kill", EXP],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        sent = time.monotonic()  # the command exits once the broker has the record
        killed = await wait_for(
            lambda: (a := experiment()["allocation"])["killed"] and a, "the kill switch"
        )
        now = time.monotonic()
        print(
            f"kill switch in force on the worker {now - sent:.2f} s after the command exited "
            f"({now - started:.2f} s after it started, Python start-up included)"
        )
        assert killed["kill_switch"] and killed["shares"]["control"] == 1.0
        assert set(await viewers.play_round()) == {"control"}
        assert worker.metrics()["reelstream_experiment_killed"] == 1
        # no units are enrolled while it holds: no batch of the history is a killed one
        assert all(h["shares"]["control"] < 1 for h in experiment()["allocation"]["history"])

        done = subprocess.run(
            [sys.executable, "-m", "streams.cli", "experiments", "resume", EXP],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        resumed = await wait_for(
            lambda: not (a := experiment()["allocation"])["killed"] and a, "the resume"
        )
        assert resumed["shares"]["better"] > 0.5  # the posterior, not a fresh start
    refused = subprocess.run(
        [sys.executable, "-m", "streams.cli", "experiments", "kill", "no-such"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "not a bandit experiment" in refused.stderr
