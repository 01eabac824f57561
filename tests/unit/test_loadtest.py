"""``reelstream loadtest --rate``: an open-loop schedule, latency from the scheduled time."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestServer

from streams.tools.loadtest import run_load


async def test_open_loop_offers_the_rate_and_counts_time_spent_behind_a_stall():
    stalled = asyncio.Event()

    async def recs(request: web.Request) -> web.Response:
        if not stalled.is_set():  # the first request holds the (one-connection) server back
            stalled.set()
            await asyncio.sleep(0.3)
        return web.json_response({"items": []})

    app = web.Application()
    app.router.add_get("/recommendations/{user_id}", recs)
    async with TestServer(app, host="127.0.0.1") as server:
        base = f"http://127.0.0.1:{server.port}"
        report = await run_load(base, ["u1"], concurrency=1, seconds=1.0, rate=40, cold_share=0)
    # 40 requests due in the second, one client: those due during the stall wait for it,
    # and their latency counts the wait from when each was due.
    assert 36 <= report.requests <= 41 and report.statuses == {200: report.requests}
    waited = sorted(report.latencies)[-5:]
    assert all(lat > 0.1 for lat in waited)
