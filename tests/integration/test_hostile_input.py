"""Hostile input at volume on the real broker: every bad record dead-lettered, every good one kept.

A fixed corpus of hostile records (invalid UTF-8, binary, oversized fields, deep nesting,
NaN and Infinity, huge integers, ids with control characters or key separators, far past
and future timestamps, wrong types) is mixed into valid traffic at about 5,000 records/s.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import orjson
import pytest

from streams.adapters.producer import EventProducer
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import decode_values, read_topic, wait_for

pytestmark = pytest.mark.integration

BASE = b'"event_id":"h1","title_id":"t00001","event_type":"play","position_s":0'
HOSTILE: list[tuple[bytes, str]] = [
    (b"\xff\xfe\xfd not utf-8", "invalid_json"),
    (bytes(range(1, 256)), "invalid_json"),
    (b'{"event_id":"' + b"x" * 300_000 + b'"}', "too_large"),
    (b"[" * 5000 + b"]" * 5000, "invalid_json"),
    (b'{"user_id":"u1",' + BASE + b',"ts":NaN}', "invalid_json"),
    (b'{"user_id":"u1",' + BASE + b',"ts":Infinity}', "invalid_json"),
    (b'{"user_id":"u1",' + BASE + b',"ts":123456789012345678901234567890}', "bad_type"),
    (b'{"user_id":"u\\u0000x",' + BASE + b',"ts":1767571200000}', "bad_id"),
    (b'{"user_id":"u1\\r\\nSET x",' + BASE + b',"ts":1767571200000}', "bad_id"),
    (b'{"user_id":"{u1}*",' + BASE + b',"ts":1767571200000}', "bad_id"),
    (b'{"user_id":"../../etc",' + BASE + b',"ts":1767571200000}', "bad_id"),
    (b'{"user_id":"u1",' + BASE + b',"ts":0}', "bad_timestamp"),
    (b'{"user_id":"u1",' + BASE + b',"ts":9000000000000000}', "bad_timestamp"),
    (b'{"user_id":123,' + BASE + b',"ts":1767571200000}', "bad_id"),
    (
        b'{"user_id":"u1","event_id":"h2","title_id":"t1","event_type":null,"ts":1767571200000}',
        "unknown_event_type",
    ),
    (
        b'{"user_id":"u1","event_id":"h3","title_id":"t1","event_type":"stop",'
        b'"position_s":"12","ts":1767571200000}',
        "bad_type",
    ),
    (b'"just a string"', "not_an_object"),
    (b'{"v":1,"events":' + orjson.dumps([{"event_id": "e"}] * 600) + b"}", "bad_envelope"),
    (b"\x00\x00\x00\x01\x00{}", "schema_registry_framed"),
    (b"", "empty_record"),
]
REPEATS = 150  # 20 kinds x 150 = 3,000 hostile records
VALID = 15_000
RATE = 5_000  # records per second


@pytest.fixture(scope="module")
async def storm(run_settings, start_worker):
    worker = start_worker()
    sim = Simulation(SimConfig(users=300, titles=120, seed=31))
    events = list(sim.events(limit=VALID))
    hostile = [h for _ in range(REPEATS) for h in HOSTILE]
    every = len(events) // len(hostile)
    started = time.monotonic()
    async with EventProducer(run_settings) as producer:
        await producer.send_titles(sim.catalog)
        sent = 0
        for i, ev in enumerate(events):
            await producer.send(ev)
            sent += 1
            if i % every == 0 and i // every < len(hostile):
                raw, _ = hostile[i // every]
                await producer.send_raw(run_settings.events_topic, b"u000001", raw)
                sent += 1
            if sent % 500 == 0:  # pace the load at RATE records per second
                ahead = sent / RATE - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    n_hostile = min(len(hostile), len(range(0, len(events), every)))
    total = VALID + n_hostile
    await wait_for(
        lambda: worker.metrics().get("reelstream_records_consumed_total", 0) >= total,
        f"the worker to get through {total} records",
        timeout=240,
    )
    return {"worker": worker, "hostile": hostile[:n_hostile], "total": total}


async def test_every_hostile_record_is_dead_lettered_with_its_reason(run_settings, storm):
    expected = Counter(reason for _, reason in storm["hostile"])
    dlq = decode_values(
        await read_topic(run_settings, run_settings.dlq_topic, len(storm["hostile"]))
    )
    assert Counter(d["reason"] for d in dlq) == expected
    assert all(d["source"]["topic"] == run_settings.events_topic for d in dlq)


async def test_every_valid_neighbour_is_processed_and_the_worker_never_restarts(storm):
    worker = storm["worker"]
    stats = worker.metrics()
    assert worker.proc.poll() is None
    assert stats["reelstream_records_consumed_total"] == storm["total"]
    assert stats["reelstream_events_consumed_total"] == VALID
    assert stats["reelstream_events_rejected_total"] == len(storm["hostile"])
    assert "We experienced a crash" not in worker.tail(2000)
