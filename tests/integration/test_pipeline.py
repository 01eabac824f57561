"""End to end on the real broker and Redis: events in, scores out, bad records dead-lettered."""

from __future__ import annotations

import orjson
import pytest
import redis

from features.catalog import parse_title
from streams.adapters.producer import EventProducer
from streams.adapters.redis_keys import recs_key
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import decode_values, read_topic, wait_for

pytestmark = pytest.mark.integration

N_EVENTS = 12_000

MALFORMED: list[tuple[bytes, str]] = [
    (b"this is not json", "invalid_json"),
    (b'{"event_id": "m1", "user_id": "u000001"}', "missing_field"),
    (
        b'{"event_id":"m2","user_id":"u x","title_id":"t1","event_type":"play","ts":1767571200000}',
        "bad_id",
    ),
    (
        b'{"event_id":"m3","user_id":"u1","title_id":"t1","event_type":"warp","ts":1767571200000}',
        "unknown_event_type",
    ),
    (
        b'{"event_id":"m4","user_id":"u1","title_id":"t1","event_type":"play","ts":1767571200}',
        "bad_timestamp",
    ),
    (b"[]", "not_an_object"),
    (b"", "empty_record"),
]


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation(SimConfig(users=150, titles=150, seed=23))


@pytest.fixture(scope="module")
async def sent(run_settings, sim, start_worker):
    """Start a worker, publish the catalog, send events with malformed records mixed in."""
    worker = start_worker()
    events = list(sim.events(limit=N_EVENTS))
    envelope_user = events[0]["user_id"]
    # The user's latest event: an envelope older than the allowed lateness would be too_late.
    last = [e for e in events if e["user_id"] == envelope_user][-1]
    envelope = [
        {**last, "event_id": "env-ok-1", "event_type": "click"},
        {**last, "event_id": "env-bad", "ts": 12},
        {**last, "event_id": "env-ok-2", "event_type": "click"},
    ]
    async with EventProducer(run_settings) as producer:
        await producer.send_titles(sim.catalog)
        await producer.send_raw(run_settings.catalog_topic, b"bad-title", b'{"title_id": 5}')
        for i, ev in enumerate(events):
            await producer.send(ev)
            if i % 1500 == 0:
                raw, _ = MALFORMED[(i // 1500) % len(MALFORMED)]
                await producer.send_raw(run_settings.events_topic, b"u000001", raw)
        # A producer not using the client: the envelope's bad event must be dead-lettered.
        await producer.send_raw(
            run_settings.events_topic,
            envelope_user.encode(),
            orjson.dumps({"v": 1, "events": envelope}),
        )
    sent_malformed = [MALFORMED[(i // 1500) % len(MALFORMED)] for i in range(0, N_EVENTS, 1500)]
    records = N_EVENTS + len(sent_malformed) + 1
    await wait_for(
        lambda: worker.metrics().get("reelstream_records_consumed_total", 0) >= records,
        f"the worker to consume {records} records",
        timeout=180,
    )
    return {
        "worker": worker,
        "events": events,
        "malformed": sent_malformed,
        "envelope_user": envelope_user,
        "records": records,
    }


async def test_every_malformed_record_is_dead_lettered_with_its_reason(run_settings, sent):
    expected = len(sent["malformed"]) + 1 + 1  # + the envelope's bad event + the bad title
    dlq = decode_values(await read_topic(run_settings, run_settings.dlq_topic, expected))
    assert len(dlq) == expected
    from_events = [d for d in dlq if d["source"]["topic"] == run_settings.events_topic]
    got = sorted((d["original"], d["reason"]) for d in from_events if d["index"] is None)
    want = sorted((raw.decode(), reason) for raw, reason in sent["malformed"])
    assert got == want
    env_rej = [d for d in from_events if d["index"] is not None]
    assert [(d["index"], d["reason"]) for d in env_rej] == [(1, "bad_timestamp")]
    assert "env-bad" in env_rej[0]["original"]
    catalog_rej = [d for d in dlq if d["source"]["topic"] == run_settings.catalog_topic]
    assert [d["reason"] for d in catalog_rej] == ["bad_title"]
    assert all(d["rejected_at"] > 0 and d["detail"] for d in dlq)


async def test_no_valid_event_is_dropped(sent):
    stats = sent["worker"].metrics()
    assert stats["reelstream_events_consumed_total"] == N_EVENTS + 2  # + two good in envelope
    assert stats["reelstream_events_rejected_total"] == len(sent["malformed"]) + 2


async def test_scores_for_active_users_reach_topic_and_redis(run_settings, sent):
    refreshing = {
        e["user_id"]
        for e in sent["events"]
        if e["event_type"] in ("play", "complete", "stop", "click", "thumbs", "intro_skip")
    }
    records = await read_topic(run_settings, run_settings.scores_topic)
    by_user = {r.key.decode(): orjson.loads(r.value) for r in records}
    assert refreshing <= set(by_user)
    sample = by_user[sorted(refreshing)[0]]
    assert sample["items"] and sample["model_version"] and sample["event_ts"] > 0
    assert [i["rank"] for i in sample["items"]] == list(range(1, len(sample["items"]) + 1))
    r = redis.Redis.from_url(run_settings.redis_url)
    missing = [u for u in refreshing if not r.exists(recs_key(run_settings.key_prefix, u))]
    assert missing == []
    stored = orjson.loads(r.get(recs_key(run_settings.key_prefix, sent["envelope_user"])))
    assert stored["user_id"] == sent["envelope_user"]
    assert (
        0
        < r.ttl(recs_key(run_settings.key_prefix, sent["envelope_user"]))
        <= run_settings.score_ttl_s
    )


async def test_top10_leans_to_planted_taste_more_than_popularity(run_settings, sim, sent):
    truth = sim.ground_truth()["users"]
    titles = {rec["title_id"]: parse_title(rec) for rec in sim.catalog}
    plays: dict[str, int] = {}
    counts: dict[str, int] = {}
    for e in sent["events"]:
        counts[e["user_id"]] = counts.get(e["user_id"], 0) + 1
        if e["event_type"] == "play":
            plays[e["title_id"]] = plays.get(e["title_id"], 0) + 1
    popular = sorted(plays, key=lambda t: -plays[t])[:10]
    strong = [u for u, n in counts.items() if n >= 60]
    assert len(strong) >= 20
    r = redis.Redis.from_url(run_settings.redis_url)

    def overlap(user: str, tids: list[str]) -> float:
        fav = set(truth[user]["favorite_tags"])
        return sum(len(fav & set(titles[t].tag_keys)) for t in tids) / len(tids)

    ours, base = [], []
    for u in strong:
        msg = orjson.loads(r.get(recs_key(run_settings.key_prefix, u)))
        ours.append(overlap(u, [i["title_id"] for i in msg["items"][:10]]))
        base.append(overlap(u, popular))
    # The blend's prior is chosen on real logs' first halves (content weight 1.0, the play
    # sequence leading; docs/models.md): tag matching counts less than when the simulator
    # tuned it, so this checks that the live pipeline personalises toward planted tastes
    # (1.17x measured), and quality itself is judged by the replay beside its baselines.
    assert sum(ours) / len(ours) > 1.1 * sum(base) / len(base)
