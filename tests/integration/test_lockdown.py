"""Locked down by default, on a real worker: Faust's built-in pages answer 404, debug pages
answer only to their token, the API listens on loopback only (docs/operations.md,
"Exposure"). The worker without a token is covered in test_serving.py."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

TOKEN = "it-lockdown-token"
FAUST_PAGES = ["/table/", "/table/user-profiles/", "/router/", "/router/user-profiles/", "/graph/"]


@pytest.fixture(scope="module")
async def base(start_worker) -> str:
    worker = start_worker(REELSTREAM_DEBUG_TOKEN=TOKEN)
    url = f"http://127.0.0.1:{worker.port}"

    async def alive() -> bool:
        worker.metrics()  # raises with the log if the worker died
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await wait_for(alive, "the worker's /healthz", timeout=120)
    return url


async def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


@pytest.mark.parametrize("path", FAUST_PAGES)
async def test_faust_table_and_router_pages_are_not_served(base, path):
    status, _, body = await fetch(base + path)
    assert (status, body["error"]) == (404, "not_found")


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer ", f"Bearer {TOKEN}x"]
)
async def test_debug_page_refuses_requests_without_its_token(base, authorization):
    headers = {"Authorization": authorization} if authorization else None
    status, resp_headers, body = await fetch(f"{base}/debug/title-exchange?detail=1", headers)
    assert (status, body["error"]) == (401, "unauthorized")
    assert resp_headers["WWW-Authenticate"] == "Bearer"
    assert "rules" not in body


async def test_debug_page_answers_its_token(base):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    status, _, body = await fetch(f"{base}/debug/title-exchange", headers)
    assert status == 200 and body["rules"] == {"factors": "sum", "ranker": "blend"}


def test_the_api_listens_on_loopback_only(base):
    """127.0.0.2 reaches a socket bound to 0.0.0.0 but not one bound to 127.0.0.1."""
    port = int(base.rsplit(":", 1)[1])
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()
