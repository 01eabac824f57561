"""Crash and restart on the real broker: models restored from a checkpoint learn every event once.

Worker 1 checkpoints after ~1000 records, then processes (and commits) more records
without checkpointing; it is SIGKILLed. Worker 2 adopts the checkpoint, seeks back to
its offsets, puts each user's row back to its state as of that round, replays the gap,
then learns the rest. Each user's record in the profile table (features and the models'
per-user state) and the shared state of worker 2's final checkpoint must equal an
in-process replay of the whole stream through the same Engine: nothing learned twice,
nothing lost.
"""

from __future__ import annotations

import math

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from online_models.engine import Engine
from streams.adapters.producer import EventProducer
from streams.tools.synthetic import SimConfig, Simulation
from streams.worker.checkpoints import read_latest
from tests.integration.conftest import read_topic, wait_for

pytestmark = pytest.mark.integration

N1, N2, N = 1200, 1800, 3000


async def _positions(settings) -> tuple[dict[int, int], dict[int, int]]:
    """(end offsets, committed offsets of the worker group) of the events topic."""
    c = AIOKafkaConsumer(
        **settings.kafka_client_kwargs(), group_id=settings.app_id, enable_auto_commit=False
    )
    await c.start()
    try:
        tps = [TopicPartition(settings.events_topic, p) for p in range(settings.partitions)]
        end = await c.end_offsets(tps)
        committed = {tp.partition: (await c.committed(tp)) or 0 for tp in tps}
        return {tp.partition: o for tp, o in end.items()}, committed
    finally:
        await c.stop()


def _covered(cks: dict, settings) -> dict[int, int]:
    return {p: ck.offsets[f"{settings.events_topic}:{p}"] for p, ck in cks.items() if p >= 0}


async def test_kill_restart_learns_every_event_exactly_once(run_settings, start_worker):
    sim = Simulation(SimConfig(users=80, titles=100, seed=31))
    events = list(sim.events(limit=N))
    w1 = start_worker(
        REELSTREAM_CHECKPOINT_EVENTS="1000",
        REELSTREAM_CHECKPOINT_INTERVAL_S="3600",
        REELSTREAM_LOG_LEVEL="INFO",
    )
    async with EventProducer(run_settings) as producer:
        await producer.send_titles(sim.catalog)
        for ev in events[:N1]:
            await producer.send(ev)
    await wait_for(
        lambda: (
            w1.metrics().get("reelstream_records_consumed_total", 0) >= N1
            and w1.metrics().get("reelstream_checkpoints_written_total", 0) >= 1
        ),
        "worker 1 to process part 1 and write a checkpoint",
        timeout=60,
    )
    async with EventProducer(run_settings) as producer:
        for ev in events[N1:N2]:
            await producer.send(ev)

    async def all_committed() -> bool:
        end, committed = await _positions(run_settings)
        return sum(end.values()) == N2 and committed == end

    await wait_for(all_committed, "worker 1 to process and commit part 2", timeout=90)
    assert w1.metrics()["reelstream_checkpoints_written_total"] == 1
    first = _covered(await read_latest(run_settings), run_settings)
    assert sum(first.values()) < N2  # the checkpoint is behind the committed offsets
    w1.proc.kill()  # SIGKILL: no final checkpoint, no clean leave
    w1.proc.wait()

    w2 = start_worker(
        REELSTREAM_CHECKPOINT_EVENTS="1000000",
        REELSTREAM_CHECKPOINT_INTERVAL_S="1",
    )
    async with EventProducer(run_settings) as producer:
        for ev in events[N2:]:
            await producer.send(ev)

    async def final() -> dict | None:
        cks = await read_latest(run_settings)
        end, _ = await _positions(run_settings)
        return cks if _covered(cks, run_settings) == end and -1 in cks else None

    cks = await wait_for(final, "worker 2 to checkpoint every event", timeout=120)
    stats = w2.metrics()
    assert stats["reelstream_checkpoints_restored_total"] >= 1
    # The gap between worker 1's checkpoint and its commits was replayed, not skipped.
    assert stats["reelstream_records_consumed_total"] == N - sum(first.values())

    catalog = sim.title_catalog()
    ref = Engine(catalog=catalog)
    for ev in events:
        ref.ingest(ev)
    rm = ref.models
    users: dict[str, dict] = {}  # the last row of each user in the table's changelog
    for rec in await read_topic(run_settings, f"{run_settings.app_id}-user-profiles-changelog"):
        if rec.value is not None:
            users[orjson.loads(rec.key)] = orjson.loads(rec.value)
    assert set(users) == set(ref.profiles)
    for uid, d in users.items():
        st, want = d["model"], rm.state(uid, ref.profiles[uid])
        ids = rm.titles.ids
        assert st["counts"] == [
            want.plays,
            want.completes,
            want.abandons,
            want.pauses,
            want.skips,
            want.episode_plays,
        ], uid
        assert math.isclose(st["watched_s"], want.watched_s, rel_tol=1e-9)
        assert st["recent"] == [ids[i] for i in want.recent]
        assert set(st["positives"]) == {ids[i] for i in want.positives}
        assert st["mf_n"] == want.mf_n
        prof, wp = d, ref.profiles[uid]
        assert prof["events"] == wp.events and set(prof["finished"]) == set(wp.finished)
        assert set(prof["in_progress"]) == set(wp.in_progress)
        for tag, w in wp.affinity.items():
            assert math.isclose(prof["affinity"][tag], w, rel_tol=1e-6, abs_tol=1e-12)
    shared = cks[-1].state["ranker_stats"]
    for head in ("click", "watch"):
        assert shared[head]["n"] == rm.ranker.stats[head].n > 0
    # Co-watch mass (decayed to a common time) matches: every positive paired once.
    t = events[-1]["ts"]
    cw = cks[-1].state["cowatch"]
    mine = rm.cowatch.state()
    inv = rm.cowatch.clock.inv_tau
    got = float(cw["vals"].sum()) * math.exp(-(t - cw["ref_ts"]) * inv)
    want = float(mine["vals"].sum()) * math.exp(-(t - mine["ref_ts"]) * inv)
    assert math.isclose(got, want, rel_tol=1e-6)
