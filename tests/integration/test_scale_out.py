"""Scale-out on the real broker and Redis: workers in one consumer group, a join and a leave.

Two workers share the partitions; a third joins while events flow and one of
the first two leaves (graceful shutdown, as in a rolling deploy) while events
still flow. Afterwards every user's profile (read back from the table's
changelog topic, the durable copy a new owner recovers from) is compared with
the exact count of events sent for that user: none may be folded in twice (the
partition's next owner replays what was not yet committed; the event gate drops
those by ``event_id``), and every user with a refreshing event has scores in
Redis.

No event is lost: a batch's offsets stay uncommitted until its profiles are
persisted (streams/worker/app.py), so a worker stopped mid-batch leaves them to the
next owner, whose event-id gate drops what was already counted.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import orjson
import pytest
import redis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError

from streams.adapters.producer import EventProducer
from streams.adapters.redis_keys import recs_key
from streams.settings import Settings
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import (
    delete_run_topics,
    free_port,
    read_topic,
    seek_and_gap_lines,
    send_paced,
    wait_for,
)

pytestmark = pytest.mark.integration

CHUNK = 2_000
REFRESHING = {"play", "complete", "stop", "click", "thumbs", "intro_skip"}


async def group_members(settings: Settings) -> tuple[str, int]:
    """(state, member count) of the workers' consumer group (the Faust app id); ("", 0)
    while the broker has no coordinator for it yet (a fresh broker creates its offsets
    topic at the first group)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        try:
            (resp,) = await admin.describe_consumer_groups([settings.app_id])
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            return "", 0
        _err, _group, state, _ptype, _proto, members, *_ = resp.groups[0]
        return state, len(members)
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def run_topics_deleted(run_settings: Settings):
    """Faust's changelog, assignor and title topics are named after the app id: drop them too."""
    yield
    asyncio.run(delete_run_topics(run_settings))


@pytest.fixture(scope="module")
async def scale_run(run_settings, start_worker, tmp_path_factory, run_topics_deleted):
    sim = Simulation(SimConfig(users=120, titles=100, seed=31))
    events = list(sim.events(limit=3 * CHUNK))
    data = Path(tmp_path_factory.mktemp("scale-data"))

    def worker(name: str):
        return start_worker(
            REELSTREAM_DATA_DIR=str(data / name),
            REELSTREAM_WEB_PORT=str(free_port()),
            REELSTREAM_LOG_LEVEL="INFO",  # the seeks and gaps a loss's detail quotes
        )

    async with EventProducer(run_settings) as producer:
        await producer.send_titles(sim.catalog)
    a, b = worker("a"), worker("b")

    async def two_members() -> bool:
        return await group_members(run_settings) == ("Stable", 2)

    await wait_for(two_members, "two workers to form one stable group", timeout=60)
    await wait_for(
        # The lag gauge has samples only for partitions assigned to the worker.
        lambda: all("reelstream_consumer_lag_records" in w.metrics() for w in (a, b)),
        "both workers to hold partitions",
        timeout=60,
    )

    # Phase 1: a stable group of two.
    async with EventProducer(run_settings) as producer:
        for ev in events[:CHUNK]:
            await producer.send(ev)

    def total(*ws) -> float:
        return sum(w.metrics().get("reelstream_events_consumed_total", 0.0) for w in ws)

    try:
        await wait_for(lambda: total(a, b) >= CHUNK, f"{CHUNK} events processed by two workers")
    except AssertionError as exc:
        lag = [w.metrics().get("reelstream_consumer_lag_records") for w in (a, b)]
        raise AssertionError(f"{exc}: processed {total(a, b):.0f}, consumer lag {lag}") from exc
    phase1 = {
        "a": a.metrics()["reelstream_events_consumed_total"],
        "b": b.metrics()["reelstream_events_consumed_total"],
    }

    # Phase 2: c joins while events flow; then a leaves while events flow.
    sent = [0]
    c_joined = asyncio.Event()

    async def feed() -> None:
        async with EventProducer(run_settings) as producer:
            await send_paced(producer, events[CHUNK : 2 * CHUNK], sent)
            await c_joined.wait()
            await send_paced(producer, events[2 * CHUNK :], sent)

    feeder = asyncio.create_task(feed())
    await wait_for(lambda: sent[0] >= CHUNK // 4 or feeder.done(), "the second chunk to start")
    c = worker("c")

    async def three_members() -> bool:
        return await group_members(run_settings) == ("Stable", 3)

    await wait_for(three_members, "the third worker to join the group", timeout=60)
    c_joined.set()
    await wait_for(
        lambda: sent[0] >= CHUNK + CHUNK // 4 or feeder.done(), "the third chunk to start"
    )
    leave_during_stream = not feeder.done()
    a_before_leaving = total(a)
    a.stop()
    await feeder

    sent_per_user: dict[str, int] = {}
    for ev in events:
        sent_per_user[ev["user_id"]] = sent_per_user.get(ev["user_id"], 0) + 1
    changelog_topic = f"{run_settings.app_id}-user-profiles-changelog"
    profiles: dict[str, dict] = {}
    peak: dict[str, int] = {}  # the highest count any changelog record of the user held

    async def changelog_complete() -> bool:
        # The survivors are done when every user's profile holds all of its events.
        profiles.clear()
        peak.clear()
        for rec in await read_topic(run_settings, changelog_topic, timeout=10):
            if rec.value is not None:
                uid, doc = orjson.loads(rec.key), orjson.loads(rec.value)  # keys are JSON too
                profiles[uid] = doc
                peak[uid] = max(peak.get(uid, 0), doc["events"])
        counted = {u: d["events"] for u, d in profiles.items()}
        return all(counted.get(u, 0) >= n for u, n in sent_per_user.items())

    with contextlib.suppress(AssertionError):  # judged, with details, by the tests below
        await wait_for(changelog_complete, "every profile to reach the changelog", timeout=120)
    survivors = {"b": total(b), "c": total(c)}
    b.stop()
    c.stop()
    offsets: dict[str, list[tuple[int, int]]] = {}  # user -> (partition, offset) of its events
    for rec in await read_topic(run_settings, run_settings.events_topic, timeout=10):
        offsets.setdefault(rec.key.decode(), []).append((rec.partition, rec.offset))
    # A loss can be a rejection (a handover that reordered a user's records past the
    # lateness bound dead-letters the earlier one as too late): what the DLQ holds.
    rejects: dict[str, list[str]] = {}
    for rec in await read_topic(run_settings, run_settings.dlq_topic, timeout=5):
        doc = orjson.loads(rec.value)
        uid = rec.key.decode() if rec.key else "?"
        src = doc.get("source") or {}
        where = f"{src.get('partition')}:{src.get('offset')}"
        rejects.setdefault(uid, []).append(f"{doc.get('reason')} @{where} {doc.get('detail')}")
    return {
        "rejects": rejects,
        "offsets": offsets,
        "logs": [w.log_path for w in (a, b, c)],
        "events": events,
        "phase1": phase1,
        "leave_during_stream": leave_during_stream,
        "a_before_leaving": a_before_leaving,
        "survivors": survivors,
        "sent_per_user": sent_per_user,
        "profiles": profiles,
        "peak": peak,
    }


def test_two_workers_share_the_partitions_without_overlap(scale_run):
    p1 = scale_run["phase1"]
    assert p1["a"] > 0 and p1["b"] > 0, p1
    assert p1["a"] + p1["b"] == CHUNK  # nothing processed twice while the group is stable


def test_join_and_leave_happen_mid_stream_and_all_workers_take_part(scale_run):
    assert scale_run["leave_during_stream"]
    assert scale_run["survivors"]["c"] > 0  # the joiner took over partitions
    assert scale_run["survivors"]["b"] > scale_run["phase1"]["b"]  # b kept working through both


def _lost(scale_run) -> dict[str, tuple[int, int, int]]:
    """user -> (sent, last changelog count, highest count ever written) where count < sent.

    A peak at the sent count would mean an older profile was written after a newer
    one; a peak below it means those events never reached any profile write.
    """
    sent, peak = scale_run["sent_per_user"], scale_run["peak"]
    counted = {uid: doc["events"] for uid, doc in scale_run["profiles"].items()}
    return {
        u: (n, counted.get(u, 0), peak.get(u, 0)) for u, n in sent.items() if counted.get(u, 0) < n
    }


def test_no_event_is_lost_in_the_handovers(scale_run):
    lost = _lost(scale_run)
    missing = sorted(set(scale_run["sent_per_user"]) - set(scale_run["profiles"]))
    detail = ""
    if lost or missing:  # what a report of the failure needs
        where = {u: scale_run["offsets"].get(u, [])[-12:] for u in [*lost, *missing[:3]]}
        said = seek_and_gap_lines(scale_run["logs"])
        detail = (
            f"scale-out loss (sent, counted, peak): {lost}; no row: {missing[:10]}; "
            f"their dead letters: { {u: scale_run['rejects'].get(u) for u in lost} }; "
            f"their last (partition, offset)s: {where}; the workers' seeks and gaps: {said}"
        )
    assert set(scale_run["profiles"]) == set(scale_run["sent_per_user"]), detail
    assert lost == {}, detail


def test_no_event_is_counted_twice_after_the_handovers(scale_run):
    """Events a worker folded in after its last offset commit are replayed by the next owner
    of the partition; the per-user event gate drops them by ``event_id``, so no profile
    counts an event twice."""
    sent = scale_run["sent_per_user"]
    counted = {uid: doc["events"] for uid, doc in scale_run["profiles"].items()}
    doubled = {u: (n, counted[u]) for u, n in sent.items() if counted.get(u, 0) > n}
    assert doubled == {}


def test_every_refreshing_user_has_scores_in_redis(run_settings, scale_run):
    users = sorted({e["user_id"] for e in scale_run["events"] if e["event_type"] in REFRESHING})
    r = redis.Redis.from_url(run_settings.redis_url)
    keys = [recs_key(run_settings.key_prefix, u) for u in users]
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    missing = [u for u, found in zip(users, pipe.execute(), strict=True) if not found]
    assert users and missing == []
