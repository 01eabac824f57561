"""Artwork per viewer in the live worker: decisions logged to their topic, choices served."""

from __future__ import annotations

import orjson
import pytest

from streams.adapters.producer import EventProducer
from streams.adapters.scrape import scrape
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import free_port, read_topic, wait_for

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


async def test_artwork_and_experiments_routes_show_the_policy_and_the_arms(
    run_settings, start_worker
):
    import urllib.request
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "docs" / "experiments.example.toml"
    worker = start_worker(
        REELSTREAM_ARTWORK_POLICY="ts",
        REELSTREAM_EXPERIMENTS_FILE=str(example),
        REELSTREAM_WEB_PORT=str(free_port()),  # beside the first test's worker
    )
    sim = Simulation(SimConfig(users=10, titles=30, seed=4))
    async with EventProducer(run_settings) as producer:
        await producer.send_titles(sim.catalog)

    def get(path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}{path}", timeout=5) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())
        except urllib.error.URLError:
            return 0, {}  # not listening yet

    title = sim.catalog[0]
    status, view = await wait_for(
        lambda: (res := get(f"/artwork/u000001/{title['title_id']}"))[0] == 200 and res,
        "the catalog to reach the worker",
    )
    assert [v["artwork_id"] for v in view["variants"]] == [
        a["artwork_id"] for a in title["artwork"]
    ]
    assert abs(sum(v["probability"] for v in view["variants"]) - 1.0) < 1e-3
    assert min(v["probability"] for v in view["variants"]) >= 0.03 / len(view["variants"]) - 1e-6
    assert get("/artwork/u000001/no-such-title")[0] == 404
    status, body = get("/experiments")
    assert status == 200 and body["experiments"]
    for exp in body["experiments"]:
        assert abs(sum(a["share"] for a in exp["arms"]) - 1.0) < 1e-9
    # The dashboard's artwork and experiment panels query metrics this worker exports.
    from tests.integration.test_serving import METRIC_RE, configured_only, series_names
    from tests.unit.test_deploy import dashboard_exprs, rules

    used = {
        n for e in [r["expr"] for r in rules()] + dashboard_exprs() for n in METRIC_RE.findall(e)
    }
    wanted = configured_only(used)
    assert wanted
    assert wanted - series_names(scrape(worker.port, timeout=5)) == set()
