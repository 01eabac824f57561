"""Pure parts of the benchmark and the producer-side envelope batching (no broker needed)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from streams.adapters.scrape import histogram_share
from streams.contract import MAX_EVENTS_PER_ENVELOPE, decode_record
from streams.tools.bench import format_table, percentile, run_stoppable
from streams.tools.synthetic import SimConfig, Simulation
from streams.tools.traffic import envelopes


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return list(Simulation(SimConfig(users=40, titles=30, seed=5)).events(limit=3000))


def test_envelopes_keep_every_event_once_and_each_users_order(events):
    groups = list(envelopes(events, 8))
    flat = [e["event_id"] for g in groups for e in g]
    assert sorted(flat) == sorted(e["event_id"] for e in events)
    for uid in {e["user_id"] for e in events}:
        sent = [e["event_id"] for g in groups for e in g if e["user_id"] == uid]
        assert sent == [e["event_id"] for e in events if e["user_id"] == uid]


def test_envelopes_hold_one_session_of_one_user_within_the_cap(events):
    groups = list(envelopes(events, 8))
    assert all(1 <= len(g) <= 8 for g in groups)
    assert all(len({(e["user_id"], e.get("session_id")) for e in g}) == 1 for g in groups)
    assert len(groups) < len(events) / 2  # sessions are long enough to batch


def test_an_envelope_record_decodes_to_its_events(events):
    import orjson

    group = next(g for g in envelopes(events, 8) if len(g) > 1)
    decoded, rejects = decode_record(orjson.dumps({"v": 1, "events": group}))
    assert rejects == [] and decoded == group


@pytest.mark.parametrize("cap", [0, MAX_EVENTS_PER_ENVELOPE + 1])
def test_envelope_cap_outside_the_contract_is_refused(events, cap):
    with pytest.raises(ValueError):
        list(envelopes(events, cap))


def test_percentile_and_histogram_share():
    values = [float(v) for v in range(1, 1001)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        500.0,
        990.0,
        1000.0,
    )
    before = {"0.1": 10, "0.5": 10, "+Inf": 10}
    after = {"0.1": 60, "0.5": 100, "+Inf": 110}
    assert histogram_share(before, after) == {"0.1": 0.5, "0.5": 0.9, "+Inf": 1.0}
    assert histogram_share(after, after) == {}


def test_table_shows_every_measured_figure():
    worker = {"events": 100.0, "share": 1.0, "peak_rss_mb": 120.0}
    stats = {"p50_ms": 40.0, "p99_ms": 90.0, "max_ms": 120.0}
    result = {
        "run": "bench-x",
        "started_at": "now",
        "machine": {"cpus": 2, "loadavg": [1.0], "loadavg_end": [1.2], "faust": "0.15"}
        | {"faust_cython_streams": True},
        "config": {"envelope": 16, "partitions": 4, "users": 2000},
        "load": {"events": 1000, "records": 200, "events_per_s": 50_000},
        "bare_read": {"records_per_s": 250_000},
        "bare_decode": {"events_per_s": 200_000},
        "one_worker": {
            "events_per_s": 12_345,
            "ratio_to_bare": 0.0617,
            "cpu_s_per_1k_events": 0.05,
            "workers": [worker],
        },
        "freshness": {
            "offered_events_per_s": 6000,
            "seconds": 20,
            "score_messages": 900,
            "event_to_score_topic": stats,
            "event_to_batch_start": stats,
            "worker_redis_written_within": {"0.1s": 0.99},
            "cpu_s_per_1k_events": 0.07,
            "warmup_seconds": 10,
            "warmup_event_to_score_topic": {"p50_ms": 70.0, "p99_ms": 612.0, "max_ms": 700.0},
            "offer_gaps_ms": [150, 2030],
            "bench_full_gc_ms": [2059],
        },
        "two_workers": {
            "events_per_s": 20_000,
            "scaling": 1.62,
            "cpu_s_per_1k_events": 0.06,
            "workers": [worker, worker],
        },
    }
    table = format_table(result)
    for text in (
        "12,345 events/s",
        "6.2%",
        "envelopes of <= 16",
        "p99 90 ms",
        "x1.62",
        "0.1s 99.0%",
        "warm-up before (10s, not counted)",
        "p99 612 ms",
        "offering held > 100 ms",
        "2 times, longest 2,030 ms",
        "bench's own full GC",
        "1, longest 2,059 ms",
    ):
        assert text in table


def test_sweep_table_has_one_row_per_size_with_the_rate_against_the_smallest():
    from streams.tools.bench_sweep import TARGETS, format_sweep

    def row(titles: int, rate: float, p99: float, error: str | None = None) -> dict:
        engine = {
            "ingest_cpu_us_per_event": titles / 100,
            "refresh_ms_median": 0.5,
            "refresh_ms_p99": 1.75,
            "catalog_change_ms_median": 0.25,
            "catalog_change_ms_p99": 4.5,
        }
        pipeline = {
            "one_worker": {"events_per_s": rate},
            "bare_decode": {"events_per_s": 200_000},
            "freshness": {"event_to_score_topic": {"p50_ms": 60.0, "p99_ms": p99}},
        }
        if error:
            pipeline = {"error": error}
        return {"titles": titles, "engine": engine, "pipeline": pipeline}

    table = format_sweep(
        {
            "sizes": [
                row(400, 4000, 180),
                row(50_000, 3000, 420),
                row(100_000, 0, 0, "worker stalled\nmore"),
            ],
            "targets": TARGETS,
        }
    )
    lines = table.splitlines()
    assert len(lines) == 5  # header, three sizes, targets
    assert "50,000" in lines[2] and "500.0" in lines[2] and "(0.75)" in lines[2]
    assert "1.75" in lines[2] and "4.50" in lines[2] and "420" in lines[2]
    assert "STOPPED: worker stalled" in lines[3] and "more" not in lines[3]
    assert "ingest <= 60 us/event" in lines[4]


def test_exchange_bench_reads_the_snapshots_and_its_shards_records():
    from streams.tools.bench_exchange import run

    two = run(titles=30, workers=2, events=600, every=200, users=60, partitions=4)
    four = run(titles=30, workers=4, events=600, every=200, users=60, partitions=4)
    assert two["rounds"] == four["rounds"] == 3
    for r in (two, four):
        x = r["last_round"]
        assert x["bytes_published"] > 0 and x["merge_cpu_ms"] >= 0 and x["aggregate_cpu_ms"] >= 0
        # every shard's snapshot, plus the records of the shards the worker aggregates
        assert (
            x["snapshot_bytes"] < x["bytes_read"] < x["snapshot_bytes"] + 4 * x["bytes_published"]
        )
    # reading does not grow with the workers: the snapshots are the catalog's, not theirs
    assert four["last_round"]["bytes_read"] < 1.1 * two["last_round"]["bytes_read"]


def test_sigterm_cancels_a_run_and_its_cleanup_still_runs() -> None:
    """A bench or soak stopped with SIGTERM must stop its worker subprocesses."""
    before = signal.getsignal(signal.SIGTERM)
    cleaned: list[str] = []

    async def run() -> None:
        try:
            asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)
            await asyncio.Event().wait()
        finally:
            cleaned.append("workers stopped")

    with pytest.raises(asyncio.CancelledError):
        run_stoppable(run())
    assert cleaned == ["workers stopped"]
    assert signal.getsignal(signal.SIGTERM) == before
