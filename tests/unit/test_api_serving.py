"""``reelstream api`` without Kafka: its routes, readiness and /metrics over loopback, on the
worker's handlers (streams/api/web.py), with a fake Redis and a catalog filled by hand."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from features.catalog import parse_title
from streams import metrics as m
from streams.adapters.redis_keys import recs_key
from streams.api.serving import METRIC_FAMILIES, ServingView, make_app, metrics_text
from streams.api.web import ROUTES, SERVING_ROUTES, Api, ServingReads
from streams.settings import Settings
from streams.tools.synthetic import SimConfig, Simulation
from tests.openapi_check import check_response


class FakeRedis:
    """The reads the API makes: GET, HGET, HGETALL, PING."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.hashes: dict[str, dict[bytes, bytes]] = {}
        self.up = True

    async def ping(self) -> bool:
        if not self.up:
            raise ConnectionError("down")
        return True

    async def get(self, key: str) -> bytes | None:
        await self.ping()
        return self.values.get(key)

    async def hget(self, key: str, field: str) -> bytes | None:
        await self.ping()
        return self.hashes.get(key, {}).get(field.encode())

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        await self.ping()
        return dict(self.hashes.get(key, {}))


@pytest.fixture
def reads() -> ServingReads:
    view = ServingView()
    for doc in Simulation(SimConfig(users=10, titles=30, seed=3)).catalog:
        view.catalog.upsert(parse_title(doc))
    ready = asyncio.Event()
    return ServingReads(Settings(), view, ready, FakeRedis())


def test_the_process_serves_the_viewer_reads_and_the_probes_only():
    assert [name for _, name, _ in SERVING_ROUTES] == [
        "recommendations",
        "user_features",
        "title",
        "trending",
        "healthz",
        "readyz",
    ]
    assert set(SERVING_ROUTES) <= set(ROUTES)  # the worker serves each of them too
    for _, name, _ in SERVING_ROUTES:  # one implementation: the worker inherits it
        if name not in ("healthz", "readyz"):
            assert getattr(Api, name) is getattr(ServingReads, name)


async def test_ready_once_redis_answers_and_the_catalog_is_loaded(reads):
    status, body = await reads.readyz({})
    check_response("/readyz", status, body)
    assert (status, body["checks"]) == (503, {"redis": True, "catalog_loaded": False})
    assert body["detail"] == "failing: catalog_loaded"
    reads.catalog_ready.set()
    reads.redis.up = False
    status, body = await reads.readyz({})
    assert (status, body["checks"]) == (503, {"redis": False, "catalog_loaded": True})
    reads.redis.up = True
    status, body = await reads.readyz({})
    check_response("/readyz", status, body)
    assert status == 200 and m.READY._value.get() == 1
    assert await reads.healthz({}) == (200, {"status": "ok"})


def test_metrics_show_only_the_process_own_families():
    registered = {f.name for f in m.REGISTRY.collect()}
    assert registered >= METRIC_FAMILIES  # no typo hides a family
    text = metrics_text().decode()
    shown = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    family = {name: name.removesuffix("_created").removesuffix("_total") for name in shown}
    assert set(family.values()) == METRIC_FAMILIES
    assert "reelstream_consumer_lag_records" not in text


async def test_routes_over_loopback(reads):
    reads.catalog_ready.set()
    title = next(iter(reads.engine.catalog.titles))
    now = int(time.time() * 1000)
    reads.redis.values[recs_key("rs", "u1")] = orjson.dumps(
        {
            "user_id": "u1",
            "items": [
                {
                    "title_id": title,
                    "score": 0.9,
                    "rank": 1,
                    "reasons": ["because you watched something"],
                    "artwork_id": None,
                }
            ],
            "model_version": "m1",
            "experiment_arm": None,
            "generated_at": now,
            "event_ts": now - 5,
        }
    )
    async with TestClient(TestServer(make_app(reads), host="127.0.0.1")) as client:
        r = await client.get("/recommendations/u1?k=3")
        body = await r.json()
        check_response("/recommendations/{user_id}", r.status, body)
        assert body["source"] == "scores" and body["items"][0]["title_id"] == title
        assert body["items"][0]["name"] == reads.engine.catalog.get(title).name
        r = await client.get("/recommendations/u2")  # no scores: cold start from the catalog
        body = await r.json()
        check_response("/recommendations/{user_id}", r.status, body)
        assert body["source"] == "cold_start" and body["fallback"] == "popularity:ALL"
        r = await client.get(f"/titles/{title}")
        body = await r.json()
        check_response("/titles/{title_id}", r.status, body)
        assert body["catalog"]["title_id"] == title
        r = await client.get("/trending?country=fr&k=2")
        check_response("/trending", r.status, await r.json())
        r = await client.get("/recommendations/bad%20id")
        assert (r.status, (await r.json())["error"]) == (400, "invalid_user_id")
        for path in ("/artwork/u1/t1", "/experiments", "/table/", "/debug/title-exchange"):
            r = await client.get(path)
            assert (r.status, (await r.json())["error"]) == (404, "not_found"), path
        r = await client.post("/recommendations/u1")
        assert (r.status, (await r.json())["error"]) == (405, "method_not_allowed")
        reads.redis.up = False
        r = await client.get("/recommendations/u1")
        assert (r.status, (await r.json())["error"]) == (503, "redis_unavailable")
        r = await client.get("/metrics")
        text = await r.text()
        assert r.status == 200 and r.content_type == "text/plain"
        assert 'route="/recommendations/{user_id}"' in text


async def test_an_unexpected_error_is_a_500_naming_this_process_log(reads):
    """The traceback is in the log of `reelstream api`, not of a worker: the body says so."""

    async def broken(query, **kwargs):
        raise RuntimeError("boom")

    reads.trending = broken  # make_app looks the handlers up on the instance
    async with TestClient(TestServer(make_app(reads), host="127.0.0.1")) as client:
        r = await client.get("/trending")
        body = await r.json()
    check_response("/trending", r.status, body)
    assert (r.status, body["error"]) == (500, "internal")
    assert body["detail"] == "unexpected error; see the reelstream api log"
    assert "worker" not in body["detail"] and "boom" not in body["detail"]
