"""Durable learning, pure part: the shared state's checkpoint plus each user's record (the
profile table's row, models' part included) continue like uninterrupted learning; bad data
is refused."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest

from features.catalog import Catalog, parse_title
from features.user_profile import UserProfile
from online_models import checkpoint as codec
from online_models.checkpoint import CheckpointError
from online_models.durable import (
    assemble,
    export_shared,
    import_shared,
    parse_chunk,
    split_blob,
    validate_manifest,
)
from online_models.engine import Engine
from online_models.health import ModelHealth
from streams.settings import Settings
from streams.tools.synthetic import SimConfig, Simulation
from streams.worker.checkpoints import ModelDurability, candidates


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation(SimConfig(users=60, titles=80, seed=5))


def _engine(sim: Simulation, reverse: bool = False) -> Engine:
    cat = Catalog()
    for rec in reversed(sim.catalog) if reverse else sim.catalog:
        cat.upsert(parse_title(rec))
    return Engine(catalog=cat)


def _snapshot(eng: Engine) -> tuple[bytes, bytes]:
    """The shared checkpoint, and the rows as the table's JSON codec stores them."""
    rows = {u: p.to_dict() for u, p in eng.profiles.items()}
    return codec.encode({"shared": export_shared(eng.models)}, {"ev:0": 1}), orjson.dumps(rows)


def _restore(eng: Engine, snap: tuple[bytes, bytes]) -> None:
    import_shared(eng.models, codec.decode(snap[0]).state["shared"])
    for uid, d in orjson.loads(snap[1]).items():
        eng.profiles[uid] = UserProfile.from_dict(d)


def test_restored_engine_continues_exactly_like_an_uninterrupted_one(sim):
    events = list(sim.events(limit=4000))
    a, b = _engine(sim), _engine(sim)
    for ev in events[:2500]:
        a.ingest(ev)
    _restore(b, _snapshot(a))
    for ev in events[2500:]:
        a.ingest(ev)
        b.ingest(ev)
    ra, rb = a.models, b.models
    assert np.array_equal(ra.mf.q, rb.mf.q)
    assert ra.sequence.clock is not None and rb.sequence.clock is not None
    assert ra.sequence.clock.ref_ts == rb.sequence.clock.ref_ts is not None  # the half-life's
    assert np.allclose(ra.sequence.counts, rb.sequence.counts)
    assert ra.ranker.state()["click"]["learned"] == rb.ranker.state()["click"]["learned"] > 0
    assert ra.ranker.state()["watch"]["learned"] == rb.ranker.state()["watch"]["learned"] > 0
    assert set(a.profiles) == set(b.profiles)
    for uid, pa in a.profiles.items():
        da, db = pa.to_dict(), b.profiles[uid].to_dict()
        assert da == db, uid  # features, gate and the models' part: the whole record
    # Pending impressions' feature rows are rebuilt after a read (the record keeps their
    # titles): the ranker's weights may differ in the last digits, its rankings hardly.
    u = events[-1]["user_id"]
    ia = [i["title_id"] for i in a.score_message(u, 10**13, 0)["items"]]
    ib = [i["title_id"] for i in b.score_message(u, 10**13, 0)["items"]]
    assert len(set(ia) & set(ib)) >= 0.8 * len(ia)


def test_restore_maps_titles_by_id_when_the_catalog_is_numbered_differently(sim):
    events = list(sim.events(limit=2000))
    a, b = _engine(sim), _engine(sim, reverse=True)
    for ev in events:
        a.ingest(ev)
    for uid in list(a.profiles)[:10]:  # served rows: exposure counts to carry over
        a.score_message(uid, events[-1]["ts"], 0)
    _restore(b, _snapshot(a))
    ra, rb = a.models, b.models
    ia, ib = ra.titles.index, rb.titles.index
    assert ia != ib
    for uid, prof in a.profiles.items():
        st, sb = ra.state(uid, prof), rb.state(uid, b.profiles[uid])
        assert [ra.titles.ids[i] for i in st.recent] == [rb.titles.ids[i] for i in sb.recent]
        assert sb.plays == st.plays and sb.completes == st.completes
        assert sb.mf_n == st.mf_n and (st.mf is None or np.array_equal(st.mf, sb.mf))
    tid = ra.titles.ids[3]
    assert np.array_equal(ra.mf.q[ia[tid]], rb.mf.q[ib[tid]])
    assert ra.cowatch.rows.get(ia[tid], {}) == {
        ia[rb.titles.ids[k]]: v for k, v in rb.cowatch.rows.get(ib[tid], {}).items()
    }
    ea, eb = ra.exposure, rb.exposure
    rows_a = np.array([ia[t] for t in ra.titles.ids])
    rows_b = np.array([ib[t] for t in ra.titles.ids])  # the same titles, b's numbering
    assert ea.total == pytest.approx(eb.total) and ea.total > 0
    assert eb.demand_total == ea.demand_total > 0
    assert np.allclose(ea.shown(rows_a), eb.shown(rows_b))
    assert np.array_equal(ea.demand[rows_a], eb.demand[rows_b])
    assert np.allclose(ea.penalty(rows_a), eb.penalty(rows_b))


def test_chunks_reassemble_only_when_complete_and_untouched():
    blob = orjson.dumps({"x": list(range(5000))})
    man, chunks = split_blob(blob, gen=7, chunk_size=4096)
    parsed = [parse_chunk(c) for c in chunks]
    assert len(chunks) > 2 and assemble(man, parsed) == blob
    with pytest.raises(CheckpointError, match="missing"):
        assemble(man, parsed[:-1])
    bad = list(parsed)
    g, i, n, data = bad[1]
    bad[1] = (g, i, n, data[:-1] + b"!")
    with pytest.raises(CheckpointError, match="SHA-256"):
        assemble(man, bad)
    with pytest.raises(CheckpointError, match="missing"):  # chunks of another generation
        assemble({**man, "gen": 8}, parsed)
    with pytest.raises(CheckpointError):
        parse_chunk(b"PICKLE" + b"\x00" * 30)
    with pytest.raises(CheckpointError):
        validate_manifest({"format": "reelstream-checkpoint-manifest", "v": 99})


def _records(prefix: str, slot: int, gen: int, blob: bytes) -> dict[str, bytes]:
    man, chunks = split_blob(blob, gen, chunk_size=1000)
    doc = {
        "format": "reelstream-checkpoint-manifest",
        "v": 1,
        **man,
        "created_ms": gen,
    }
    out = {f"{prefix}/{slot}/{i}": c for i, c in enumerate(chunks)}
    out[f"{prefix}/{slot}/m"] = orjson.dumps(doc)
    return out


def test_a_corrupt_newest_slot_falls_back_to_the_older_one():
    from streams import metrics as m

    old = codec.encode({"n": 1}, {"ev:0": 5})
    new = codec.encode({"n": 2}, {"ev:0": 9})
    recs = {**_records("p/0", 0, 1, old), **_records("p/0", 1, 2, new)}
    assert [man["gen"] for _, man, _ in candidates(recs, "p/0")] == [2, 1]
    recs["p/0/1/0"] = recs["p/0/1/0"][:-3] + b"xyz"
    before = m.CHECKPOINTS_REJECTED._value.get()
    got = candidates(recs, "p/0")
    assert [(slot, man["gen"]) for slot, man, _ in got] == [(0, 1)]
    assert codec.decode(got[0][2]).state == {"n": 1}
    assert m.CHECKPOINTS_REJECTED._value.get() == before + 1


def test_an_unreadable_stored_user_state_restarts_empty_and_is_counted(sim):
    eng = _engine(sim)
    eng.models.titles.sync()
    for bad in ({"v": 1, "mf": [0.0] * 3}, {"v": 1, "recent": []}, {"v": 99}, [1, 2]):
        prof = UserProfile()
        prof.model = bad
        st = eng.models.state("u", prof)
        assert st.plays == 0 and st.mf is None and prof.model is st
    assert eng.models.unreadable_states == 4
    with pytest.raises(CheckpointError):
        import_shared(eng.models, {"ids": [1, 2]})


def test_health_hit_rate_and_ranker_window(sim):
    eng = _engine(sim)
    for ev in sim.events(limit=3000):
        eng.ingest(ev)
    h = ModelHealth(window=2000)
    auc, loss = h.ranker(eng.models.ranker)
    assert 0.5 < auc <= 1.0 and 0 < loss < 1.0
    assert np.isnan(h.hit_rate())


# --- the worker's rounds: taken between batches, written alongside them ------------------


class _GatedIO:
    """CheckpointIO's write, held until the test opens the gate; can fail."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.fail = False
        self.writes: list[tuple[int, str, int]] = []

    async def write(self, partition: int, prefix: str, gen: int, blob: bytes, meta: dict) -> int:
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("broker gone")
        self.writes.append((partition, prefix, gen))
        return len(blob)


class _Store:
    def __init__(self) -> None:
        self.gen = self.landed = 0

    def round_taken(self, gen: int) -> None:
        self.gen = gen

    def round_landed(self, gen: int) -> None:
        self.landed = gen


def _durability(sim: Simulation) -> tuple[ModelDurability, _GatedIO, _Store]:
    store = _Store()

    async def nothing(*_: object) -> None:
        return None

    d = ModelDurability(Settings(), _engine(sim), store, nothing, nothing)
    d.io = _GatedIO()  # type: ignore[assignment]
    d.on_assigned({0, 1})
    for off in range(3):
        d.guard.admit(Settings().events_topic, 0, off)
    d.guard.events_since = 3
    return d, d.io, store  # type: ignore[return-value]


def test_a_round_is_written_while_the_next_batches_run(sim):
    async def run() -> None:
        d, io, store = _durability(sim)
        async with d.lock:
            assert await d.checkpoint(wait=False) == 0
        assert not d.lock.locked() and d.writing_now  # the next batch can take the lock
        assert store.gen > 0 and store.landed == 0 and d.unlanded is not None
        async with d.lock:
            await d.after_batch()  # due or not, no second round while one is written
        io.gate.set()
        await d.settle()
        assert store.landed == store.gen and d.unlanded is None
        # Shared state, then the one partition with learned records.
        assert [w[1] for w in io.writes] == [f"s/{d.worker}/0", "p/0/0"]

    asyncio.run(run())


def test_a_failed_round_is_written_again_into_the_same_slots_before_a_new_one(sim):
    async def run() -> None:
        d, io, store = _durability(sim)
        io.fail = True
        io.gate.set()
        async with d.lock:
            await d.checkpoint(wait=False)
        await d.settle()
        taken = store.gen
        assert d.unlanded is not None and store.landed == 0 and io.writes == []
        d.guard.events_since = 5
        io.fail = False
        async with d.lock:
            assert await d.checkpoint() > 0  # the failed round first, then a new one
        assert [(w[1], w[2]) for w in io.writes[:2]] == [
            (f"s/{d.worker}/0", taken),
            ("p/0/0", taken),
        ]
        assert [w[1] for w in io.writes[2:]] == [f"s/{d.worker}/1", "p/0/1"]
        assert store.landed == store.gen > taken

    asyncio.run(run())


def test_a_round_that_cannot_be_encoded_is_reported_not_raised(sim):
    async def run() -> None:
        d, io, store = _durability(sim)
        io.gate.set()
        async with d.lock:
            rnd = await d._take(None)
        assert rnd is not None
        rnd.state = {"bad": np.array([object()])}  # not a dtype a checkpoint may hold
        assert await d._land(rnd) == 0
        assert d.unlanded is rnd and store.landed == 0 and io.writes == []

    asyncio.run(run())


def test_a_round_waits_the_configured_share_of_its_own_work(monkeypatch):
    from streams.worker import checkpoints

    asked: list[float] = []

    async def sleep(s: float) -> None:
        asked.append(s)

    monkeypatch.setattr(checkpoints.asyncio, "sleep", sleep)
    for step, ratio in ((0.01, 1.0), (0.01, 3.0), (0.0001, 3.0), (0.01, 0.0)):
        asyncio.run(checkpoints.pace(step, ratio))
    floor = checkpoints.MIN_PACE_S
    assert asked == pytest.approx([0.01, 0.03, floor, floor])
    with pytest.raises(ValueError, match="REELSTREAM_CHECKPOINT_PACE"):
        Settings(checkpoint_pace=-1)
