"""Artwork per viewer in the live worker: decisions logged to their topic, choices served."""

from __future__ import annotations

import orjson
import pytest

from streams.adapters.producer import EventProducer
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import read_topic, wait_for

pytestmark = pytest.mark.integration


async def test_worker_logs_each_artwork_decision_and_serves_the_choice(run_settings, start_worker):
    sim = Simulation(SimConfig(users=30, titles=60, seed=12))
    worker = start_worker(REELSTREAM_ARTWORK_POLICY="ts")
    events = list(sim.events(limit=1500))
    async with EventProducer(run_settings) as producer:
        await producer.send_titles(sim.catalog)
        for ev in events:
            await producer.send(ev)
    await wait_for(
        lambda: worker.metrics().get("reelstream_records_consumed_total", 0) >= len(events),
        "the worker to consume the events",
    )
    decisions = [
        orjson.loads(r.value)
        for r in await read_topic(run_settings, run_settings.artwork_decisions_topic)
    ]
    scores = [
        orjson.loads(r.value) for r in await read_topic(run_settings, run_settings.scores_topic)
    ]
    assert decisions and scores
    chosen = {(d["user_id"], d["title_id"]): d for d in decisions}
    for msg in scores:
        for item in msg["items"]:
            d = chosen[(msg["user_id"], item["title_id"])]  # every served item was decided
            assert d["choice"] in d["variants"] and 0 < d["propensity"] <= 1
    # the variant served is one the decision log offered, and not always the first one
    served = [i["artwork_id"] for m in scores for i in m["items"]]
    assert any(not a.endswith("-a0") for a in served)
