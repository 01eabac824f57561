"""The short-term sequence source: transitions learned from plays as they start, graded by
outcome, and used for viewers whose plays are still in flight."""

from __future__ import annotations

import itertools

import numpy as np

from features.catalog import parse_title
from online_models.engine import Engine
from online_models.sequence import ItemSequence

T0 = 1_767_571_200_000
_ids = itertools.count()


def test_order_matters_more_than_co_occurrence():
    seq = ItemSequence(window=3, backward=0.25)
    seq.resize(3)
    for _ in range(5):
        seq.learn_one([], 0)
        seq.learn_one([0], 1)  # 0 then 1
    after0, after1 = seq.scores([0]), seq.scores([1])
    assert after0[1] > 0 and after1[0] > 0
    assert after0[1] > 3 * after1[0]  # forward four times the backward weight
    assert after0[2] == 0


def test_recent_plays_weigh_more_and_rows_stay_bounded():
    seq = ItemSequence(window=5, decay=0.5, max_neighbors=4)
    seq.resize(20)
    seq.learn_one([], 0)
    seq.learn_one([0], 1)
    seq.learn_one([], 2)
    seq.learn_one([2], 3)
    s = seq.scores([0, 2])  # 0 is the most recent
    assert s[1] > s[3] > 0
    for j in range(4, 20):
        seq.learn_one([0], j)
    assert len(seq.rows[0]) <= 6  # pruned to max_neighbors (slack 3/2)


def test_correct_grades_a_play_down():
    seq = ItemSequence()
    seq.resize(3)
    seq.learn_one([0], 1)
    seq.learn_one([0], 2)
    seq.correct([0], 2, -0.5)  # the play of 2 was abandoned early
    s = seq.scores([0])
    assert s[1] > s[2] > 0


def _engine(n: int) -> Engine:
    eng = Engine()
    for i in range(n):
        eng.catalog.upsert(
            parse_title(
                {"title_id": f"t{i}", "name": f"T{i}", "genres": [f"g{i}"], "runtime_s": 600}
            )
        )
    return eng


def _ev(user: str, kind: str, tid: str, ts: int, **kw: object) -> dict:
    return {
        "event_id": f"e{next(_ids)}",
        "user_id": user,
        "title_id": tid,
        "event_type": kind,
        "ts": ts,
        **kw,
    }


def test_a_viewer_with_plays_in_flight_gets_what_follows_them():
    eng = _engine(12)
    ts = T0
    for u in range(6):  # others watch t3 then t7, one after the other
        for tid in ("t3", "t7"):
            eng.ingest(_ev(f"o{u}", "play", tid, ts, position_s=0))
            eng.ingest(_ev(f"o{u}", "complete", tid, ts + 1, position_s=600))
            ts += 10
    for u in range(8):  # t5 is the most popular title
        eng.ingest(_ev(f"p{u}", "play", "t5", ts, position_s=0))
        eng.ingest(_ev(f"p{u}", "complete", "t5", ts + 1, position_s=600))
        ts += 10
    # the viewer has started t3 (in flight, no outcome yet): no positive to anchor co-watch
    eng.ingest(_ev("v", "play", "t3", ts, position_s=0))
    rec = eng.models
    st = rec.state("v", eng.profile("v"))
    assert st.sequence == [rec.titles.index["t3"]] and st.recent == []
    top = eng.rows("v", ts + 5, 3).items[0]
    assert top.title_id == "t7"
    assert "because you watched T3" in top.reasons


def test_an_early_abandon_weakens_the_transition():
    def run(end: str, pos: float) -> float:
        eng = _engine(4)
        for u in range(3):
            eng.ingest(_ev(f"u{u}", "play", "t0", T0 + u, position_s=0))
            eng.ingest(_ev(f"u{u}", "complete", "t0", T0 + u + 1, position_s=600))
            eng.ingest(_ev(f"u{u}", "play", "t1", T0 + u + 2, position_s=0))
            eng.ingest(_ev(f"u{u}", end, "t1", T0 + u + 3, position_s=pos, duration_s=600))
        rec = eng.models
        i0, i1 = rec.titles.index["t0"], rec.titles.index["t1"]
        return float(rec.sequence.scores([i0])[i1])

    assert run("complete", 600) > run("stop", 300) > run("stop", 10) > 0
    assert np.isfinite(run("stop", 0))


def test_a_half_life_lets_newer_transitions_overtake_older_ones():
    year = 365 * 86_400_000
    seq = ItemSequence(window=2, half_life_ms=2 * year)
    seq.resize(3)
    for _ in range(3):  # 0 -> 1 three times, long ago
        seq.learn_one([0], 1, ts=T0)
    seq.learn_one([0], 2, ts=T0 + 4 * year)  # 0 -> 2 once, four years later (weighs 4)
    s = seq.scores([0])
    assert s[2] > s[1] > 0
    plain = ItemSequence(window=2)
    plain.resize(3)
    for _ in range(3):
        plain.learn_one([0], 1, ts=T0)
    plain.learn_one([0], 2, ts=T0 + 4 * year)
    assert plain.scores([0])[1] > plain.scores([0])[2]  # no half-life: counts alone


def test_the_half_life_clock_rebases_without_changing_scores():
    hl = 1000.0
    seq = ItemSequence(window=2, half_life_ms=hl)
    seq.resize(5)
    seq.learn_one([0], 1, ts=0)
    seq.learn_one([0], 2, ts=10)
    before = seq.scores([0])
    seq.learn_one([3], 4, ts=int(60 * hl))  # 60 half-lives on: rebased, old rows scaled down
    assert seq.clock is not None and seq.clock.ref_ts == int(60 * hl)
    after = seq.scores([0])
    assert np.allclose(after / after.max(), before / before.max(), rtol=1e-4)
    assert seq.state()["ref_ts"] == int(60 * hl)
