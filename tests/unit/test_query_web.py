"""POST /query: body validation, the answer against docs/openapi.yaml (a fake Api, no worker)."""

from __future__ import annotations

import orjson
import pytest
from multidict import MultiDict

from online_models.engine import Engine
from streams.api.query_web import PATH, QueryEndpoint, parse_body
from streams.api.web import ApiError, run_handler
from streams.tools.synthetic import SimConfig, Simulation
from tests.openapi_check import check_response


class FakeApi:
    """Stands in for streams.api.web.Api: an engine and this worker's profiles."""

    def __init__(self) -> None:
        sim = Simulation(SimConfig(users=30, titles=120, seed=5))
        self.engine = Engine(catalog=sim.title_catalog())
        for ev in sim.events(limit=3000):
            self.engine.ingest(ev)

    def local_profile(self, user_id: str):
        return self.engine.profiles.get(user_id)


@pytest.fixture(scope="module")
def endpoint():
    return QueryEndpoint(FakeApi(), now_year=2026)


async def call(endpoint, body: bytes, query=None):
    async def handler(q):
        return await endpoint.handle(body)

    return await run_handler(handler, PATH, (), MultiDict(query or {}), {})


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "invalid_body"),
        (b"[1, 2]", "invalid_body"),
        (b'{"user_id": "u1"}', "invalid_text"),
        (b'{"user_id": "u1", "text": "  "}', "invalid_text"),
        (b'{"user_id": "bad id", "text": "comedy"}', "invalid_user_id"),
        (b'{"user_id": 7, "text": "comedy"}', "invalid_user_id"),
        (b'{"user_id": "u1", "text": "comedy", "k": 0}', "invalid_k"),
        (b'{"user_id": "u1", "text": "comedy", "k": true}', "invalid_k"),
        (b'{"user_id": "u1", "text": "comedy", "debug": 1}', "invalid_body"),
        (b'{"user_id": "u1", "text": "' + b"x" * 600 + b'"}', "invalid_text"),
    ],
)
def test_bad_bodies_are_400_with_a_code(body, code):
    with pytest.raises(ApiError) as exc:
        parse_body(body)
    assert exc.value.status == 400 and exc.value.code == code


async def test_answer_matches_the_documented_schema(endpoint):
    user = sorted(endpoint.api.engine.profiles)[0]
    body = orjson.dumps({"user_id": user, "text": "no horror, under 2 hours", "k": 5})
    status, answer = await call(endpoint, body)
    assert status == 200
    check_response(PATH, 200, answer, method="post")
    assert answer["personalized"] and 0 < len(answer["items"]) <= 5
    assert answer["intent"]["hard"]["unwanted"] == ["genre:horror"]
    for item in answer["items"]:
        title = endpoint.api.engine.catalog.get(item["title_id"])
        assert "horror" not in title.genres and title.runtime_s <= 7200


async def test_unanswerable_and_bad_input_are_documented(endpoint):
    status, answer = await call(endpoint, b'{"user_id": "u9", "text": "book a table"}')
    assert status == 200 and not answer["answerable"] and answer["reason"]
    check_response(PATH, 200, answer, method="post")
    status, err = await call(endpoint, b'{"user_id": "u9"}')
    assert status == 400 and err["error"] == "invalid_text"
    check_response(PATH, 400, err, method="post")
    status, err = await call(endpoint, b'{"user_id": "u9", "text": "x"}', {"k": "1"})
    assert status == 400 and err["error"] == "unknown_parameter"


async def test_post_query_through_a_faust_app_over_loopback():
    """The registered view answers real HTTP (aiohttp test server on 127.0.0.1)."""
    import faust
    from aiohttp.test_utils import TestClient, TestServer

    from streams.api import query_web

    app = faust.App("query-web-test", broker="memory://", web_enabled=True)
    api = FakeApi()
    query_web.register(app, api)
    user = sorted(api.engine.profiles)[0]
    async with TestClient(TestServer(app.web.web_app, host="127.0.0.1")) as client:
        r = await client.post("/query", json={"user_id": user, "text": "a comedy", "k": 3})
        body = await r.json()
        assert r.status == 200 and body["personalized"] and len(body["items"]) == 3
        r = await client.post("/query", data=b"nope")
        assert r.status == 400 and (await r.json())["error"] == "invalid_body"
