"""Redis stopped under traffic and restarted empty: the serving copy catches up by itself.

The worker writes to a Redis of this test's own (never the shared one). While it is
down the worker keeps consuming, holds each user's latest scores, /readyz fails and
the metrics say so; when it returns without its data, the worker notices the
missing epoch key and rebuilds every user's scores from the score topic. No
``reelstream rebuild-redis`` is run.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from streams.adapters.producer import EventProducer
from streams.adapters.scrape import scrape
from streams.tools.synthetic import SimConfig, Simulation
from streams.tools.traffic import send_events
from tests.integration.conftest import read_topic, readyz, wait_for
from tests.integration.own_services import RedisServer

pytestmark = pytest.mark.integration

WARM_EVENTS = 3000
CATCH_UP_BOUND_S = 20.0
OUTAGE_S = 20.0  # issue 11: Redis stopped for 20 s under traffic


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("own-redis"))
    server.start()
    yield server
    server.stop()


def hashes(server: RedisServer, prefix: str, kind: str) -> set[str]:
    """Names of the feature (``feat``) or title (``title``) hashes in Redis."""
    return {k.decode() for k in server.client().scan_iter(f"{prefix}:{kind}:*", count=1000)}


def recs(server: RedisServer, prefix: str) -> dict[str, bytes]:
    r = server.client()
    keys = list(r.scan_iter(f"{prefix}:recs:*", count=1000))
    return {
        k.decode().split("{")[1].rstrip("}"): v for k, v in zip(keys, r.mget(keys), strict=True)
    }


async def test_redis_restarted_empty_under_traffic_is_caught_up_without_a_rebuild_command(
    run_settings, start_worker, own_redis
):
    sim = Simulation(SimConfig(users=400, titles=150, seed=5))
    events = sim.events()
    prefix = run_settings.key_prefix
    worker = start_worker(REELSTREAM_REDIS_URL=own_redis.url)
    async with EventProducer(run_settings) as producer:
        await producer.send_titles(sim.catalog)
        for _ in range(WARM_EVENTS):
            await producer.send(next(events))
    await wait_for(
        lambda: worker.metrics().get("reelstream_records_consumed_total", 0) >= WARM_EVENTS,
        "the warm-up events to be consumed",
        timeout=120,
    )

    async def ready_and_complete() -> bool:
        status, body = await readyz(worker.port)
        return status == 200 and body["serving_copy"]["complete"]

    await wait_for(ready_and_complete, "/readyz 200 with a complete serving copy", timeout=60)
    before = recs(own_redis, prefix)
    assert len(before) > 50
    await wait_for(lambda: hashes(own_redis, prefix, "title"), "title hashes in Redis", timeout=30)
    features_before = hashes(own_redis, prefix, "feat")
    titles_before = hashes(own_redis, prefix, "title")

    stop_traffic = asyncio.Event()
    traffic = asyncio.create_task(send_events(run_settings, events, rate=400, stop=stop_traffic))
    try:
        own_redis.stop()
        outage_started = time.monotonic()

        async def outage_visible() -> dict | None:
            status, body = await readyz(worker.port)
            page = scrape(worker.port)
            held = page.value("reelstream_redis_pending_scores")
            if (
                status == 503
                and body["checks"]["redis"] is False
                and body["serving_copy"]["writes_ok"] is False
                and page.value("reelstream_redis_up") == 0
                and held >= 50
            ):
                return {"held": held, "body": body}
            return None

        seen = await wait_for(outage_visible, "/readyz and metrics to show the outage", 30)
        consumed_in_outage = worker.metrics()["reelstream_records_consumed_total"]
        await wait_for(
            lambda: (
                worker.metrics()["reelstream_records_consumed_total"] > consumed_in_outage + 200
            ),
            "the worker to keep consuming while Redis is down",
            timeout=30,
        )
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
        own_redis.start()  # same port, no persistence: empty
        outage_s = time.monotonic() - outage_started
        returned = time.monotonic()

        def caught_up() -> bool:
            # Scores (from the score topic), and the feature and title hashes of viewers
            # and titles that saw no event since (rewritten from the workers' tables).
            return (
                set(before) <= set(recs(own_redis, prefix))
                and features_before <= hashes(own_redis, prefix, "feat")
                and titles_before <= hashes(own_redis, prefix, "title")
            )

        await wait_for(
            caught_up, "every earlier score, feature and title hash back", CATCH_UP_BOUND_S
        )
        back_after = time.monotonic() - returned
    finally:
        stop_traffic.set()
        sent = await traffic
    total = WARM_EVENTS + sent
    await wait_for(
        lambda: worker.metrics().get("reelstream_records_consumed_total", 0) >= total,
        f"all {total} events to be consumed",
        timeout=120,
    )
    # Now the whole serving copy equals the score topic's latest message per user.
    latest = {
        r.key.decode(): r.value for r in await read_topic(run_settings, run_settings.scores_topic)
    }

    def equal_to_topic() -> bool:
        return recs(own_redis, prefix) == latest

    await wait_for(equal_to_topic, "Redis to equal the score topic's latest per user", 30)
    await wait_for(ready_and_complete, "/readyz 200 again", timeout=30)
    page = scrape(worker.port)
    assert page.value("reelstream_redis_pending_scores") == 0
    assert page.value("reelstream_redis_up") == 1
    assert page.value("reelstream_redis_rebuilds_total", outcome="done") >= 2  # start + outage
    assert page.value("reelstream_redis_errors_total", op="write_scores") >= 1
    # Rate-limited: a handful of lines per outage, not one per retry or batch.
    log = worker.log_path.read_text(errors="replace")
    failing = log.count("Redis score writes fail")
    assert 1 <= failing <= 8, failing
    assert "rebuilding the serving copy" in log
    generated = [orjson.loads(v)["generated_at"] for v in latest.values()]
    print(
        f"\noutage {outage_s:.1f}s, {int(seen['held'])} users' scores held; "
        f"{len(before)} earlier users back {back_after:.1f}s after Redis returned; "
        f"{len(latest)} users equal to the topic; {sent} events during and after; "
        f"{failing} 'writes fail' log lines; newest score {max(generated)}"
    )


def test_the_rebuild_never_overwrites_a_newer_blob_a_worker_wrote_meanwhile(own_redis):
    """The comparison and the write are one Lua script: a worker's newer write cannot land
    between them (the race a GET-then-SET rebuild had)."""
    from streams.adapters.rebuild import SET_IF_NOT_OLDER

    r = own_redis.client()
    script = r.register_script(SET_IF_NOT_OLDER)
    newer = orjson.dumps({"generated_at": 2000, "items": []})
    older = orjson.dumps({"generated_at": 1000, "items": []})
    r.set("cas:a", newer)
    assert script(keys=["cas:a"], args=[older, 1000, 60_000]) == 0
    assert r.get("cas:a") == newer
    r.set("cas:b", older)
    assert script(keys=["cas:b"], args=[newer, 2000, 60_000]) == 1
    assert r.get("cas:b") == newer and 0 < r.pttl("cas:b") <= 60_000
    r.set("cas:c", b"not json")
    assert script(keys=["cas:c"], args=[older, 1000, 60_000]) == 1
    assert script(keys=["cas:d"], args=[older, 1000, 60_000]) == 1 and r.get("cas:d") == older


async def test_a_resync_never_overwrites_a_newer_feature_hash(own_redis):
    """The table resync after an outage races the batches: the later ``last_ts`` wins."""
    from features.user_profile import UserProfile
    from streams.adapters.feature_sink import FeatureSink
    from streams.adapters.redis_sink import connect

    def profile(ts: int) -> UserProfile:
        p = UserProfile()
        ev = {"event_type": "play", "title_id": "t1", "ts": ts, "position_s": 0, "user_id": "u"}
        p.update(ev, None)
        p.features.update(ev, None)
        return p

    client = connect(own_redis.url)
    sink = FeatureSink(client, "rs-resync", 3600)
    r = own_redis.client()
    await sink.write_users([("u1", profile(2000))])
    assert await sink.resync_users([("u1", profile(1000)), ("u2", profile(1500))])
    assert r.hget("rs-resync:feat:{u1}", "last_ts") == b"2000"  # the newer one stayed
    assert r.hget("rs-resync:feat:{u2}", "last_ts") == b"1500"  # missing: written
    assert 0 < r.ttl("rs-resync:feat:{u2}") <= 3600
    assert await sink.resync_users([("u1", profile(3000))])
    assert r.hget("rs-resync:feat:{u1}", "last_ts") == b"3000"
    await client.aclose()
