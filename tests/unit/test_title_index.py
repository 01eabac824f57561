"""The title index updated per changed title equals one built from scratch, by title id."""

from __future__ import annotations

import random

import numpy as np

from features.catalog import Catalog, parse_title
from online_models.titles import TitleIndex

GENRES = ["drama", "comedy", "thriller", "documentary", "horror", "kids"]
TONES = ["dark", "light", "tense", "warm"]


def random_title(rng: random.Random, tid: str) -> dict:
    rec: dict = {
        "title_id": tid,
        "name": tid,
        "genres": rng.sample(GENRES, rng.randint(0, 2)),
        "tags": {"tone": rng.sample(TONES, rng.randint(0, 2)), "new": [f"x{rng.randint(0, 30)}"]},
        "runtime_s": rng.choice([1500, 3000, 6000]),
        "regions": rng.choice([[], ["FR"], ["US", "FR"]]),
    }
    if rng.random() < 0.4:
        # Episode numbers are unique per series here: ties have no defined order.
        rec.update(series_id=f"s{rng.randint(0, 3)}", season=1, episode=int(tid[1:]) + 1)
    return rec


def by_id(ix: TitleIndex) -> dict:
    """Everything the index says about each live title, keyed by ids instead of rows."""
    out = {}
    fr, us = ix.available("FR"), ix.available(None)
    for tid, i in ix.index.items():
        if not ix.active[i]:
            continue
        row = ix.tag_matrix[i].toarray().ravel()
        out[tid] = (
            {ix.tags[j]: round(float(row[j]), 6) for j in np.flatnonzero(row)},
            float(ix.is_episode[i]),
            float(ix.long_runtime[i]),
            ix.primary_genre[i],
            ix.ids[ix.next_episode[i]] if i in ix.next_episode else None,
            bool(fr[i]),
            bool(us[i]),
        )
    return out


def test_incremental_updates_match_a_fresh_build():
    rng = random.Random(4)
    cat = Catalog()
    live = TitleIndex(cat)
    for step in range(400):
        tid = f"t{rng.randint(0, 60)}"
        if rng.random() < 0.2:
            cat.remove(tid)
        else:
            cat.upsert(parse_title(random_title(rng, tid)))
        if step % 7 == 0:
            live.available("FR")  # a cached mask must be patched, not stale
            live.sync()
            fresh = TitleIndex(cat)
            fresh.sync()
            assert by_id(live) == by_id(fresh), step
            # the content index follows too (exact at this size): same best scores
            taste = {"genre:drama": 1.0, "tone:dark": 0.5, "new:x3": 0.7}
            got = [
                ix.content_top(ix.tag_vector(taste), 5, keep=lambda r, ix=ix: ix.active[r])[1]
                for ix in (live, fresh)
            ]
            np.testing.assert_allclose(got[0], got[1], rtol=1e-6)


def test_rows_never_move_and_listeners_hear_growth():
    cat = Catalog()
    ix = TitleIndex(cat)
    sizes: list[int] = []
    ix.listeners.append(sizes.append)
    cat.upsert(parse_title({"title_id": "a", "name": "A", "genres": ["drama"]}))
    ix.sync()
    cat.upsert(parse_title({"title_id": "b", "name": "B", "genres": ["comedy"]}))
    cat.remove("a")
    ix.sync()
    assert ix.index == {"a": 0, "b": 1} and sizes == [1, 2]
    assert list(ix.active) == [False, True]
    cat.upsert(parse_title({"title_id": "a", "name": "A2", "genres": ["horror"]}))
    ix.sync()
    assert ix.index["a"] == 0 and ix.active[0] and ix.primary_genre[0] == "horror"
    assert ix.tags.index("genre:drama") < ix.tags.index("genre:horror")  # columns only grow


def test_country_masks_follow_the_titles_regions():
    """Built at a country's first request from the region index, patched on changes:
    always the per-title rule (available where listed, everywhere when unlisted)."""
    rng = random.Random(9)
    cat = Catalog()
    ix = TitleIndex(cat)
    asked: list[str] = []
    for step in range(300):
        tid = f"t{rng.randint(0, 40)}"
        if rng.random() < 0.2:
            cat.remove(tid)
        else:
            cat.upsert(parse_title(random_title(rng, tid)))
        ix.sync()
        if step % 50 == 0:
            asked.append(["FR", "US", "DE", "BR", "JP", "IN"][len(asked)])
        for country in asked:
            want = [t is not None and t.available_in(country) for t in ix.titles[: ix.n]]
            assert ix.available(country).tolist() == want, (step, country)
