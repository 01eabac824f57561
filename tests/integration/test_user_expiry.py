"""Per-user expiry on the real stack: a user idle past REELSTREAM_USER_TTL_S (in event time)
is tombstoned in the user-profiles changelog and loses its Redis keys; active users keep
their rows, and their Redis keys carry TTLs."""

from __future__ import annotations

import time

import orjson
import pytest
import redis

from streams.adapters.producer import EventProducer
from streams.adapters.redis_keys import features_key, recs_key
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import delete_run_topics, read_topic, wait_for

pytestmark = pytest.mark.integration

TTL_S = 600  # ten minutes of event time
IDLE = ["idle-1", "idle-2"]
ACTIVE = [f"active-{i}" for i in range(40)]  # enough keys to give every partition a clock


def play(i: int, user: str, title: str, ts: int) -> dict:
    return {
        "event_id": f"{user}-e{i}",
        "event_type": "play",
        "user_id": user,
        "title_id": title,
        "ts": ts,
        "position_s": 0,
    }


async def test_an_idle_users_row_is_tombstoned_and_its_redis_keys_deleted(
    run_settings, start_worker
):
    sim = Simulation(SimConfig(users=5, titles=30, seed=4))
    titles = [t["title_id"] for t in sim.catalog]
    worker = start_worker(
        REELSTREAM_USER_TTL_S=str(TTL_S),
        REELSTREAM_USER_EXPIRY_SCAN="10",
        REELSTREAM_USER_EXPIRY_PAUSE_S="1",
    )
    now = int(time.time() * 1000)
    idle = [play(i, u, titles[i], now - 3 * TTL_S * 1000 + i) for u in IDLE for i in range(3)]
    active = [play(i, u, titles[i + 3], now + i) for u in ACTIVE for i in range(2)]
    async with EventProducer(run_settings) as producer:
        await producer.send_titles(sim.catalog)
        for ev in idle + active:  # the idle users first: each partition's clock then moves on
            await producer.send(ev)
    n = len(idle) + len(active)
    await wait_for(
        lambda: worker.metrics().get("reelstream_events_consumed_total", 0) >= n,
        "the worker to consume the events",
    )
    await wait_for(
        lambda: worker.metrics().get("reelstream_users_expired_total", 0) >= len(IDLE),
        "the sweep to expire the idle users",
        timeout=60,
    )
    assert worker.metrics()["reelstream_users_expired_total"] == len(IDLE)  # and no one else

    changelog = f"{run_settings.app_id}-user-profiles-changelog"
    last: dict[str, dict | None] = {}

    async def tombstoned() -> bool:
        last.clear()
        for rec in await read_topic(run_settings, changelog, timeout=10):
            last[orjson.loads(rec.key)] = None if rec.value is None else orjson.loads(rec.value)
        return all(u in last and last[u] is None for u in IDLE)

    await wait_for(tombstoned, "tombstones of the idle users in the changelog", timeout=60)
    assert all(last.get(u) is not None for u in ACTIVE)  # active rows stay

    r = redis.Redis.from_url(run_settings.redis_url)
    prefix = run_settings.key_prefix
    for u in IDLE:
        assert not r.exists(recs_key(prefix, u), features_key(prefix, u))
    await wait_for(
        lambda: all(r.exists(recs_key(prefix, u)) for u in ACTIVE), "active users' scores"
    )
    for u in ACTIVE:  # every per-user key expires on its own too
        assert 0 < r.ttl(recs_key(prefix, u)) <= run_settings.score_ttl_s
        assert 0 < r.ttl(features_key(prefix, u)) <= run_settings.feature_ttl_s
    worker.stop()
    await delete_run_topics(run_settings)
