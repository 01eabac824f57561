"""Issue 13 in a live worker on the real broker: tagging on catalog arrival, POST /forecast
from a state file, and released titles' results learned online from their topic."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from online_models.forecast import encode_state, parse_result
from online_models.tagger import SynopsisTagger, editorial_tags
from streams.adapters.producer import EventProducer
from streams.adapters.scrape import scrape
from streams.tools.greenlight_sim import REGIONS, Slate, SlateConfig
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import decode_values, read_topic, wait_for

pytestmark = pytest.mark.integration

ATTRS = {"genres": ["horror"], "tags": {"tone": ["dark"]}, "runtime_s": 5400, "kind": "movie"}


async def test_a_worker_tags_arriving_titles_and_forecasts_from_state_and_topic(
    run_settings, start_worker, tmp_path
):
    sim = Simulation(SimConfig(users=1, titles=150, seed=21))
    tagger_file = tmp_path / "tagger.bin"
    tagger_file.write_bytes(
        SynopsisTagger().fit(r for r in sim.catalog if editorial_tags(r)).to_bytes()
    )
    slate = Slate(SlateConfig(titles=80, seed=5)).titles
    results = [
        {"title_id": t.title_id, "attributes": t.attributes, "audience": t.audience} for t in slate
    ]
    state = tmp_path / "forecaster.state"
    state.write_bytes(encode_state([parse_result(r) for r in results[:40]], REGIONS))
    worker = start_worker(
        REELSTREAM_TAGGER_FILE=str(tagger_file), REELSTREAM_FORECAST_STATE=str(state)
    )
    src = sim.catalog[3]
    fresh = {k: src[k] for k in ("name", "kind", "synopsis", "runtime_s")}
    fresh.update(title_id="fresh-1", genres=["comedy"], tags={"tone": ["light"]})
    bad_result = {**results[0], "title_id": "g-bad", "audience": {"US": 10.0}}
    async with EventProducer(run_settings) as producer:
        await producer.send_titles([*sim.catalog, fresh])
        await producer.send_results(results[30:])  # 10 already in the state, 40 new
        await producer.send_raw(
            run_settings.title_results_topic, b"g-bad", orjson.dumps(bad_result)
        )

    base = f"http://127.0.0.1:{worker.port}"
    async with aiohttp.ClientSession() as http:

        async def forecast(body: dict) -> tuple[int, dict]:
            try:
                async with http.post(f"{base}/forecast", json=body) as r:
                    return r.status, await r.json()
            except aiohttp.ClientError:  # the worker's web server is not up yet
                return 0, {}

        async def learned_all() -> bool:
            status, body = await forecast({"attributes": ATTRS, "regions": ["US", "JP"]})
            return status == 200 and body["model"]["titles_learned"] == 80

        await wait_for(learned_all, "the forecaster to learn the state and the topic")
        status, body = await forecast({"attributes": ATTRS, "regions": ["US", "JP"]})
        assert body["model"]["learned_online"] == 40
        for f in body["forecasts"].values():
            assert f["low"] <= f["audience"] <= f["high"]
        status, err = await forecast({"attributes": ATTRS, "regions": ["XX"]})
        assert status == 400 and err["error"] == "unknown_region"
        status, err = await forecast({"attributes": {**ATTRS, "runtime_s": "long"}})
        assert status == 400 and err["error"] == "invalid_attributes"

        async def fresh_title() -> dict | None:
            async with http.get(f"{base}/titles/fresh-1") as r:
                body = await r.json()
            return body.get("catalog") if r.status == 200 else None

        title = await wait_for(fresh_title, "the new title to reach the worker's catalog")
    assert title["tags"] == {"tone": ["light"]} and title["genres"] == ["comedy"]
    derived = title["derived_tags"]
    assert derived and "tone" not in derived and "genre" not in derived  # editorial wins
    assert all(t["source"] == "derived" for tags in derived.values() for t in tags)
    await wait_for(
        lambda: scrape(worker.port).value("reelstream_forecast_results_total", outcome="regions"),
        "the result with other regions to be refused",
    )
    page = scrape(worker.port)
    assert page.value("reelstream_catalog_tagger_loaded") == 1
    assert page.value("reelstream_catalog_tagging_total", outcome="tagged") >= 1
    assert page.value("reelstream_forecast_results_total", outcome="learned") == 40
    assert page.value("reelstream_forecast_results_total", outcome="known") == 10
    dead = decode_values(await read_topic(run_settings, run_settings.dlq_topic, expected=1))
    assert any(d.get("reason") == "bad_result" and "g-bad" in d.get("detail", "") for d in dead)
