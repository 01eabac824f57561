"""Batches a worker cannot decode, on the real broker: dead letters, never a crash loop.

The worker runs without the codec library (``cramjam`` hidden from it, as in an image
built without aiokafka's extras). kcat sends lz4, zstd and snappy batches of events and
a zstd batch of catalog records; gzip needs no extra library and must still flow. Every
undecodable record is dead-lettered with its exact coordinates, the offsets move on,
the metric counts them and the worker keeps serving the rest.
"""

from __future__ import annotations

import dataclasses
import json
import time

import orjson
import pytest

from streams.adapters.producer import EventProducer
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import decode_values, read_topic, wait_for
from tests.integration.test_foreign_clients import kcat_consume, kcat_produce, viewing

pytestmark = pytest.mark.integration

HIDE_CODECS = "import sys\nsys.modules['cramjam'] = None  # aiokafka then lacks lz4/snappy/zstd\n"


@pytest.fixture(scope="module")
async def poisoned(run_settings, start_worker, tmp_path_factory):
    site = tmp_path_factory.mktemp("no-codecs")
    (site / "sitecustomize.py").write_text(HIDE_CODECS)
    worker = start_worker(PYTHONPATH=str(site), REELSTREAM_COMPRESSION="gzip")
    sim = Simulation(SimConfig(users=10, titles=20, seed=9))
    async with EventProducer(dataclasses.replace(run_settings, compression="gzip")) as producer:
        await producer.send_titles(sim.catalog)
    now = int(time.time() * 1000)
    broker = run_settings.broker
    bad_records = 0
    for i, codec in enumerate(["lz4", "zstd", "snappy"]):
        events = viewing(f"pz-{codec}", sim.catalog[i], now, f"pz-{codec}")
        lines = [f"pz-{codec}\t{orjson.dumps(e).decode()}" for e in events]
        kcat_produce(broker, run_settings.events_topic, codec, lines, "source=kcat")
        bad_records += len(lines)
    extra_title = {**sim.catalog[0], "title_id": "t-zstd-only", "name": "Only in zstd"}
    kcat_produce(
        broker,
        run_settings.catalog_topic,
        "zstd",
        [f"t-zstd-only\t{orjson.dumps(extra_title).decode()}"],
        "source=kcat",
    )
    good = viewing("pz-gzip", sim.catalog[5], now, "pz-gzip")
    kcat_produce(
        broker,
        run_settings.events_topic,
        "gzip",
        [f"pz-gzip\t{orjson.dumps(e).decode()}" for e in good],
        "source=kcat",
    )
    total = bad_records + len(good)
    await wait_for(
        lambda: worker.metrics().get("reelstream_records_consumed_total", 0) >= total,
        f"the worker to get past {total} records, {bad_records} of them undecodable",
        timeout=180,
    )
    return {"worker": worker, "bad": bad_records, "good": len(good)}


async def test_each_undecodable_record_is_dead_lettered_with_its_coordinates(
    run_settings, poisoned
):
    expected = poisoned["bad"] + 1  # + the catalog record
    dlq = decode_values(await read_topic(run_settings, run_settings.dlq_topic, expected))
    assert len(dlq) == expected
    assert {d["reason"] for d in dlq} == {"unsupported_codec"}
    got = {(d["source"]["topic"], d["source"]["partition"], d["source"]["offset"]) for d in dlq}
    # Where the broker put them, read back by a client that has the codecs.
    events = await read_topic(run_settings, run_settings.events_topic)
    catalog = await read_topic(run_settings, run_settings.catalog_topic)
    want = {(r.topic, r.partition, r.offset) for r in events if r.key != b"pz-gzip"}
    want |= {(r.topic, r.partition, r.offset) for r in catalog if r.key == b"t-zstd-only"}
    assert got == want
    assert all(d["original"] is None and "codec" in d["detail"] for d in dlq)


async def test_the_worker_keeps_going_and_counts_them(run_settings, poisoned):
    worker = poisoned["worker"]
    stats = worker.metrics()
    assert worker.proc.poll() is None  # never crashed
    assert stats["reelstream_dead_letters_total"] == poisoned["bad"] + 1
    assert stats["reelstream_events_consumed_total"] == poisoned["good"]
    scores = {r["key"]: r for r in kcat_consume(run_settings.broker, run_settings.scores_topic)}
    assert "pz-gzip" in scores
    assert json.loads(scores["pz-gzip"]["payload"])["items"]
    assert not any(k.startswith(("pz-lz4", "pz-zstd", "pz-snappy")) for k in scores)
    assert "We experienced a crash" not in worker.tail(400)
