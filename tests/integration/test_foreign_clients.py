"""Clients that are not ours, on the real broker: kcat (librdkafka) and a plain Java producer.

Events go in with every compression codec Kafka has, with headers, as single records and
as envelopes; scores come out through kcat and are checked against the score schema,
the W3C ``traceparent`` of each triggering event carried on as header and field.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import jsonschema
import orjson
import pytest

from streams.adapters.producer import EventProducer
from streams.tools.stack import fetch_kafka_jars
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import decode_values, read_topic, wait_for

pytestmark = pytest.mark.integration

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
SCHEMA = Path(__file__).resolve().parents[2] / "streams" / "schemas" / "score-v1.json"
JAVA_PRODUCER = Path(__file__).resolve().parent / "java" / "LineProducer.java"


def trace_id(n: int) -> str:
    return f"00-{n + 1:032x}-{n + 1:016x}-01"


def kcat() -> str:
    exe = shutil.which("kcat")
    if exe is None:
        pytest.fail("kcat is not installed: `make test` installs it (deploy/install-test-tools.sh)")
    return exe


def kcat_produce(broker: str, topic: str, codec: str, lines: list[str], header: str) -> None:
    """``key<TAB>value`` lines through librdkafka with one codec and one header on each."""
    cmd = [kcat(), "-b", broker, "-P", "-t", topic, "-K", "\t", "-z", codec, "-H", header]
    subprocess.run(cmd, input="\n".join(lines) + "\n", text=True, check=True, timeout=60)


def kcat_consume(broker: str, topic: str) -> list[dict]:
    """Every record of a topic as kcat's JSON envelope (key, payload, headers, coordinates)."""
    cmd = [kcat(), "-b", broker, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def viewing(user: str, title: dict, start_ms: int, tag: str) -> list[dict]:
    """A play, a progress and a complete of one title: each refreshes or feeds the user."""
    runtime = float(title["runtime_s"])
    base = {"user_id": user, "title_id": title["title_id"], "duration_s": runtime}
    return [
        {**base, "event_id": f"{tag}-p", "event_type": "play", "ts": start_ms, "position_s": 0},
        {
            **base,
            "event_id": f"{tag}-g",
            "event_type": "progress",
            "ts": start_ms + 1000,
            "position_s": runtime / 2,
        },
        {
            **base,
            "event_id": f"{tag}-c",
            "event_type": "complete",
            "ts": start_ms + 2000,
            "position_s": runtime,
        },
    ]


@pytest.fixture(scope="module")
async def produced(run_settings, start_worker):
    """A worker; the catalog; per codec, one user's events from kcat (single records and an
    envelope) and one user's from the Java producer, each record with a traceparent."""
    sim = Simulation(SimConfig(users=20, titles=40, seed=5))
    worker = start_worker()
    async with EventProducer(run_settings) as producer:
        await producer.send_titles(sim.catalog)
    now = int(time.time() * 1000)
    broker = run_settings.broker
    sent: dict[str, dict] = {}  # user -> what was sent for it
    libs = fetch_kafka_jars()
    for i, codec in enumerate(CODECS):
        titles = sim.catalog[4 * i : 4 * i + 4]
        single_user, envelope_user, java_user = f"kc-{codec}", f"ke-{codec}", f"kj-{codec}"
        singles = viewing(single_user, titles[0], now, f"{codec}-s1") + viewing(
            single_user, titles[1], now + 5000, f"{codec}-s2"
        )
        envelope = viewing(envelope_user, titles[2], now, f"{codec}-e")
        lines = [f"{single_user}\t{orjson.dumps(e).decode()}" for e in singles]
        lines.append(f"{envelope_user}\t{orjson.dumps({'v': 1, 'events': envelope}).decode()}")
        kcat_produce(broker, run_settings.events_topic, codec, lines, f"traceparent={trace_id(i)}")
        java_events = viewing(java_user, titles[3], now, f"{codec}-j")
        java_codec = codec if codec != "none" else "none"
        subprocess.run(
            [
                "java",
                "-cp",
                f"{libs}/*",
                str(JAVA_PRODUCER),
                broker,
                run_settings.events_topic,
                java_codec,
                f"traceparent={trace_id(100 + i)}",
            ],
            input="\n".join(f"{java_user}\t{orjson.dumps(e).decode()}" for e in java_events),
            text=True,
            check=True,
            capture_output=True,
            timeout=120,
        )
        sent[single_user] = {"events": len(singles), "records": len(singles), "trace": trace_id(i)}
        sent[envelope_user] = {"events": len(envelope), "records": 1, "trace": trace_id(i)}
        sent[java_user] = {"events": 3, "records": 3, "trace": trace_id(100 + i)}
    records = sum(s["records"] for s in sent.values())
    await wait_for(
        lambda: worker.metrics().get("reelstream_records_consumed_total", 0) >= records,
        f"the worker to consume {records} records from kcat and Java",
        timeout=180,
    )
    return {"worker": worker, "sent": sent, "records": records}


async def test_every_codec_from_kcat_and_java_is_processed_none_dead_lettered(
    run_settings, produced
):
    stats = produced["worker"].metrics()
    events = sum(s["events"] for s in produced["sent"].values())
    assert stats["reelstream_records_consumed_total"] == produced["records"]
    assert stats["reelstream_events_consumed_total"] == events
    assert stats.get("reelstream_events_rejected_total", 0) == 0
    assert produced["worker"].proc.poll() is None


async def test_scores_read_by_kcat_match_the_schema_and_carry_the_trace(run_settings, produced):
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    sent = produced["sent"]

    def latest_by_user() -> dict[str, dict]:
        latest: dict[str, dict] = {}
        for rec in kcat_consume(run_settings.broker, run_settings.scores_topic):
            latest[rec["key"]] = rec
        return latest if set(sent) <= set(latest) else {}

    latest = await wait_for(latest_by_user, "scores for every kcat and Java user", timeout=60)
    for user, info in sent.items():
        rec = latest[user]
        score = json.loads(rec["payload"])
        validator.validate(score)
        assert score["user_id"] == user == rec["key"]
        assert score["items"], user
        headers = dict(zip(rec["headers"][::2], rec["headers"][1::2], strict=True))
        assert headers["traceparent"] == info["trace"] == score["traceparent"], user


async def test_a_schema_registry_framed_record_gets_its_own_reason(run_settings, produced):
    framed = b"\x00\x00\x00\x00\x2a" + orjson.dumps({"event_id": "x"})
    async with EventProducer(run_settings) as producer:
        await producer.send_raw(run_settings.events_topic, b"kc-framed", framed)
    dlq = decode_values(await read_topic(run_settings, run_settings.dlq_topic, 1))
    assert [d["reason"] for d in dlq] == ["schema_registry_framed"]
    assert "schema id 42" in dlq[0]["detail"]
    assert dlq[0]["source"]["topic"] == run_settings.events_topic
    assert dlq[0]["original"].encode() == framed  # the original bytes, nothing lost
