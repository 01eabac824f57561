"""A refresh's output is pinned to a plain reference: ``Recommender.recommend`` (batched,
cached) returns the same items, order, scores and reasons as the per-item algorithm
written out below, for every user of a seeded simulation, with and without blends and
candidate mixes, and while the models keep learning between refreshes (and the rows
served so far move the exposure-aware re-ranking, online_models/exposure.py)."""

from __future__ import annotations

import numpy as np
import pytest

from features.catalog import parse_title
from online_models.engine import Engine
from online_models.recommender import _SOURCE_COLS, SOURCES, RecItem, Recommender, Rows
from streams.tools.synthetic import SimConfig, Simulation


def reference_reason(rec: Recommender, src, i, ctx, profile, liked) -> str | None:
    ix = rec.titles
    if src == "cowatch":
        hit = np.flatnonzero(ctx.cw_idx == i)
        t = ix.titles[int(ctx.cw_anchor[hit[0]])] if len(hit) else None
        return f"because you watched {t.name}" if t else None
    if src == "seq":
        for a in ctx.sequence[: rec.sequence.window]:
            if i in rec.sequence.rows.get(a, ()):
                t = ix.titles[a]
                return f"because you watched {t.name}" if t else None
        return None
    if src == "next_ep":
        a = ctx.next_from.get(i)
        t = ix.titles[a] if a is not None else None
        return f"next episode after {t.name}" if t else None
    if src == "trend":
        return f"trending in {profile.country}" if profile.country else "trending now"
    if src == "content":
        tags = [t for t in liked if t in ix.titles[i].tag_keys]
        return "matches: " + ", ".join(t.split(":", 1)[1] for t in tags[:3]) if tags else None
    if src == "mf":
        return "viewers with your taste watched this"
    return "popular now"


def reference_item(rec, i, score, contrib, ctx, profile, liked) -> RecItem:
    title = rec.titles.titles[i]
    parts = sorted(
        ((float(contrib[c]), s) for c, s in zip(_SOURCE_COLS, SOURCES, strict=True)),
        reverse=True,
    )
    reasons = []
    for v, src in parts[:2]:
        text = reference_reason(rec, src, i, ctx, profile, liked) if v > 0.05 else None
        if text:
            reasons.append(text)
    art = title.artwork[0] if title.artwork else None
    return RecItem(title.title_id, round(score, 5), tuple(reasons or ["popular now"]), art)


def reference_penalty(rec: Recommender, i: int) -> float:
    """The exposure discount of title ``i``, from the counts written out."""
    ex = rec.exposure
    n = rec.titles.n
    x = ex.shown(np.array([i]))[0] / (ex.total / n) if ex.total else 0.0
    y = ex.demand[i] / (ex.demand_total / n) if ex.demand_total else 0.0
    return ex.weight * float(np.log1p(x / (1 + ex.demand_weight * y))), x


def reference_recommend(rec: Recommender, uid, profile, now_ts, k, blend=None, sources=None):
    """The refresh one title at a time: score the candidates (less their exposure
    discount), take them best first with at most ``max_per_genre`` per genre, widen to
    popular then the first catalog rows if short, fill from the genre overflow in score
    order; then the last ``k // 10`` places go to the best candidates shown less than
    ``explore_below`` of an even share (within the genre cap), if there are any."""
    ctx = rec.context(uid, profile, now_ts)
    keep = rec.allow(uid, profile)
    liked = [t for t, w in profile.top_tags(10) if w > 0]
    items, chosen, per_genre, overflow = [], set(), {}, []
    first = []
    for wider in (False, True):
        if len(items) >= k:
            break
        pool = rec.candidates(ctx, keep, sources=sources)
        if wider:
            bound = 4 * rec.per_source
            pool = np.array(
                [*rec.popular.top(None, now_ts, bound), *range(min(rec.titles.n, bound))],
                dtype=np.int64,
            )
            pool = pool[keep(pool)]
        pool = np.array([i for i in dict.fromkeys(pool.tolist()) if i not in chosen], np.int64)
        if len(pool) == 0:
            continue
        scores, contrib = rec.score(rec.features(ctx, pool), blend)
        scores = scores - np.array([reference_penalty(rec, int(i))[0] for i in pool])
        if not wider:
            best = np.argsort(-scores, kind="stable")
            first = [(int(pool[o]), float(scores[o]), contrib[o]) for o in best]
        for o in np.argsort(-scores, kind="stable"):
            i = int(pool[o])
            g = rec.titles.primary_genre[i]
            if g and per_genre.get(g, 0) >= rec.max_per_genre:
                overflow.append((i, float(scores[o]), contrib[o]))
                continue
            per_genre[g] = per_genre.get(g, 0) + 1
            chosen.add(i)
            items.append(reference_item(rec, i, float(scores[o]), contrib[o], ctx, profile, liked))
            if len(items) >= k:
                break
    overflow.sort(key=lambda t: -t[1])
    for i, sc, co in overflow:
        if len(items) < k and i not in chosen:
            chosen.add(i)
            items.append(reference_item(rec, i, sc, co, ctx, profile, liked))
    m = k // 10
    if len(items) == k:
        index = rec.titles.index
        head = items[: k - m]
        genres = [rec.titles.primary_genre[index[it.title_id]] for it in head]
        explorers = []
        for i, sc, co in first:  # best first
            g = rec.titles.primary_genre[i]
            if len(explorers) == m or reference_penalty(rec, i)[1] >= rec.exposure.explore_below:
                continue
            if rec.titles.ids[i] in {it.title_id for it in head}:
                continue
            if g and genres.count(g) >= rec.max_per_genre:
                continue
            genres.append(g)
            explorers.append(reference_item(rec, i, sc, co, ctx, profile, liked))
        if explorers:
            ids = {it.title_id for it in explorers}
            rest = [it for it in items[k - m :] if it.title_id not in ids]
            items = [*head, *explorers, *rest][:k]
    return Rows(items, rec.continue_row(profile, k))


@pytest.fixture
def sim_engine():
    sim = Simulation(SimConfig(users=300, titles=150, seed=7))
    events = list(sim.events(limit=8_000))
    eng = Engine()
    for rec in sim.catalog:
        eng.catalog.upsert(parse_title(rec))
    return eng, events


def assert_same(got: Rows, want: Rows) -> None:
    assert [it.title_id for it in got.items] == [it.title_id for it in want.items]
    assert [it.reasons for it in got.items] == [it.reasons for it in want.items]
    assert [it.artwork_id for it in got.items] == [it.artwork_id for it in want.items]
    np.testing.assert_allclose(
        [it.score for it in got.items], [it.score for it in want.items], atol=1e-5
    )
    assert got.continue_watching == want.continue_watching


@pytest.mark.parametrize(
    "blend, sources",
    [
        (None, None),
        ({"seq": 0.0, "content": 3.0}, None),
        (None, ("trend", "pop", "content")),
        (None, ("cowatch",)),  # few candidates: the widening and the genre overflow run
    ],
)
def test_recommend_matches_the_reference_while_learning(sim_engine, blend, sources):
    eng, events = sim_engine
    rec = eng.models
    for ev in events[:5000]:
        eng.ingest(ev)
    checked = explored = 0
    for step, ev in enumerate(events[5000:8000]):
        eng.ingest(ev)  # refreshes between learning steps: nothing stale may be served
        if step % 13:
            continue
        uid = ev["user_id"]
        profile = eng.profile(uid)
        ts = max(ev["ts"], profile.last_ts)
        for k in (10, 20):
            want = reference_recommend(rec, uid, profile, ts, k, blend, sources)
            last = rec.titles.index[want.items[-1].title_id]
            explored += bool(rec.exposure.under(np.array([last]))[0])  # a fresh last place
            assert_same(rec.recommend(uid, profile, ts, k, blend, sources), want)
            checked += 1
    assert checked > 400
    assert explored > 0  # the exploring places were exercised
