"""POST /forecast and the forecaster state file: validation, 503s, replay, documented schema."""

from __future__ import annotations

import orjson
import pytest
from multidict import MultiDict

from online_models.forecast import (
    ForecastInputError,
    GreenlightForecaster,
    build,
    decode_state,
    encode_state,
    parse_result,
)
from streams.api.forecast_web import PATH, ForecastEndpoint, ForecastService, parse_body
from streams.api.web import ApiError, run_handler
from streams.tools.greenlight_sim import REGIONS, Slate, SlateConfig
from tests.openapi_check import check_response

ATTRS = {
    "genres": ["horror"],
    "tags": {"tone": ["dark"]},
    "runtime_s": 5400,
    "cast": ["actor001"],
    "kind": "movie",
}


@pytest.fixture(scope="module")
def results():
    slate = Slate(SlateConfig(titles=250, seed=4))
    return [
        parse_result({"title_id": t.title_id, "attributes": t.attributes, "audience": t.audience})
        for t in slate.titles
    ]


@pytest.fixture(scope="module")
def state_file(results, tmp_path_factory):
    path = tmp_path_factory.mktemp("fc") / "forecaster.state"
    path.write_bytes(encode_state(results, REGIONS, extra={"created_ts": 1}))
    return path


@pytest.fixture(scope="module")
def service(state_file):
    svc = ForecastService(str(state_file))
    svc.load()
    return svc


def test_a_state_file_replays_into_the_same_forecasts(results):
    direct = GreenlightForecaster(REGIONS)
    for tid, attrs, audience in results:
        direct.learn(attrs, audience, tid)
    replayed = build(*decode_state(encode_state(results, REGIONS)))
    assert replayed.seen == direct.seen == 250
    assert replayed.forecast(ATTRS) == direct.forecast(ATTRS)
    assert not replayed.learn(*results[0][1:], results[0][0])  # a result is learned once
    assert replayed.seen == 250


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.replace(b'"horror"', b'"comedy"', 1), "SHA-256"),
        (lambda b: b"not json\n" + b, "header"),
        (lambda b: b.replace(b"reelstream-forecaster", b"something-else", 1), "not a"),
        (lambda b: b[: len(b) // 2], "SHA-256"),
    ],
)
def test_a_damaged_state_is_refused(results, mutate, message):
    blob = encode_state(results[:20], REGIONS)
    decode_state(blob)  # the intact file is accepted
    with pytest.raises(ForecastInputError, match=message) as exc:
        decode_state(mutate(blob))
    assert exc.value.code == "invalid_state"


def test_a_state_with_a_repeated_title_or_a_missing_region_is_refused(results):
    with pytest.raises(ForecastInputError, match="twice"):
        decode_state(encode_state([results[0], results[0]], REGIONS))
    tid, attrs, audience = results[0]
    short = {r: v for r, v in audience.items() if r != "JP"}
    with pytest.raises(ForecastInputError, match="exactly the regions"):
        decode_state(encode_state([(tid, attrs, short)], REGIONS))


BAD_BODIES = [
    (b"not json", "invalid_body"),
    (b"[1]", "invalid_body"),
    (b'{"regions": ["US"]}', "invalid_attributes"),
    (b'{"attributes": {"genres": ["horror"]}, "debug": 1}', "invalid_body"),
    (b'{"attributes": {"genres": "horror"}}', "invalid_attributes"),
    (b'{"attributes": {"genres": []}}', "invalid_attributes"),
    (b'{"attributes": {"genres": ["Horror!"]}}', "invalid_attributes"),
    (b'{"attributes": {"genres": ["horror"], "runtime_s": -1}}', "invalid_attributes"),
    (b'{"attributes": {"genres": ["horror"], "runtime_s": true}}', "invalid_attributes"),
    (b'{"attributes": {"genres": ["horror"], "cast": ["bad id"]}}', "invalid_attributes"),
    (b'{"attributes": {"genres": ["horror"], "kind": "podcast"}}', "invalid_attributes"),
    (b'{"attributes": {"genres": ["horror"], "budget": 9}}', "invalid_attributes"),
    (b'{"attributes": {"genres": ["horror"], "tags": {"tone": [1]}}}', "invalid_attributes"),
    (b'{"attributes": {"genres": ["horror"]}, "regions": []}', "invalid_regions"),
    (b'{"attributes": {"genres": ["horror"]}, "regions": "US"}', "invalid_regions"),
    (b'{"attributes": {"genres": ["horror"]}, "regions": ["us"]}', "invalid_regions"),
    (b'{"attributes": {"genres": ["horror"]}, "regions": ["XX"]}', "unknown_region"),
    (
        b'{"attributes": {"genres": ["horror"]}, "regions": ' + orjson.dumps(["US"] * 8) + b"}",
        "invalid_regions",
    ),
    (
        b'{"attributes": {"genres": ["horror"], "synopsis": "' + b"x" * 17_000 + b'"}}',
        "invalid_body",
    ),
]


@pytest.mark.parametrize(("body", "code"), BAD_BODIES)
def test_bad_bodies_are_400_with_a_code(body, code):
    with pytest.raises(ApiError) as exc:
        parse_body(body, REGIONS)
    assert exc.value.status == 400 and exc.value.code == code
    assert exc.value.detail


async def call(service: ForecastService, body: bytes, query=None):
    endpoint = ForecastEndpoint(service)

    async def handler(q):
        return await endpoint.handle(body)

    return await run_handler(handler, PATH, (), MultiDict(query or {}), {})


async def test_a_forecast_matches_the_documented_schema(service):
    status, answer = await call(service, orjson.dumps({"attributes": ATTRS, "regions": ["US"]}))
    assert status == 200, answer
    check_response(PATH, 200, answer, method="post")
    assert set(answer["forecasts"]) == {"US"}
    f = answer["forecasts"]["US"]
    assert f["low"] <= f["audience"] <= f["high"] and f["log_low"] < f["log_high"]
    assert answer["model"]["titles_learned"] == 250
    status, answer = await call(service, orjson.dumps({"attributes": ATTRS}))
    assert status == 200 and set(answer["forecasts"]) == set(REGIONS)
    status, err = await call(service, b'{"attributes": {"genres": ["x"]}, "regions": ["ZZ"]}')
    assert status == 400 and err["error"] == "unknown_region" and "US" in err["detail"]
    check_response(PATH, 400, err, method="post")
    status, err = await call(service, orjson.dumps({"attributes": ATTRS}), {"k": "1"})
    assert status == 400 and err["error"] == "unknown_parameter"


async def test_no_forecaster_is_a_503_that_says_why(tmp_path):
    status, err = await call(ForecastService(""), orjson.dumps({"attributes": ATTRS}))
    assert status == 503 and err["error"] == "forecaster_unavailable"
    assert "REELSTREAM_FORECAST_STATE" in err["detail"]
    check_response(PATH, 503, err, method="post")
    loading = ForecastService(str(tmp_path / "later.state"))
    status, err = await call(loading, b"{}")  # the body is not even read yet
    assert status == 503 and "loading" in err["detail"]
    for path, why in [
        (tmp_path / "missing.state", "no such file"),
        (tmp_path, "not a regular file"),
    ]:
        svc = ForecastService(str(path))
        svc.load()
        status, err = await call(svc, orjson.dumps({"attributes": ATTRS}))
        assert status == 503 and why in err["detail"] and svc.model is None
        assert str(tmp_path.parent) not in err["detail"]  # the file's name, not its directory
    garbage = tmp_path / "garbage.state"
    garbage.write_bytes(b'{"format": "reelstream-forecaster", "version": 9}\n')
    svc = ForecastService(str(garbage))
    svc.load()
    status, err = await call(svc, orjson.dumps({"attributes": ATTRS}))
    assert status == 503 and "unsupported state version" in err["detail"]


async def test_post_forecast_through_a_faust_app_over_loopback(service):
    """The registered view answers real HTTP (aiohttp test server on 127.0.0.1)."""
    import faust
    from aiohttp.test_utils import TestClient, TestServer

    from streams.api import forecast_web

    app = faust.App("forecast-web-test", broker="memory://", web_enabled=True)
    forecast_web.register(app, service)
    async with TestClient(TestServer(app.web.web_app, host="127.0.0.1")) as client:
        r = await client.post("/forecast", json={"attributes": ATTRS, "regions": ["JP", "US"]})
        body = await r.json()
        assert r.status == 200 and set(body["forecasts"]) == {"JP", "US"}
        r = await client.post("/forecast", data=b"nope")
        assert r.status == 400 and (await r.json())["error"] == "invalid_body"


def test_results_from_the_topic_extend_a_loaded_state(results, tmp_path):
    path = tmp_path / "first100.state"
    path.write_bytes(encode_state(results[:100], REGIONS))
    svc = ForecastService(str(path))
    svc.load()
    assert svc.model.seen == 100
    assert svc.learn(*results[5]) == "known"  # already in the state
    assert svc.learn(*results[100]) == "learned"
    assert svc.learn(*results[100]) == "known"  # a result is learned once
    tid, attrs, _ = results[101]
    assert svc.learn(tid, attrs, {"US": 1.0}) == "regions"
    assert svc.model.seen == 101 and svc.online == 1
    answer = svc.answer(orjson.dumps({"attributes": ATTRS, "regions": ["US"]}))
    assert answer["model"]["titles_learned"] == 101 and answer["model"]["learned_online"] == 1


async def test_without_a_state_the_topic_trains_the_forecaster(results):
    svc = ForecastService("")
    for r in results[:19]:
        assert svc.learn(*r) == "learned"
    status, err = await call(svc, orjson.dumps({"attributes": ATTRS}))
    assert status == 503 and "learned 19 released titles" in err["detail"]
    svc.learn(*results[19])
    status, answer = await call(svc, orjson.dumps({"attributes": ATTRS}))
    assert status == 200 and set(answer["forecasts"]) == set(REGIONS)


def test_a_refused_state_learns_nothing_from_the_topic(results, tmp_path):
    svc = ForecastService(str(tmp_path / "missing.state"))
    svc.load()
    assert svc.learn(*results[0]) == "failed" and svc.model is None


def test_the_results_follower_learns_good_records_and_refuses_bad_ones(results):
    from streams.adapters.results_follower import ResultsFollower
    from streams.settings import Settings

    svc = ForecastService("")
    follower = ResultsFollower(Settings(), svc)

    def record(tid, attrs, audience):
        return orjson.dumps({"title_id": tid, "attributes": attrs, "audience": audience})

    for r in results[:3]:
        assert follower.apply(r[0].encode(), record(*r)) is None
    assert svc.model.seen == 3
    assert follower.apply(b"x", b"{nope").reason == "invalid_json"
    bad = follower.apply(b"g1", b'{"title_id": "g1", "attributes": {"genres": []}, "audience": {}}')
    assert bad.reason == "bad_result" and "genres" in bad.detail
    assert follower.apply(b"other", record(*results[3])).reason == "bad_result"  # key != id
    tid, attrs, _ = results[4]
    assert "regions differ" in follower.apply(tid.encode(), record(tid, attrs, {"US": 5})).detail
    assert follower.apply(b"gone", None) is None  # a tombstone forgets nothing
    assert svc.model.seen == 3
