"""``reelstream api`` on the real stack: a worker takes the events, a separate API process
(no agents, no tables) serves its fresh recommendations from Redis and its catalog from
its own follower, answering like the worker's in-process API."""

from __future__ import annotations

import socket

import aiohttp
import orjson
import pytest
import redis

from streams.adapters.producer import EventProducer
from streams.adapters.redis_keys import recs_key
from streams.adapters.scrape import scrape
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import readyz, wait_for
from tests.openapi_check import check_response

pytestmark = pytest.mark.integration

WARM_EVENTS = 2000
REFRESHING = ("play", "click", "complete")


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation(SimConfig(users=60, titles=100, seed=17))


async def get(port: int, path: str) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}{path}") as resp,
    ):
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


@pytest.fixture(scope="module")
async def pair(run_settings, sim, start_worker, start_api):
    """A worker that has processed the warm-up events, and a ready API process."""
    worker = start_worker()
    api = start_api()
    events = list(sim.events(limit=WARM_EVENTS))
    async with EventProducer(run_settings) as producer:
        await producer.send_titles(sim.catalog)
        for ev in events:
            await producer.send(ev)

    async def ready(proc) -> bool:  # type: ignore[no-untyped-def]
        if proc.proc.poll() is not None:
            proc.metrics()  # raises with the process's log
        return (await readyz(proc.port))[0] == 200

    await wait_for(lambda: ready(worker), "the worker's /readyz", timeout=180)
    await wait_for(lambda: ready(api), "the API process's /readyz", timeout=120)
    await wait_for(
        lambda: worker.metrics().get("reelstream_records_consumed_total", 0) >= WARM_EVENTS,
        "the worker to consume the warm-up events",
        timeout=180,
    )
    return {"worker": worker, "api": api, "events": events}


async def test_ready_once_redis_answers_and_the_catalog_is_loaded(pair, sim):
    status, body = await get(pair["api"].port, "/readyz")
    check_response("/readyz", status, body)
    assert (status, body["checks"]) == (200, {"redis": True, "catalog_loaded": True})
    assert await get(pair["api"].port, "/healthz") == (200, {"status": "ok"})
    page = scrape(pair["api"].port)
    assert page.value("reelstream_catalog_titles") == len(sim.catalog)
    assert page.value("reelstream_ready") == 1
    # Its own families only: no worker series (a lag at 0 would read as a healthy worker).
    assert "reelstream_consumer_lag_records" not in page.types
    assert "reelstream_records_consumed" not in page.types


async def test_serves_the_workers_fresh_recommendations(run_settings, pair):
    worker, api, events = pair["worker"], pair["api"], pair["events"]
    r = redis.Redis.from_url(run_settings.redis_url)
    template = next(
        e
        for e in reversed(events)
        if e["event_type"] in REFRESHING
        and r.exists(recs_key(run_settings.key_prefix, e["user_id"]))
    )
    user = template["user_id"]
    key = recs_key(run_settings.key_prefix, user)
    before = orjson.loads(r.get(key))
    status, body = await get(api.port, f"/recommendations/{user}?k=5")
    check_response("/recommendations/{user_id}", status, body)
    assert body["source"] == "scores" and body["generated_at"] == before["generated_at"]

    # A new event for the user: the worker rescores, the API process serves the new list.
    latest = max(e["ts"] for e in events if e["user_id"] == user)
    fresh = {**template, "event_id": "api-process-fresh-1", "ts": latest + 1000}
    async with EventProducer(run_settings) as producer:
        await producer.send(fresh)

    async def rescored() -> dict | None:
        status, body = await get(api.port, f"/recommendations/{user}?k=5")
        return body if status == 200 and body["event_ts"] == fresh["ts"] else None

    served = await wait_for(rescored, "the API process to serve the rescored list", timeout=60)
    stored = orjson.loads(r.get(key))
    assert served["generated_at"] == stored["generated_at"] > before["generated_at"]
    assert [i["title_id"] for i in served["items"]] == [i["title_id"] for i in stored["items"][:5]]
    _, from_worker = await get(worker.port, f"/recommendations/{user}?k=5")
    assert {k: v for k, v in served.items() if k != "age_ms"} == {
        k: v for k, v in from_worker.items() if k != "age_ms"
    }


async def test_titles_trending_and_features_answer_like_the_worker(pair, sim):
    worker, api = pair["worker"], pair["api"]
    title = sim.catalog[3]["title_id"]
    status, body = await get(api.port, f"/titles/{title}")
    check_response("/titles/{title_id}", status, body)
    _, from_worker = await get(worker.port, f"/titles/{title}")
    assert body["catalog"] == from_worker["catalog"] and body["catalog"]["title_id"] == title

    async def trending_from_redis() -> dict | None:
        status, body = await get(api.port, "/trending?window=1d&k=5")
        return body if status == 200 and body["source"] == "redis" else None

    body = await wait_for(trending_from_redis, "trending from Redis on the API process", 60)
    check_response("/trending", 200, body)
    _, from_worker = await get(worker.port, "/trending?window=1d&k=5")
    if from_worker["generated_at"] == body["generated_at"]:  # not rewritten in between
        assert from_worker["items"] == body["items"]

    user = pair["events"][-1]["user_id"]
    status, body = await get(api.port, f"/users/{user}/features")
    check_response("/users/{user_id}/features", status, body)
    assert status == 200 and body["features"] is not None
    assert body["profile"] is None  # profiles live in the workers' tables


@pytest.mark.parametrize(
    "path", ["/artwork/u1/t00001", "/experiments", "/table/", "/router/", "/debug/title-exchange"]
)
async def test_worker_only_and_internal_pages_are_not_served(pair, path):
    status, body = await get(pair["api"].port, path)
    assert (status, body["error"]) == (404, "not_found")


async def test_bad_input_is_a_json_400_and_the_bind_is_loopback(pair):
    port = pair["api"].port
    status, body = await get(port, "/recommendations/u1?k=0")
    assert (status, body["error"]) == (400, "invalid_k")
    status, body = await get(port, "/recommendations/u1?debug=1")
    assert (status, body["error"]) == (400, "unknown_parameter")
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()
