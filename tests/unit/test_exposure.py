"""Exposure-aware re-ranking (online_models/exposure.py): the counts, the discount, the
exploring place of a row, and what they do to the rows the recommender serves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from features.catalog import parse_title
from online_models.engine import Engine
from online_models.exposure import RESCALE_AT, Exposure
from streams.tools.synthetic import SimConfig, Simulation


def _plain(ex: Exposure, n: int) -> Exposure:
    ex.resize(n)
    return ex


def test_a_title_shown_more_than_it_is_watched_loses_more():
    ex = _plain(Exposure(half_life_rows=0, weight=1.0, demand_weight=3.0), 4)
    for _ in range(10):
        ex.served([0, 1])  # 0 and 1 shown alike
    for _ in range(5):
        ex.demanded(1)  # ... but only 1 is watched
    p = ex.penalty(np.array([0, 1, 2]))
    assert p[0] > p[1] > 0
    assert p[2] == 0  # never shown: no discount
    # x = 10 / (20 / 4) = 2 and y = 5 / (5 / 4) = 4, written out
    assert p[0] == pytest.approx(math.log1p(2.0))
    assert p[1] == pytest.approx(math.log1p(2.0 / (1 + 3 * 4)))


def test_the_discount_is_relative_to_an_even_share_not_to_how_often_rows_are_served():
    """The worker serves a row per refresh, the replay one per fresh play: shares, not
    counts, decide."""
    a = _plain(Exposure(half_life_rows=0), 5)
    b = _plain(Exposure(half_life_rows=0), 5)
    for rows in ([0, 1], [0, 2], [0, 3]):
        a.served(rows)
        for _ in range(7):
            b.served(rows)
    a.demanded(2)
    b.demanded(2)
    rows = np.arange(5)
    assert np.allclose(a.penalty(rows), b.penalty(rows))
    assert a.under(rows).tolist() == b.under(rows).tolist() == [False, False, False, False, True]


def test_served_slots_fade_with_a_half_life_in_rows_and_survive_rescaling():
    ex = _plain(Exposure(half_life_rows=2), 3)
    ex.served([0])
    for _ in range(4):  # two half-lives of rows without title 0
        ex.served([1])
    assert ex.shown(np.array([0]))[0] == pytest.approx(0.25)
    # a half-life of one row doubles the unit each row: it is rescaled after 40 rows,
    # and the counts and the total read the same as the geometric sums
    fast = _plain(Exposure(half_life_rows=1), 2)
    for _ in range(45):
        fast.served([0])
    assert fast._unit < RESCALE_AT
    want = sum(0.5**j for j in range(45))
    assert fast.shown(np.array([0]))[0] == pytest.approx(want)
    assert fast.total == pytest.approx(want)


def test_exploring_places_per_row_and_state_round_trip():
    ex = Exposure()
    assert [ex.slots(k) for k in (5, 9, 10, 19, 20)] == [0, 0, 1, 1, 2]
    ex.resize(3)
    ex.served([0, 1])
    ex.demanded(1)
    other = Exposure()
    other.resize(3)
    other.load(ex.state())
    rows = np.arange(3)
    assert np.allclose(other.penalty(rows), ex.penalty(rows))
    assert other.under(rows).tolist() == ex.under(rows).tolist() == [False, False, True]


@pytest.fixture(scope="module")
def learned() -> tuple[list[dict], list[dict]]:
    sim = Simulation(SimConfig(users=200, titles=300, seed=11))
    return sim.catalog, list(sim.events(limit=12_000))


def _engine(catalog: list[dict], events: list[dict], **exposure: float) -> Engine:
    eng = Engine()
    for rec in catalog:
        eng.catalog.upsert(parse_title(rec))
    if exposure:
        eng.models.exposure = Exposure(**exposure)
        eng.models.titles.sync()
        eng.models.exposure.resize(eng.models.titles.n)
    for ev in events:
        eng.ingest(ev)
    return eng


def _serve(eng: Engine, events: list[dict], k: int = 10) -> list[list[str]]:
    users = list(dict.fromkeys(ev["user_id"] for ev in events))[:120]
    now = events[-1]["ts"]
    lists = []
    for _ in range(3):
        for u in users:
            lists.append([it["title_id"] for it in eng.score_message(u, now, now, k)["items"]])
    return lists


def test_exploring_widens_coverage_and_touches_only_the_last_place(learned):
    catalog, events = learned
    ranked = _serve(_engine(catalog, events, weight=0.0, explore_share=0.0), events)
    explored = _serve(_engine(catalog, events, weight=0.0), events)
    assert all(a[:9] == b[:9] for a, b in zip(ranked, explored, strict=True))
    changed = sum(a[9] != b[9] for a, b in zip(ranked, explored, strict=True))
    assert changed > len(ranked) // 10
    cover = {t for row in ranked for t in row}
    cover_explored = {t for row in explored for t in row}
    assert len(cover_explored) > len(cover) + 20
    assert all(len(set(row)) == len(row) == 10 for row in explored)


def test_the_discount_spreads_the_rows_but_spares_what_is_watched(learned):
    catalog, events = learned
    ranked = _serve(_engine(catalog, events, weight=0.0, explore_share=0.0), events)
    eng = _engine(catalog, events, explore_share=0.0)
    discounted = _serve(eng, events)
    again = _serve(_engine(catalog, events, explore_share=0.0), events)
    assert discounted == again  # no randomness: same events and requests, same rows
    blind = _serve(_engine(catalog, events, explore_share=0.0, demand_weight=0.0), events)

    def counts(lists: list[list[str]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in lists:
            for t in row:
                out[t] = out.get(t, 0) + 1
        return out

    c0, c1, c2 = counts(ranked), counts(discounted), counts(blind)
    assert len(c1) > len(c0) + 20  # more titles shown
    top = sorted(c0, key=lambda t: -c0[t])[:20]  # the most shown without the discount
    demand = eng.models.exposure.demand
    index = eng.models.titles.index
    by_demand = sorted(top, key=lambda t: demand[index[t]])
    kept = [c1.get(t, 0) / c0[t] for t in by_demand]
    # the watched half of them keeps more of its slots than the hardly watched half ...
    assert np.mean(kept[10:]) > np.mean(kept[:10]) + 0.15
    # ... and without the demand term all of them lose more
    assert sum(c2.get(t, 0) for t in top) < sum(c1.get(t, 0) for t in top) * 0.8


def test_the_explorer_respects_the_genre_cap():
    titles = [
        {"title_id": f"c{i}", "name": f"C{i}", "genres": ["crime"], "tags": {"tone": ["dark"]}}
        for i in range(14)
    ] + [
        {"title_id": f"o{i}", "name": f"O{i}", "genres": [("comedy", "drama", "horror")[i % 3]]}
        for i in range(12)
    ]
    eng = Engine()
    for t in titles:
        eng.catalog.upsert(parse_title(t))
    t0 = 1_767_571_200_000
    base = {"user_id": "u1", "device": "tv", "country": "FR", "duration_s": 1000}
    eng.ingest({**base, "event_id": "a", "event_type": "play", "title_id": "c0", "ts": t0})
    eng.ingest(
        {**base, "event_id": "b", "event_type": "complete", "title_id": "c0", "ts": t0 + 1}
        | {"position_s": 1000}
    )
    ix = eng.models.titles
    others = [ix.index[f"o{i}"] for i in range(12)]
    for _ in range(50):  # every other genre has filled rows: only crime titles are fresh
        eng.models.exposure.served(others)
    fresh = eng.models.exposure.under(np.arange(ix.n))
    assert {ix.ids[i][0] for i in np.flatnonzero(fresh)} == {"c"}
    items = eng.score_message("u1", t0 + 2, t0 + 3, k=10)["items"]
    genres = [eng.catalog.get(i["title_id"]).genres[0] for i in items]
    assert len(items) == 10
    assert genres.count("crime") == eng.models.max_per_genre  # no fifth crime title
