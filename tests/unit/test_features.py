"""Exact feature values for hand-written sequences (pure code, no broker)."""

import orjson
import pytest

from features.event_gate import ALLOWED_LATENESS_MS, EventGate
from features.title_stats import TitleStats
from features.title_view import GlobalTitleView
from features.user_features import (
    FINISHED,
    RATIO,
    RESUME,
    REWATCHES,
    UserFeatures,
)
from features.user_profile import UserProfile
from online_models.engine import Engine

MON = 1_767_571_200_000  # 2026-01-05 00:00 UTC, Monday
H = 3_600_000


def ev(etype, ts, pos=None, title="t1", **kw):
    e = {"event_type": etype, "title_id": title, "ts": ts, "user_id": "u1", "country": "GB"}
    e.update(kw)
    if pos is not None:
        e["position_s"] = pos
        e["duration_s"] = 3000.0
    return e


def test_pauses_seeks_back_and_intro_skip_exact():
    f = UserFeatures()
    f.update(ev("play", MON, 0, session_id="s"), None)
    f.update(ev("intro_skip", MON + 20_000, 20, session_id="s"), None)
    f.update(ev("progress", MON + 320_000, 320, session_id="s"), None)
    f.update(ev("pause", MON + 330_000, 330, session_id="s"), None)
    f.update(ev("resume", MON + 630_000, 330, session_id="s"), None)  # 5 idle minutes
    f.update(ev("seek", MON + 640_000, 100, from_position_s=340, session_id="s"), None)
    f.update(ev("progress", MON + 940_000, 400, session_id="s"), None)
    assert f.watch_s == 20 + 300 + 10 + 300  # the pause's idle time is not watching
    assert (f.pauses, f.seeks, f.seeks_back, f.intro_skips) == (1, 1, 1, 1)
    assert f.rates()["pauses_per_hour"] == pytest.approx(1 / (630 / 3600), abs=1e-6)
    assert f.rates()["intro_skip_rate"] == 1.0
    assert f.titles["t1"][RESUME] == 400.0
    assert f.session_s == 940.0 and f.sessions == 1


def test_early_abandon_completion_and_rewatch():
    f = UserFeatures()
    f.update(ev("play", MON, 0), None)
    rec = f.update(ev("stop", MON + 60_000, 60), None)  # 2 % of 3000 s
    assert rec["r"] == 0.02 and f.early_abandons == 1
    f.update(ev("play", MON + H, 60), None)
    rec = f.update(ev("complete", MON + 2 * H, 3000), None)
    assert rec == {"t": "t1", "e": "complete", "ts": MON + 2 * H, "c": "GB", "r": 1.0}
    first = f.update(ev("play", MON + 3 * H, 0), None)
    assert first["f"] == 0  # not a new viewer of t1
    assert f.titles["t1"][REWATCHES] == 1 and f.rewatches == 1
    assert f.rates()["completion_rate"] == 0.5 and f.rates()["early_abandon_rate"] == 0.5
    assert f.titles["t1"][FINISHED] == 1 and f.continue_watching() == []


def test_continue_watching_is_exact():
    f = UserFeatures()
    f.update(ev("play", MON, 0), None)
    f.update(ev("progress", MON + 300_000, 300), None)
    f.update(ev("stop", MON + 400_000, 400), None)
    assert f.continue_watching() == [("t1", 400.0, round(400 / 3000, 4))]
    assert f.titles["t1"][RATIO] == pytest.approx(400 / 3000)


def test_session_spanning_midnight_splits_hours_and_weekdays():
    f = UserFeatures()
    start = MON + 7 * 86_400_000 - 10 * 60_000  # Sunday 23:50 UTC (GB local)
    f.update(ev("play", start, 0, session_id="late"), None)
    f.update(ev("progress", start + 300_000, 300, session_id="late"), None)  # 23:55
    f.update(ev("progress", start + 900_000, 900, session_id="late"), None)  # 00:05 Monday
    f.update(ev("stop", start + 1_200_000, 1200, session_id="late"), None)  # 00:10
    assert f.hour_s[23] == 600.0 and f.hour_s[0] == 600.0
    assert f.weekday_s[6] == 600.0 and f.weekday_s[0] == 600.0
    assert f.sessions == 1 and f.session_titles == 1 and f.session_s == 1200.0


def test_local_time_uses_the_country_offset():
    f = UserFeatures()
    f.update(ev("play", MON, 0, country="JP"), None)
    f.update(ev("progress", MON + 600_000, 600, country="JP"), None)
    assert f.hour_s[9] == 600.0  # 09:00-09:10 in Tokyo


def test_new_session_on_new_id_and_titles_per_session():
    f = UserFeatures()
    f.update(ev("play", MON, 0, session_id="a"), None)
    f.update(ev("play", MON + 60_000, 0, title="t2", session_id="a"), None)
    f.update(ev("play", MON + H, 0, title="t3", session_id="b"), None)
    assert f.sessions == 2 and f.rates()["titles_per_session"] == 1.5
    assert f.session_s == 60.0


def test_duplicates_dropped_and_late_within_lateness_accepted():
    g = EventGate()
    assert g.check("a", MON, None) == "ok"
    assert g.check("a", MON, None) == "duplicate"
    assert g.check("b", MON - ALLOWED_LATENESS_MS, None) == "ok"
    assert g.check("c", MON - ALLOWED_LATENESS_MS - 1, None) == "too_late"
    assert g.check("d", MON, now_ms=MON - 300_001) == "from_future"
    assert g.high_water == MON


def test_engine_counts_a_duplicate_once():
    eng = Engine()
    e = {"event_id": "x1", "user_id": "u1", "title_id": "t1", "event_type": "play", "ts": MON}
    assert eng.ingest(e).status == "ok"
    assert eng.ingest(dict(e)).status == "duplicate"
    assert eng.profiles["u1"].features.plays == 1


def test_late_event_lands_in_its_own_window_bucket():
    s = TitleStats()
    s.update({"t": "t1", "e": "play", "ts": MON + 2 * H, "c": "FR", "f": 1})
    s.update({"t": "t1", "e": "play", "ts": MON + H + 1, "c": "FR", "f": 1})  # 59 min late
    now = MON + 2 * H
    assert s.window_count("1h", "FR", now) == 1  # the late play is outside the last hour
    assert s.window_count("1d", "FR", now) == 2
    assert s.window_count("1h", "FR", MON + H + 300_000) == 1
    assert s.window_count("1h", "ALL", now) == 1 and s.window_count("1h", "DE", now) == 0


def test_title_stats_replay_is_idempotent_per_source_partition():
    s = TitleStats()
    recs = [
        ({"t": "t1", "e": "play", "ts": MON, "c": "FR", "f": 1}, (0, 10, 0)),
        ({"t": "t1", "e": "play", "ts": MON, "c": "FR", "f": 1}, (1, 3, 0)),
        ({"t": "t1", "e": "stop", "ts": MON + 1, "c": "FR", "r": 0.5}, (0, 11, 0)),
    ]
    for rec, src in recs + recs:
        s.update(dict(rec), src)
    assert (s.plays, s.viewers, s.stops, s.ratio_sum) == (2, 2, 1, 0.5)
    assert s.rates()["mean_watched_ratio"] == 0.5


def test_global_view_popularity_equals_a_single_counter():
    eng = Engine()
    stats: dict[str, TitleStats] = {}
    for i, (tid, etype) in enumerate([("a", "play"), ("b", "click"), ("a", "complete")]):
        e = {"event_id": f"e{i}", "user_id": f"u{i}", "title_id": tid, "event_type": etype}
        e["ts"] = MON + i * H
        rec = eng.ingest(e).title_record
        stats.setdefault(tid, TitleStats()).update(rec)
    view = GlobalTitleView()
    for tid, s in stats.items():
        view.apply(tid, s.snapshot())
    for tid in ("a", "b"):
        assert view.value(tid, MON + 5 * H) == pytest.approx(eng.popularity.value(tid, MON + 5 * H))


def test_profile_round_trip_keeps_features_and_gate():
    p = UserProfile()
    eng = Engine(profiles={"u1": p})
    eng.ingest({"event_id": "z", "user_id": "u1", "title_id": "t1", "event_type": "play",
                "ts": MON, "position_s": 0, "session_id": "s"})  # fmt: skip
    q = UserProfile.from_dict(p.to_dict())
    assert q.to_dict() == p.to_dict()
    assert q.gate.check("z", MON, None) == "duplicate"
    assert q.features.plays == 1


def test_gate_remembers_ids_in_a_fixed_size_whatever_their_length():
    g = EventGate()
    for i in range(300):
        assert g.check(f"{i:04d}-" + "x" * 200, MON, None) == "ok"
    assert g.check("0299-" + "x" * 200, MON, None) == "duplicate"
    row = orjson.dumps(g.to_list())
    assert len(row) < 256 * 16  # 256 digests of 12 characters, quoted, comma-separated


def test_gate_rows_written_before_the_digests_still_dedupe():
    old = [MON, ["e1", "e2"], ["late1"]]  # the ids as sent, no format marker
    g = EventGate.from_list(old)
    assert g.check("e2", MON, None) == "duplicate"
    assert g.check("late1", MON, None, reordered=True) == "too_late"
    assert g.check("e3", MON, None) == "ok"
    again = EventGate.from_list(orjson.loads(orjson.dumps(g.to_list())))
    assert again.check("e1", MON, None) == "duplicate"
    assert again.check("e3", MON, None) == "duplicate"


def test_kept_trending_lists_equal_a_full_scan_through_hops_drops_and_forgets(monkeypatch):
    """The incremental lists (recount changed titles, merge) against counting every
    title, while the windows move, a title is forgotten and an older snapshot returns;
    lists kept 6 deep so that titles move in and out of them."""
    import copy
    import random

    import features.title_view
    from features.title_stats import ALL, WINDOWS

    monkeypatch.setattr(features.title_view, "TOP_KEPT", 6)

    rng = random.Random(7)
    view = GlobalTitleView()
    stats: dict[str, TitleStats] = {}
    history: dict[str, list[dict]] = {}
    ts = MON
    checked = 0
    for step in range(3000):
        ts += rng.randint(0, 40_000)  # about 4 hours in all: both windows move
        tid = f"t{rng.randint(0, 120):03d}"
        r = rng.random()
        if r < 0.02 and tid in stats:
            view.apply(tid, None)
            del stats[tid]
        elif r < 0.05 and history.get(tid):
            view.apply(tid, rng.choice(history[tid]))  # an older snapshot: counts fall
        else:
            s = stats.setdefault(tid, TitleStats())
            s.update({"t": tid, "e": "play", "ts": ts, "c": rng.choice("AB C") * 2, "f": 1})
            snap = copy.deepcopy(s.snapshot())
            history.setdefault(tid, []).append(snap)
            view.apply(tid, snap)
        if step % 7 == 0:
            for window in WINDOWS:
                for country in sorted(view.countries()):
                    for n in (1, 6, 20):  # 20: longer than kept, scanned
                        assert view.trending(country, window, n) == view.scan(country, window, n), (
                            step,
                            window,
                            country,
                            n,
                        )
                        checked += 1
    assert checked > 1000
    assert view.trending(ALL, "1h", 20)  # the lists are not all empty


def test_after_the_window_moves_titles_are_recounted_a_chunk_per_read(monkeypatch):
    """The hop recount is spread: each read counts at most RECOUNT_CHUNK titles and
    serves the previous hop's lists meanwhile; once done, the lists equal a full scan."""
    import features.title_view
    from features.title_stats import ALL

    monkeypatch.setattr(features.title_view, "RECOUNT_CHUNK", 10)
    view = GlobalTitleView()
    for i in range(45):
        s = TitleStats()
        for k in range(i % 7 + 1):
            s.update({"t": f"t{i}", "e": "play", "ts": MON + k * 1000, "c": "FR", "f": 1})
        view.apply(f"t{i}", s.snapshot())
    before = view.lists(5)
    assert before == [(c, w, view.scan(c, w, 5)) for c, w, _ in before]
    counted = []
    real = GlobalTitleView._counted

    def counting(self, title_id, window, hi):
        counted.append(title_id)
        return real(self, title_id, window, hi)

    monkeypatch.setattr(GlobalTitleView, "_counted", counting)
    late = TitleStats()  # one play 90 minutes later: the 1h window moves on
    late.update({"t": "t0", "e": "play", "ts": MON + 90 * 60_000, "c": "FR", "f": 1})
    view.apply("t0", late.snapshot())
    reads = 0
    while True:
        counted.clear()
        got = view.lists(5)
        reads += 1
        assert len(counted) <= 2 * (10 + 1)  # two windows, a chunk and the changed title
        if got == [(c, w, view.scan(c, w, 5)) for c, w, _ in got]:
            break
        assert got == before  # the previous hop's lists meanwhile
        assert reads < 10
    assert reads >= 5  # 45 titles, 10 per read
    assert view.trending(ALL, "1h", 5) == [("t0", 1)]
