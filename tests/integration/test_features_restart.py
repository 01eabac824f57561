"""Features on the real broker and Redis: a worker killed mid-stream resumes without recounting;
duplicates count once; too-late and future events are dead-lettered with their reason."""

from __future__ import annotations

import pytest
import redis

from streams.adapters.producer import EventProducer
from streams.adapters.redis_keys import title_key
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import wait_for
from tests.integration.feature_truth import (
    assert_rejects_dead_lettered,
    assert_title_stats_exact,
    assert_user_features_exact,
    catch_up_restarting_stalls,
    expected,
    read_redis,
    stream_with_faults,
)

pytestmark = pytest.mark.integration

N_EVENTS = 5000


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation(SimConfig(users=80, titles=60, seed=31))


@pytest.fixture(scope="module")
async def run(run_settings, sim, start_worker):
    events, faults = stream_with_faults(sim, N_EVENTS)
    truth = expected(sim, events)
    half = len(events) // 2

    def worker():
        return start_worker(REELSTREAM_STALL_S="20")

    first = worker()
    async with EventProducer(run_settings, validate=False) as producer:
        await producer.send_titles(sim.catalog)
        for ev in events[:half]:
            await producer.send(ev)
    await wait_for(
        lambda: (
            first.metrics().get("reelstream_title_records_applied_total", 0) > 0
            and first.metrics().get("reelstream_records_consumed_total", 0) >= half // 2
        ),
        "the first worker to be half-way through the first half",
    )
    first.proc.kill()  # SIGKILL: no clean shutdown, offsets may lag the tables
    first.proc.wait()
    second = worker()
    async with EventProducer(run_settings, validate=False) as producer:
        for ev in events[half:]:
            await producer.send(ev)
    # A restarted worker that the stall watch reports is restarted, as its liveness probe
    # would (a stall fails test_fault_kills' no-stall test); the counts must still be exact.
    stalls: list[dict] = []
    second = await catch_up_restarting_stalls(
        run_settings, truth, second, worker, stalls, "every play and every user's features"
    )
    return {"truth": truth, "faults": faults, "second": second, "events": events}


async def test_title_counts_after_a_crash_equal_the_uninterrupted_totals(run_settings, run):
    assert_title_stats_exact(run_settings, run["truth"], run["events"], run["faults"])


async def test_user_features_after_a_crash_equal_the_uninterrupted_run(run_settings, run):
    assert_user_features_exact(run_settings, run["truth"])


async def test_trending_list_matches_exact_windowed_counts(run_settings, run):
    def trending():
        got = read_redis(run_settings, run["truth"])["trending"]
        return got if got and got.as_of == run["truth"]["as_of"] else None

    got = await wait_for(trending, "the ALL/1d trending list at the last event time")
    assert [[t, n] for t, n in got.items] == run["truth"]["trending_all_1d"]


async def test_too_late_and_future_events_are_dead_lettered_duplicates_are_not(run_settings, run):
    await assert_rejects_dead_lettered(run_settings, run["faults"])
    assert run["second"].metrics()["reelstream_duplicates_dropped_total"] >= 1


async def test_a_restarted_worker_republishes_every_title_from_its_recovered_table(
    run_settings, run, start_worker
):
    """Title hashes lost while no worker runs come back from the restored table, not only
    when a title's next play arrives (the republish waits for Faust's table recovery)."""
    run["second"].proc.kill()
    run["second"].proc.wait()
    r = redis.Redis.from_url(run_settings.redis_url)
    r.delete(*(title_key(run_settings.key_prefix, t) for t in run["truth"]["titles"]))
    start_worker()
    await wait_for(
        lambda: read_redis(run_settings, run["truth"])["titles"] == run["truth"]["titles"],
        "every title's statistics republished by the restarted worker",
        timeout=90,
    )
