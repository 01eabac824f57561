"""A second worker joining and leaving every 15 s for two minutes under load.

Worker ``a`` runs throughout; worker ``b`` starts, runs 15 s, is stopped with
SIGTERM (a rolling deploy's stop), stays away 15 s, and starts again, for two
minutes while a paced stream (with duplicates, too-late and from-future events)
flows. Afterwards every user's feature hash and every title's statistics in Redis
equal an uninterrupted in-process run of the same events, and every SIGTERM
drained and exited within the documented bound (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from streams.adapters.producer import EventProducer
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import (
    free_port,
    seconds_until,
    seek_and_gap_lines,
    send_paced,
    wait_for,
)
from tests.integration.feature_truth import (
    catch_up_report,
    caught_up,
    differing,
    expected,
    read_redis,
    stream_with_faults,
)

# Two minutes of churn, then the catch-up: more than the suite's default 300 s per test.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(480)]

PERIOD_S = 15.0
DURATION_S = 120.0
RATE_PER_S = 150.0
# docs/operations.md, "Stopping a worker": SIGTERM finishes the batch in flight, writes a
# final checkpoint, leaves the group and exits within this many seconds.
SIGTERM_BOUND_S = 15.0


@pytest.fixture(scope="module")
async def churn_run(run_settings, start_worker, tmp_path_factory):
    sim = Simulation(SimConfig(users=150, titles=100, seed=41))
    events, _ = stream_with_faults(sim, int(DURATION_S * RATE_PER_S))
    truth = expected(sim, events)
    data = Path(tmp_path_factory.mktemp("churn-data"))

    logs: list[Path] = []

    def worker(name: str):
        w = start_worker(
            REELSTREAM_DATA_DIR=str(data / name),
            REELSTREAM_WEB_PORT=str(free_port()),
            REELSTREAM_STALL_S="20",
            REELSTREAM_LOG_LEVEL="INFO",  # the seeks and gaps a difference's report quotes
        )
        logs.append(w.log_path)
        return w

    async with EventProducer(run_settings, validate=False) as producer:
        await producer.send_titles(sim.catalog)
    a = worker("a")
    await wait_for(
        lambda: "reelstream_consumer_lag_records" in a.metrics(), "worker a to hold partitions"
    )
    sent = [0]

    async def feed() -> None:
        async with EventProducer(run_settings, validate=False) as producer:
            await send_paced(producer, events, sent, per_s=RATE_PER_S)

    feeder = asyncio.create_task(feed())
    cycles: list[dict[str, float]] = []
    started = time.monotonic()
    while time.monotonic() - started < DURATION_S - 2 * PERIOD_S:
        b = worker("b")
        # Seconds from the joiner's start to its first event (the rebalance and the table
        # recovery it waits for): measured beside the schedule, printed, never asserted.
        join_s = asyncio.create_task(
            seconds_until(
                lambda b=b: b.metrics().get("reelstream_events_consumed_total", 0) > 0,
                time.monotonic(),
                timeout=PERIOD_S - 1,
            )
        )
        await asyncio.sleep(PERIOD_S)  # the churn schedule itself, not a wait for a result
        consumed = b.metrics().get("reelstream_events_consumed_total", 0.0)
        t0 = time.monotonic()
        b.stop(timeout=60)
        cycles.append(
            {"b_consumed": consumed, "exit_s": time.monotonic() - t0, "join_s": await join_s}
        )
        await asyncio.sleep(PERIOD_S)
    await feeder
    fed = time.monotonic()

    def exact() -> bool:
        return caught_up(run_settings, truth)

    stalls: list[str] = []
    with contextlib.suppress(AssertionError):  # judged, with the differences, below
        await wait_for(exact, "every user's features in Redis after the churn", timeout=60)
    exact_s = round(time.monotonic() - fed, 2)
    if not exact() and a.metrics().get("reelstream_consumer_stalled_partitions", 0) > 0:
        # A worker that stopped reading after a rebalance is reported by its stall watch
        # (REELSTREAM_STALL_S=20 here; /healthz fails); restarting it, as an orchestrator
        # would, must lose nothing.
        stalls.append(a.tail(5))
        a.stop(timeout=60)
        a = worker("a")
        with contextlib.suppress(AssertionError):
            await wait_for(exact, "the catch-up after restarting a stalled worker")
    return {
        "truth": truth,
        "cycles": cycles,
        "exact_s": exact_s,
        "a": a,
        "events": events,
        "stalls": stalls,
        "differing": differing(run_settings, truth),
        "logs": logs,
        # The differing users' row versions in the changelog, with their source offsets.
        "report": "" if exact() else await catch_up_report(run_settings, truth),
    }


async def test_the_joiner_took_part_in_every_cycle(churn_run):
    cycles = churn_run["cycles"]
    assert len(cycles) >= 3, cycles
    # A rebalance can hand b its partitions late in a 15 s window: most cycles, not all.
    assert sum(c["b_consumed"] > 0 for c in cycles) >= len(cycles) - 1, cycles
    assert churn_run["a"].proc.poll() is None


async def test_no_worker_stalls(churn_run):
    assert churn_run["stalls"] == []


async def test_every_sigterm_exits_within_the_documented_bound(churn_run):
    exits = [round(c["exit_s"], 2) for c in churn_run["cycles"]]
    print(
        f"\nSIGTERM to exit, s: {exits}; joiner's start to its first event, s: "
        f"{[c['join_s'] for c in churn_run['cycles']]}; every count exact "
        f"{churn_run['exact_s']} s after the last event was sent; cycles: {churn_run['cycles']}"
    )
    assert all(0 < s <= SIGTERM_BOUND_S for s in exits), exits


async def test_title_statistics_and_user_features_equal_the_uninterrupted_run(
    run_settings, churn_run
):
    got = read_redis(run_settings, churn_run["truth"])
    want_titles = churn_run["truth"]["titles"]
    titles = {
        t: (got["titles"].get(t), w) for t, w in want_titles.items() if got["titles"].get(t) != w
    }
    short = {
        u: {k: (f.get(k), want.get(k)) for k in {*f, *want} if f.get(k) != want.get(k)}
        for u, (f, want) in list(churn_run["differing"].items())[:5]
    }
    assert not churn_run["differing"] and got["titles"] == want_titles, (
        f"join/leave difference (field: got, want): {short}; "
        f"titles (got, want): {dict(list(titles.items())[:5])}; "
        f"stalls: {len(churn_run['stalls'])}; {churn_run['report']}; "
        f"the workers' seeks and gaps: {seek_and_gap_lines(churn_run['logs'])}"
    )
