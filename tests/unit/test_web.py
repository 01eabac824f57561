"""Unit tests of the API's validation and error wrapping (no worker; a fake handler)."""

from __future__ import annotations

import pytest
from multidict import MultiDict
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.api.web import ApiError, check_params, parse_country, parse_k, run_handler
from tests.openapi_check import check_response


@pytest.mark.parametrize("raw", ["0", "101", "-1", "ten", "1.5", ""])
def test_k_outside_1_to_100_is_a_client_error(raw):
    with pytest.raises(ApiError) as exc:
        parse_k({"k": raw})
    assert exc.value.status == 400 and exc.value.code == "invalid_k"


def test_k_bounds_and_country_normalisation():
    assert parse_k({"k": "1"}) == 1 and parse_k({"k": "100"}) == 100 and parse_k({}) == 10
    assert parse_country({"country": "fr"}) == "FR" and parse_country({}) == "ALL"
    with pytest.raises(ApiError):
        parse_country({"country": "FRA"})


def test_unknown_and_repeated_parameters_are_refused():
    with pytest.raises(ApiError, match="unknown_parameter"):
        check_params(MultiDict([("k", "1"), ("debug", "1")]), ["k"])
    with pytest.raises(ApiError, match="repeated_parameter"):
        check_params(MultiDict([("k", "1"), ("k", "2")]), ["k"])
    check_params(MultiDict([("k", "1")]), ["k", "row"])


async def _fake_handler_raising(exc: Exception):  # a fake for the wrapper's sake
    async def handler(query, **kwargs):
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (ApiError(404, "unknown_user", "no features"), 404, "unknown_user"),
        (RedisConnectionError("down"), 503, "redis_unavailable"),
        (KeyError("boom"), 500, "internal"),
    ],
)
async def test_every_failure_becomes_a_documented_json_error(exc, status, code):
    handler = await _fake_handler_raising(exc)
    got_status, body = await run_handler(
        handler, "/users/{user_id}/features", (), MultiDict(), {"user_id": "u1"}
    )
    assert (got_status, body["error"]) == (status, code)
    assert "Traceback" not in body["detail"] and "boom" not in body["detail"]
    check_response("/users/{user_id}/features", got_status, body)


async def test_a_500_names_the_log_of_the_process_that_answered():
    handler = await _fake_handler_raising(KeyError("boom"))
    for server in ("worker", "reelstream api"):
        status, body = await run_handler(handler, "/trending", (), MultiDict(), {}, server=server)
        assert (status, body["detail"]) == (500, f"unexpected error; see the {server} log")


async def test_healthz_fails_while_the_stall_watch_reports_partitions():
    """Liveness: a worker whose partitions stopped being read is restarted."""
    import asyncio

    from streams.api.web import Api
    from streams.settings import Settings

    api = Api(None, Settings(), None, None, asyncio.Event(), None)
    assert await api.healthz({}) == (200, {"status": "ok"})
    api.stalled = lambda: {2, 0}
    status, body = await api.healthz({})
    assert status == 503 and body["status"] == "stalled" and "[0, 2]" in body["detail"]


async def test_task_stacks_show_the_coroutine_a_task_waits_in():
    import asyncio

    from streams.worker.diagnostics import task_stacks

    gate = asyncio.Event()

    async def waiting_here() -> None:
        await gate.wait()

    task = asyncio.create_task(waiting_here(), name="stuck-one")
    await asyncio.sleep(0)
    dump = task_stacks()
    gate.set()
    await task
    assert "task stuck-one:" in dump and "waiting_here" in dump
