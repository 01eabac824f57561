import math

import pytest

from features.catalog import Title
from features.user_profile import AFFINITY_HALF_LIFE_MS, UserProfile


def decay(ms: float) -> float:
    return 0.5 ** (ms / AFFINITY_HALF_LIFE_MS)


T1 = Title(
    "t1",
    "One",
    tag_keys=("genre:drama", "tone:dark", "pacing:slow", "theme:love"),
    runtime_s=1000.0,
)


def e(etype, ts, pos=None, title="t1", **kw):
    ev = {"event_type": etype, "title_id": title, "ts": ts, "user_id": "u1", **kw}
    if pos is not None:
        ev["position_s"] = pos
        ev["duration_s"] = 1000.0
    return ev


def test_watched_share_credits_each_tag_once_normalised():
    p = UserProfile()
    p.update(e("play", 0, 0), T1)
    p.update(e("progress", 300_000, 300), T1)
    p.update(e("progress", 600_000, 600), T1)
    # 300 of 1000 s watched twice, four tags: 0.3 / sqrt(4) each time, decayed in event time.
    expected = 0.15 * decay(300_000) + 0.15
    assert p.affinity["genre:drama"] == pytest.approx(expected, rel=1e-12)
    assert p.in_progress["t1"][0] == 600.0


def test_seek_backwards_does_not_credit_rewatched_seconds_twice():
    p = UserProfile()
    p.update(e("play", 0, 0), T1)
    p.update(e("progress", 300_000, 300), T1)
    p.update(e("seek", 301_000, 100), T1)
    p.update(e("progress", 500_000, 300), T1)
    # 300 credited, then 100->300 again after the seek: 500 s watched in total.
    expected = 0.15 * decay(200_000) + 0.10
    assert p.affinity["tone:dark"] == pytest.approx(expected, rel=1e-12)


def test_pause_and_intro_skip_move_position_without_credit():
    p = UserProfile()
    p.update(e("play", 0, 0), T1)
    p.update(e("intro_skip", 20_000, 90), T1)
    p.update(e("pause", 30_000, 100), T1)
    assert p.affinity == {}
    assert p.in_progress["t1"][0] == 100.0


def test_complete_marks_finished_and_leaves_in_progress():
    p = UserProfile()
    p.update(e("play", 0, 0), T1)
    assert p.update(e("complete", 1_000_000, 1000), T1) is True
    assert "t1" in p.finished
    assert "t1" not in p.in_progress


def test_affinity_decays_by_half_per_half_life():
    p = UserProfile()
    p.update(e("play", 0, 0), T1)
    p.update(e("progress", 100_000, 100), T1)
    before = p.affinity["theme:love"]
    p.update(e("click", 100_000 + AFFINITY_HALF_LIFE_MS, title="t2"), None)
    assert p.affinity["theme:love"] == pytest.approx(before / 2, rel=1e-9)


def test_out_of_order_event_does_not_move_decay_clock_backwards():
    p = UserProfile()
    p.update(e("click", 10_000), T1)
    p.update(e("click", 5_000), T1)
    assert p.last_ts == 10_000


def test_negative_thumbs_lowers_affinity():
    p = UserProfile()
    p.update(e("thumbs", 0, value=-1), T1)
    assert p.affinity["genre:drama"] == pytest.approx(-0.5 / 2)


def test_progress_heartbeats_do_not_ask_for_refresh_but_plays_do():
    p = UserProfile()
    assert p.update(e("play", 0, 0), T1) is True
    assert p.update(e("progress", 300_000, 300), T1) is False


def test_round_trip_through_dict():
    p = UserProfile()
    p.update(e("play", 0, 0, country="FR", device="tv"), T1)
    p.update(e("progress", 300_000, 300), T1)
    q = UserProfile.from_dict(p.to_dict())
    assert q.to_dict() == p.to_dict()
    assert math.isclose(q.affinity["genre:drama"], p.affinity["genre:drama"])
