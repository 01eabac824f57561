"""Unit tests of the candidate sources, the ranker and the rows the recommender builds."""

import itertools

import numpy as np

from features.catalog import parse_title
from online_models.cowatch import CoWatch
from online_models.engine import Engine
from online_models.labels import outcome
from online_models.mf import ImplicitMF, blend_title_factors
from online_models.ranker import Ranker, auc
from online_models.trending import CountryTrending

T0 = 1_767_571_200_000


def test_cowatch_learns_pairs_and_names_the_anchor():
    cw = CoWatch()
    cw.resize(4)
    for k in range(5):  # five users watch 0 then 1; one user watches 0 then 2
        cw.observe(0, [], T0 + k)
        cw.observe(1, [0], T0 + k)
    cw.observe(2, [0], T0 + 10)
    scores, anchors = cw.scores([0])
    assert scores[1] > scores[2] > 0
    assert scores[3] == 0
    assert anchors[1] == 0 and anchors[3] == -1


def test_cowatch_state_round_trips():
    cw = CoWatch()
    cw.resize(3)
    cw.observe(0, [], T0)
    cw.observe(1, [0], T0)
    cw.observe(2, [1, 0], T0)
    other = CoWatch()
    other.resize(3)
    other.load(cw.state())
    assert np.allclose(other.scores([1, 0])[0], cw.scores([1, 0])[0])


def test_mf_separates_two_taste_groups():
    mf = ImplicitMF(k=8, negatives=2, seed=3)
    mf.resize(10)
    rng = np.random.default_rng(0)
    users = [mf.new_user(f"u{u}") for u in range(20)]
    for _ in range(3000):
        u = int(rng.integers(0, 20))
        group = range(0, 5) if u < 10 else range(5, 10)
        mf.learn(users[u], int(rng.choice(list(group))), 1.0, popularity=None)
    a, b = mf.scores(users[1]), mf.scores(users[15])
    assert a[:5].mean() > a[5:].mean()
    assert b[5:].mean() > b[:5].mean()


def test_blend_weights_by_updates_and_ignores_unseen():
    mine = np.array([[1.0, 1.0], [2.0, 2.0]], dtype=np.float32)
    peer = np.array([[3.0, 3.0], [9.0, 9.0]], dtype=np.float32)
    out = blend_title_factors(mine, np.array([1.0, 2.0]), [(peer, np.array([1.0, 0.0]))])
    assert out.tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_trending_is_per_country():
    t = CountryTrending()
    t.resize(3)
    t.observe(0, "FR", T0)
    t.observe(0, "FR", T0)
    t.observe(2, "US", T0)
    t.observe(2, "US", T0)
    t.observe(2, "US", T0)
    assert t.top("FR", T0, 1) == [0]
    assert t.top("US", T0, 1) == [2]
    assert t.top(None, T0, 1) == [2]  # global


def test_mass_added_by_an_exchange_samples_like_the_same_mass_observed_here():
    """The sampling tree rebuilt after an exchange's ``add`` draws what the tree kept up
    by ``observe`` draws, for the same counts."""
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 1_000, 5_000)
    here, there = CountryTrending(), CountryTrending()
    here.resize(1_000)
    there.resize(1_000)
    for i in rows.tolist():
        here.observe(i, "FR", T0)
    there.add(here.clock.ref_ts, {c: a.copy() for c, a in here.counts.items()})
    a = here.sample(np.random.default_rng(7), 2_000)
    b = there.sample(np.random.default_rng(7), 2_000)
    assert a is not None and b is not None
    assert (a == b).mean() > 0.999
    assert set(a.tolist()) <= set(rows.tolist())  # never a title nobody played


def test_a_few_titles_added_by_an_exchange_update_the_sampling_tree_in_place():
    """Below ``TREE_UPDATE_MAX`` changed titles the tree is updated, not rebuilt: it must
    equal the rebuilt one; an add of nothing leaves the tree and top lists alone."""
    rng = np.random.default_rng(5)
    t = CountryTrending()
    t.resize(5_000)
    for i in rng.integers(0, 5_000, 3_000).tolist():
        t.observe(i, "FR", T0)
    delta = np.zeros(5_000)
    delta[[3, 77, 4_999]] = [2.0, 0.5, 7.0]
    t.add(t.clock.ref_ts, {"*": delta, "FR": delta.copy()})
    kept = list(t._tree)
    t._rebuild_tree()
    assert np.allclose(kept, t._tree)
    assert 4_999 in t.top("FR", T0, 3)
    tree, top = list(t._tree), dict(t._top)
    t.add(t.clock.ref_ts, {"*": np.zeros(5_000)})
    assert t._tree == tree and t._top == top


def test_outcome_labels():
    assert outcome({"event_type": "stop", "position_s": 900, "duration_s": 1000}, None) == (
        "positive"
    )
    assert outcome({"event_type": "progress", "position_s": 100, "duration_s": 1000}, None) is None
    assert outcome({"event_type": "pause", "position_s": 999, "duration_s": 1000}, None) is None


def test_auc_and_prequential_ranker():
    assert auc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert auc([0.3, 0.6, 0.4, 0.5], [0, 1, 1, 0]) == 0.75
    assert auc([0.5], [1]) is None
    r = Ranker(["x"], warmup=0)
    rng = np.random.default_rng(1)
    for _ in range(2000):
        x = float(rng.random())
        r.learn("click", {"x": x}, bool(rng.random() < x))
    m = r.metrics()["click"]
    assert m["examples"] == 2000 and 0.65 < m["auc"] < 0.9
    assert m["log_loss"] < 0.69


def _engine(titles):
    eng = Engine()
    for t in titles:
        eng.catalog.upsert(parse_title(t))
    return eng


_ids = itertools.count()


def _ev(kind, tid, ts, **kw):
    return {
        "event_id": f"e{next(_ids)}",
        "event_type": kind,
        "user_id": "u1",
        "title_id": tid,
        "ts": ts,
        **kw,
    }


def test_rows_drop_finished_keep_in_progress_apart_and_give_reasons():
    titles = [
        {
            "title_id": f"t{i}",
            "name": f"T{i}",
            "genres": [g],
            "runtime_s": 1000,
            "tags": {"theme": ["mystery" if g == "crime" else "love"]},
        }
        for i, g in enumerate(["crime", "crime", "crime", "romance", "romance", "comedy"])
    ]
    titles.append({"title_id": "jp", "name": "JP", "genres": ["crime"], "regions": ["JP"]})
    eng = _engine(titles)
    eng.ingest(_ev("play", "t0", T0, position_s=0, duration_s=1000, country="FR"))
    eng.ingest(_ev("complete", "t0", T0 + 1000, position_s=1000, duration_s=1000))
    eng.ingest(_ev("play", "t1", T0 + 2000, position_s=0, duration_s=1000))
    eng.ingest(_ev("progress", "t1", T0 + 3000, position_s=300, duration_s=1000))
    msg = eng.score_message("u1", T0 + 3000, T0 + 3005)
    ids = [i["title_id"] for i in msg["items"]]
    assert "t0" not in ids  # finished
    assert "t1" not in ids  # in progress ...
    assert [c["title_id"] for c in msg["continue_watching"]] == ["t1"]  # ... has its own row
    assert "jp" not in ids  # not available in FR
    assert ids[0] == "t2"  # same tags as what the user finished
    assert any(r.startswith("matches: ") for r in msg["items"][0]["reasons"])
    assert msg["model_version"] == "hybrid-lr-1" and msg["event_ts"] == T0 + 3000


def test_genre_diversity_caps_a_genre_in_the_top_10():
    titles = [
        {"title_id": f"c{i}", "name": f"C{i}", "genres": ["crime"], "tags": {"tone": ["dark"]}}
        for i in range(12)
    ] + [
        {"title_id": f"o{i}", "name": f"O{i}", "genres": [("comedy", "drama", "horror")[i % 3]]}
        for i in range(12)
    ]
    eng = _engine(titles)
    eng.ingest(_ev("play", "c0", T0, position_s=0, duration_s=1000))
    eng.ingest(_ev("complete", "c0", T0 + 1, position_s=1000, duration_s=1000))
    items = eng.score_message("u1", T0 + 1, T0 + 2, k=10)["items"]
    genres = [eng.catalog.get(i["title_id"]).genres[0] for i in items]
    assert len(items) == 10
    assert genres.count("crime") == eng.models.max_per_genre


def test_cold_start_is_country_trending_and_new_titles_enter_by_content():
    titles = [{"title_id": f"t{i}", "name": f"T{i}", "genres": ["drama"]} for i in range(5)]
    titles.append({"title_id": "sci", "name": "S", "genres": ["scifi"]})
    eng = _engine(titles)
    for k in range(3):  # other users in FR play t3; in US t4
        eng.ingest({**_ev("play", "t3", T0 + k, country="FR"), "user_id": f"fr{k}"})
        eng.ingest({**_ev("play", "t4", T0 + k, country="US"), "user_id": f"us{k}"})
    eng.ingest({**_ev("impression", "t0", T0 + 20, country="FR"), "user_id": "cold"})
    cold = eng.score_message("cold", T0 + 20, T0 + 20)["items"]
    assert cold[0]["title_id"] == "t3"
    assert "trending in FR" in cold[0]["reasons"]
    # a scifi fan: the brand-new scifi title (no plays at all) comes first
    for k in range(20):  # some browsing, so the profile is trusted
        eng.ingest(_ev("impression", "t0", T0 + 21 + k))
    eng.ingest(_ev("play", "sci", T0 + 30, position_s=0, duration_s=1000))
    eng.ingest(_ev("complete", "sci", T0 + 40, position_s=1000, duration_s=1000))
    eng.catalog.upsert(parse_title({"title_id": "sci2", "name": "S2", "genres": ["scifi"]}))
    items = eng.score_message("u1", T0 + 50, T0 + 50)["items"]
    assert items[0]["title_id"] == "sci2"


def test_next_episode_is_recommended_with_its_reason():
    titles = [
        {
            "title_id": f"e{i}",
            "name": f"Show E{i}",
            "genres": ["drama"],
            "kind": "episode",
            "series_id": "s1",
            "season": 1,
            "episode": i,
            "runtime_s": 1000,
        }
        for i in (1, 2, 3)
    ] + [{"title_id": f"m{i}", "name": f"M{i}", "genres": ["drama"]} for i in range(5)]
    eng = _engine(titles)
    eng.ingest(_ev("play", "e1", T0, position_s=0, duration_s=1000))
    eng.ingest(_ev("complete", "e1", T0 + 1, position_s=1000, duration_s=1000))
    items = eng.score_message("u1", T0 + 1, T0 + 2)["items"]
    assert items[0]["title_id"] == "e2"
    assert "next episode after Show E1" in items[0]["reasons"]


def test_cowatch_relative_scores_peak_at_one_and_keep_the_order():
    cw = CoWatch(relative=True, target_norm=0.3, anchor_norm=0.0)
    cw.resize(4)
    for k in range(4):  # 0 then 1 four times, 0 then 2 once
        cw.observe(0, [], T0 + k)
        cw.observe(1, [0], T0 + k)
    cw.observe(2, [0], T0 + 10)
    scores, anchors = cw.scores([0])
    assert scores.max() == 1.0 and scores[1] == 1.0
    assert 0 < scores[2] < 1.0 and scores[3] == 0
    assert anchors[1] == 0


def test_cowatch_target_norm_trades_popularity_against_specificity():
    def learn(cw: CoWatch) -> np.ndarray:
        cw.resize(4)
        # 1 is watched with 0 three times and alone by many others; 2 only ever with 0, twice
        for k in range(3):
            cw.observe(0, [], T0 + k)
            cw.observe(1, [0], T0 + k)
        for k in range(40):
            cw.observe(1, [], T0 + 10 + k)
        for k in range(2):
            cw.observe(0, [], T0 + 60 + k)
            cw.observe(2, [0], T0 + 60 + k)
        return cw.scores([0])[0]

    raw = learn(CoWatch(target_norm=0.0, anchor_norm=0.0))
    cosine = learn(CoWatch())
    assert raw[1] > raw[2]  # raw counts: the more often co-watched title
    assert cosine[2] > cosine[1]  # cosine: the title watched only with 0
    # the anchor's own count divides every entry of its row alike: no change in order
    no_anchor = learn(CoWatch(anchor_norm=0.0))
    assert (np.argsort(-no_anchor[:3]) == np.argsort(-cosine[:3])).all()
