"""Exact expected features for integration tests: the pure core run once, uninterrupted,
and the checks of a worker's Redis output and dead letters against it."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaConsumer

from features.event_gate import ALLOWED_LATENESS_MS, MAX_FUTURE_MS
from features.title_stats import TitleStats
from features.title_view import GlobalTitleView
from online_models.engine import Engine
from streams.adapters.redis_keys import features_key, title_key, trending_key
from streams.adapters.redis_values import TrendingList, title_stats_fields, user_features_fields
from streams.contract import decode_record
from streams.settings import Settings
from streams.tools.synthetic import Simulation


def stream_with_faults(sim: Simulation, n: int) -> tuple[list[dict[str, Any]], dict[str, set]]:
    """Synthetic events with duplicates, too-late and from-future events mixed in."""
    now = int(time.time() * 1000)
    out: list[dict[str, Any]] = []
    high: dict[str, int] = {}
    faults: dict[str, set] = {"duplicate": set(), "too_late": set(), "from_future": set()}
    for i, ev in enumerate(sim.events(limit=n)):
        out.append(ev)
        uid = ev["user_id"]
        high[uid] = max(high.get(uid, 0), ev["ts"])
        if i % 53 == 7:
            out.append(dict(ev))  # the same event_id again
            faults["duplicate"].add(ev["event_id"])
        if i % 401 == 100:
            late = {**ev, "event_id": f"late-{i}", "event_type": "play", "position_s": 0}
            late["ts"] = high[uid] - ALLOWED_LATENESS_MS - 60_000
            out.append(late)
            faults["too_late"].add(late["event_id"])
        if i % 401 == 200:
            fut = {**ev, "event_id": f"future-{i}", "event_type": "play", "position_s": 0}
            fut["ts"] = now + MAX_FUTURE_MS + 3_600_000
            out.append(fut)
            faults["from_future"].add(fut["event_id"])
    return out, faults


def expected(sim: Simulation, sent: list[dict[str, Any]]) -> dict[str, Any]:
    eng = Engine(catalog=sim.title_catalog())
    titles: dict[str, TitleStats] = {}
    now = int(time.time() * 1000)
    for ev in sent:
        res = eng.ingest(ev, now)
        if res.title_record is not None:
            titles.setdefault(ev["title_id"], TitleStats()).update(res.title_record)
    view = GlobalTitleView()
    for tid, s in titles.items():
        view.apply(tid, s.snapshot())
    return {
        # The hashes as the worker's writer spells them (streams/adapters/redis_values.py).
        "users": {u: user_features_fields(p) for u, p in eng.profiles.items()},
        "titles": {t: title_stats_fields(s) for t, s in titles.items()},
        "trending_all_1d": [[t, c] for t, c in view.trending("ALL", "1d", 20)],
        "as_of": view.high_water,
    }


def read_redis(settings: Settings, truth: dict[str, Any]) -> dict[str, Any]:
    r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    p = settings.key_prefix
    pipe = r.pipeline(transaction=False)
    for t in truth["titles"]:
        pipe.hgetall(title_key(p, t))
    titles = dict(zip(truth["titles"], pipe.execute(), strict=True))
    for u in truth["users"]:
        pipe.hgetall(features_key(p, u))
    users = dict(zip(truth["users"], pipe.execute(), strict=True))
    raw = r.get(trending_key(p, "ALL", "1d"))
    trending = TrendingList.decode(raw.encode()) if raw else None
    return {"titles": titles, "users": users, "trending": trending}


def plays_total(state: dict[str, Any]) -> int:
    return sum(int(h.get("plays", 0)) for h in state["titles"].values())


def differing(settings: Settings, truth: dict[str, Any]) -> dict[str, tuple[dict, dict]]:
    """user -> (Redis feature hash, expected) for every user whose hash differs."""
    want = truth["users"]
    got = read_redis(settings, truth)["users"]
    return {u: (f, want[u]) for u, f in got.items() if f != want[u]}


def caught_up(settings: Settings, truth: dict[str, Any]) -> bool:
    """Every play counted on the title side and every user's features as expected."""
    got = read_redis(settings, truth)
    return plays_total(got) >= plays_total(truth) and got["users"] == truth["users"]


async def consumer_positions(settings: Settings) -> dict[str, dict[int, tuple[int, int]]]:
    """topic -> partition -> (committed offset of the worker group, end offset), for the
    events and title-events topics: where a worker that does not catch up stands."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    kwargs = settings.kafka_client_kwargs()
    admin = AIOKafkaAdminClient(**kwargs)
    consumer = AIOKafkaConsumer(**kwargs)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.app_id)
        out: dict[str, dict[int, tuple[int, int]]] = {}
        for topic in (settings.events_topic, settings.title_events_topic):
            tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
            ends = await consumer.end_offsets(tps)
            out[topic] = {
                tp.partition: (committed[tp].offset if tp in committed else -1, ends[tp])
                for tp in tps
            }
        return out
    finally:
        await consumer.stop()
        await admin.close()


def _row_key(raw: bytes) -> str:
    """A profile row's key as the worker's table writes it: the user id, JSON-quoted."""
    text = raw.decode(errors="replace")
    if text.startswith('"'):
        with contextlib.suppress(orjson.JSONDecodeError):
            return str(orjson.loads(raw))
    return text


async def _truth_watch_at(settings: Settings, users: list[str]) -> dict[str, list]:
    """Per user, each of its records in the events topic with the watch seconds an
    uninterrupted run has after it: beside the changelog's row versions (``_src``,
    ``watch_s``), the first row that departs from it shows where a difference began."""
    from tests.integration.conftest import read_topic

    records = await read_topic(settings, settings.events_topic)
    engine, now_ms = Engine(), int(time.time() * 1000)
    out: dict[str, list] = {u: [] for u in users}
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        user = _row_key(rec.key) if rec.key is not None else None
        if user not in out:
            continue
        decoded, _ = decode_record(rec.value)
        for ev in decoded:
            engine.ingest(ev, now_ms)
            watch = engine.profile(user).features.watch_s
            out[user].append((rec.partition, rec.offset, ev["event_type"], round(watch, 1)))
    return out


async def catch_up_report(settings: Settings, truth: dict[str, Any], worker: Any = None) -> str:
    """What a run that did not catch up looks like: plays, users that differ, offsets, and
    the worker's counters and log tail."""
    got = read_redis(settings, truth)
    diff = differing(settings, truth)
    lines = [
        f"plays {plays_total(got)}/{plays_total(truth)}; {len(diff)} users differ, e.g. "
        f"{dict(list(diff.items())[:2])}",
        f"committed/end offsets: {await consumer_positions(settings)}",
    ]
    if diff:
        from tests.integration.conftest import read_topic

        changelog = await read_topic(settings, f"{settings.app_id}-user-profiles-changelog")
        watch_at = await _truth_watch_at(settings, list(diff)[:2])
        for user in list(diff)[:2]:
            lines.append(
                f"{user}: (offset, event type, watch_s after it in an uninterrupted run): "
                f"{watch_at.get(user)}"
            )
            versions = []
            for rec in changelog:
                if rec.key is None or _row_key(rec.key) != user:
                    continue
                try:
                    row = orjson.loads(rec.value) if rec.value is not None else None
                except orjson.JSONDecodeError:
                    row = {"raw": rec.value[:40]}
                if row is None:
                    versions.append((rec.partition, rec.offset, "tombstone"))
                else:
                    f = row.get("features", row)
                    versions.append(
                        (
                            rec.partition,
                            rec.offset,
                            row.get("_src"),
                            f.get("plays"),
                            f.get("watch_s"),
                            row.get("last_ts"),
                            row.get("_base_gen"),
                            len((row.get("gate") or [0, []])[1]),
                        )
                    )
            lines.append(
                f"{user}: changelog (partition, offset, _src, plays, watch_s, last_ts, base, "
                f"gate ids): {versions}"
            )
    if worker is not None and worker.proc.poll() is None:
        wanted = ("records_consumed", "consumer_lag", "stalled", "title_records", "ready")
        metrics = {k: v for k, v in worker.metrics().items() if any(w in k for w in wanted)}
        lines += [f"worker metrics: {metrics}", f"worker log:\n{worker.tail(15)}"]
    return "\n".join(lines)


async def wait_until_exact(
    settings: Settings,
    truth: dict[str, Any],
    what: str,
    timeout: float = 180.0,
    worker: Any = None,
) -> None:
    """Wait for :func:`caught_up`; fail with :func:`catch_up_report` (plays, users that
    differ, offsets of both topics and, given the worker, its counters and log tail)."""
    from tests.integration.conftest import wait_for

    try:
        await wait_for(lambda: caught_up(settings, truth), what, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{what}:\n{await catch_up_report(settings, truth, worker)}") from None


async def catch_up_restarting_stalls(
    settings: Settings,
    truth: dict[str, Any],
    worker: Any,
    restart: Any,
    stalls: list[dict[str, Any]],
    what: str,
    timeout: float = 180.0,
    restarts: int = 2,
) -> Any:
    """Wait until :func:`caught_up`, restarting the worker when its stall watch reports it
    (its /healthz fails, and a liveness probe restarts it: nothing is lost). Each restart is
    recorded in ``stalls``, which the no-stall tests assert empty; the callers'
    exactness tests check that nothing is lost or counted twice even then. Returns the worker
    that caught up."""
    from tests.integration.conftest import wait_for

    stalled = "reelstream_consumer_stalled_partitions"
    for attempt in range(restarts + 1):
        try:
            await wait_for(
                lambda w=worker: caught_up(settings, truth) or w.metrics().get(stalled, 0) > 0,
                f"{what}, or the stall watch reporting the worker",
                timeout=timeout,
            )
        except AssertionError as exc:
            report = await catch_up_report(settings, truth, worker)
            raise AssertionError(f"{exc}\n{report}") from None
        if caught_up(settings, truth) or attempt == restarts:
            break
        stalls.append({"kill": "last", "log": worker.tail(40)})
        worker.proc.kill()
        worker.proc.wait()
        worker = restart()
    await wait_until_exact(settings, truth, what, worker=worker)
    return worker


async def dead_letters_by_reason(settings: Settings, faults: dict[str, set]) -> dict[str, set]:
    """reason -> event ids of the dead letters on the DLQ (read until the faults' count)."""
    import orjson

    from tests.integration.conftest import decode_values, read_topic

    want = len(faults["too_late"]) + len(faults["from_future"])
    by_reason: dict[str, set] = {}
    for d in decode_values(await read_topic(settings, settings.dlq_topic, want)):
        by_reason.setdefault(d["reason"], set()).add(orjson.loads(d["original"])["event_id"])
    return by_reason


def assert_title_stats_exact(
    settings: Settings, truth: dict[str, Any], events: list[dict[str, Any]], faults: dict[str, set]
) -> None:
    """Every title's statistics in Redis equal the uninterrupted run's, and each play sent
    counts once: duplicates once, too-late and from-future plays not at all."""
    got = read_redis(settings, truth)
    assert got["titles"] == truth["titles"]
    plays = {e["event_id"] for e in events if e["event_type"] == "play"}
    rejected = faults["too_late"] | faults["from_future"]
    assert plays_total(got) == len(plays - rejected)


def assert_user_features_exact(settings: Settings, truth: dict[str, Any]) -> None:
    """Every user's feature hash in Redis equals the uninterrupted run's (and some users
    played enough that equality says something)."""
    got = read_redis(settings, truth)["users"]
    assert got == truth["users"]
    assert any(int(f["plays"]) > 3 for f in got.values())


async def assert_rejects_dead_lettered(settings: Settings, faults: dict[str, set]) -> None:
    """The too-late and from-future events, and only they, are on the dead-letter topic
    with their reason (a set per reason: a replayed dead letter counts once)."""
    by_reason = await dead_letters_by_reason(settings, faults)
    assert by_reason == {"too_late": faults["too_late"], "from_future": faults["from_future"]}
