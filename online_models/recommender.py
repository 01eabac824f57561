"""Candidates, ranking and the refreshed rows: the models the worker and the replay share.

``Recommender.observe(event, profile)`` learns from one validated event (call it
before the profile folds the event in); ``Recommender.recommend(user, profile,
now)`` returns the main row (ranked, diverse, with reasons) and the continue-
watching row. Candidate sources, each a documented module:

* co-watch item-to-item similarity (:mod:`online_models.cowatch`),
* item-to-item transitions from the viewer's short-term play sequence
  (:mod:`online_models.sequence`),
* implicit matrix factorisation (:mod:`online_models.mf`),
* content: the profile's tag affinity against title tag vectors (new titles with
  no plays enter here),
* trending in the user's country (:mod:`online_models.trending`),
* next episode of series the user is watching,
* continue watching: in-progress titles, in their own row.

Two stages, neither of which reads every title: each source proposes its
``per_source`` best allowed titles from an index of its own (neighbour rows, nearest-title
indexes over tag vectors and MF factors, top lists; see :meth:`Recommender.candidates`),
and feature rows are built for that union only (:meth:`Recommender.features`) and scored
by the online ranker (:mod:`online_models.ranker`). See docs/models.md.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.catalog import Catalog
from features.user_features import FINISHED_RATIO, RECENT_MAX
from features.user_profile import UserProfile
from online_models.cowatch import CoWatch
from online_models.exposure import Exposure
from online_models.labels import POSITIVE_RATIO, outcome, watched_ratio
from online_models.mf import ImplicitMF
from online_models.ranker import Ranker
from online_models.sequence import ItemSequence
from online_models.titles import TitleIndex, unique_rows
from online_models.trending import CountryTrending
from online_models.user_state import UserState, UserStateError

MODEL_VERSION = "hybrid-lr-1"
SOURCES = ("content", "mf", "cowatch", "seq", "next_ep", "trend", "pop")
DEVICES = ("tv", "mobile", "web", "tablet")
FEATURES = [
    *SOURCES,
    "liked",
    "disliked",
    "seen",
    "is_episode",
    "long_runtime",
    "completion_rate",
    "pause_rate",
    "skip_rate",
    "skip_x_episode",
    "mobile_x_long",
    "watch_hours",
    "hour_sin",
    "hour_cos",
    *(f"device_{d}" for d in DEVICES),
    "cold",
]
_F = {f: i for i, f in enumerate(FEATURES)}
_TAG_COLS = [_F["content"], _F["liked"], _F["disliked"]]
_SOURCE_COLS = [_F[s] for s in SOURCES]
# Used before the ranker has seen ``warmup`` examples of each kind.
# Chosen on the first halves of the synthetic log and the shared real logs (one setting
# for all; docs/models.md): the sequence source leads, tag content mostly breaks ties.
PRIOR = {
    "content": 1.0,
    "mf": 0.5,
    "cowatch": 2.0,
    "seq": 6.0,
    "next_ep": 3.0,
    "trend": 0.25,
    "pop": 0.25,
}
# The co-watch source as co-occurrence over the viewer's last 10 positives (issue 10):
# every pair in the window counts alike, every anchor scores alike, a pair's count is
# divided by sqrt(n[anchor] * n[neighbour]) (the cosine), no decay within a log's span
# (a 100-year half-life; 30 days starved MovieLens' 21 years), rows of 1,000, and the
# viewer's scores relative to their best (1.0), so the prior weight means the same on any
# log. Chosen on the first halves of MovieLens, KuaiRand and the synthetic log together
# (docs/models.md, "Quality on real logs"): the cosine over n[t] ** 0.3 alone kept
# MovieLens' gain and won back part of what KuaiRand had lost.
COWATCH = {
    "half_life_ms": 100 * 365 * 86_400_000,
    "max_neighbors": 1000,
    "position_decay": 1.0,
    "anchor_decay": 1.0,
    "target_norm": 0.5,
    "anchor_norm": 0.5,
    "relative": True,
}
# The sequence source's transitions fade with a 2-year half-life in event time (issue 10):
# MovieLens' 21-year log kept 1990s transitions at full weight; the half-life was chosen on
# that log's first half (docs/models.md, "third step"); on logs of days or weeks (KuaiRand,
# the synthetic one) it changes weights by about 1%.
SEQUENCE = {"half_life_ms": 2 * 365 * 86_400_000}
SEQUENCE_MAX = 20
# Exposure-aware re-ranking (issue 10, catalog coverage; online_models/exposure.py): a
# candidate shown far more than it is watched loses weight * log1p(x / (1 + 3 y)) (x, y:
# its share of served slots and of positive viewings against an even share; served slots
# fade with a half-life of 5,000 served rows), and the last slot of ten goes to the
# best-scored candidate shown less than 0.02 of an even share. Chosen on the first halves
# of KuaiRand, MovieLens (both modes) and the synthetic log (docs/models.md).
EXPOSURE = {
    "half_life_rows": 5000,
    "weight": 1.6,
    "demand_weight": 3.0,
    "explore_below": 0.02,
    "explore_share": 0.1,
}
# A fresh play teaches the sequence model with weight 1 when it starts; its outcome
# grades it: a positive viewing adds SEQ_POSITIVE, an early abandon at watched ratio
# r takes away SEQ_ABANDON * (1 - r / POSITIVE_RATIO).
SEQ_POSITIVE = 0.5
SEQ_ABANDON = 0.5
POSITIVES_MAX = 1000
IMPRESSION_TTL_MS = 3 * 3_600_000


@dataclass(frozen=True, slots=True)
class RecItem:
    title_id: str
    score: float
    reasons: tuple[str, ...]
    artwork_id: str | None


@dataclass(slots=True)
class Rows:
    items: list[RecItem]
    continue_watching: list[RecItem]


@dataclass(slots=True)
class UserContext:
    """What the feature rows of one user at one time share: each source's scores for the
    few titles it knows about, tag vectors, and the columns that are the same on every row.
    Built in O(the user's history); rows for any titles come from
    :meth:`Recommender.features`."""

    user_id: str
    # Not the UserState itself: the state keeps its pending impressions' context, and a
    # context pointing back would make every such record a reference cycle that only a
    # full collection frees once the record leaves the cache.
    mf: np.ndarray | None  # the user's MF vector (learned in place, so always current)
    seen: dict[int, int]  # the user's live ``UserState.seen``
    country: str | None
    content: np.ndarray | None  # TitleIndex.tag_vector, normalised and trusted by events
    mf_conf: float
    cw_idx: np.ndarray  # co-watch: titles ascending, their scores and strongest anchors
    cw_val: np.ndarray
    cw_anchor: np.ndarray
    seq_idx: np.ndarray  # sequence: titles ascending and their scores
    seq_val: np.ndarray
    next_ep: dict[int, float]  # next episode -> score
    next_from: dict[int, int]  # next episode -> the watched episode it follows
    sequence: list[int]
    base: np.ndarray  # the per-user columns (same on every row)
    tag_cols: np.ndarray | None  # content, liked, disliked side by side (one product)
    skip_rate: float
    mobile: bool

    def anchor(self, i: int) -> int:
        """The co-watch anchor of title ``i`` (-1: none)."""
        j = int(np.searchsorted(self.cw_idx, i))
        return int(self.cw_anchor[j]) if j < len(self.cw_idx) and self.cw_idx[j] == i else -1


@dataclass(slots=True)
class Allowed:
    """A filter on candidate rows (available here and not blocked): applied to the few
    rows a source proposes, so no catalog-long mask is built per request."""

    avail: np.ndarray  # TitleIndex's cached availability mask (or ``active``)
    blocked: np.ndarray  # rows never to show: finished, in progress, watched

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        ok = self.avail[rows]
        b = self.blocked
        if len(b) and len(rows):
            ok &= b[np.minimum(np.searchsorted(b, rows), len(b) - 1)] != rows
        return ok


def _lookup(keys: np.ndarray, vals: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``vals`` at ``rows`` for sorted ``keys`` (0 where absent)."""
    if len(keys) == 0:
        return np.zeros(len(rows), dtype=np.float32)
    j = np.minimum(np.searchsorted(keys, rows), len(keys) - 1)
    return np.where(keys[j] == rows, vals[j], 0.0).astype(np.float32)


class Recommender:
    model_version = MODEL_VERSION

    def __init__(
        self,
        catalog: Catalog,
        per_source: int = 60,
        max_per_genre: int = 4,
        random_negatives: int = 4,
        seed: int = 0,
    ) -> None:
        self.catalog = catalog
        self.titles = TitleIndex(catalog)
        self.cowatch = CoWatch(**COWATCH)
        self.sequence = ItemSequence(**SEQUENCE)
        self.exposure = Exposure(**EXPOSURE)
        self.mf = ImplicitMF(seed=seed)
        self.trending = CountryTrending(half_life_ms=12 * 3_600_000)
        self.popular = CountryTrending(half_life_ms=7 * 86_400_000)
        self.ranker = Ranker(FEATURES)
        self.per_source = per_source
        self.max_per_genre = max_per_genre
        self.random_negatives = random_negatives
        self.rng = np.random.default_rng(seed)
        for model in (
            self.cowatch,
            self.sequence,
            self.mf,
            self.trending,
            self.popular,
            self.exposure,
        ):
            self.titles.listeners.append(model.resize)
        self._ctx: tuple[str, int, int, UserState, UserContext] | None = None
        self._prior = np.zeros(len(FEATURES), dtype=np.float32)
        for f, v in PRIOR.items():
            self._prior[_F[f]] = v
        self.learn_steps = 0
        self.unreadable_states = 0
        # The worker's title-side exchange (online_models/federation.py), when it has one.
        self.exchange: Any = None
        # Reference only (``reelstream replay --exact-scan``): the main row ranks every
        # allowed title instead of the candidate union, to measure what two stages cost.
        self.exact_scan = False

    def state(self, user_id: str, profile: UserProfile) -> UserState:
        """The models' part of the user's record (``profile.model``), read on first use.

        A stored state that cannot be read restarts empty (and is logged by the caller's
        metrics as a fresh user); pending impressions read back get their context again.
        """
        st = profile.model
        if isinstance(st, UserState):
            return st
        fresh = UserState(ids=self.titles.ids)
        if st is not None:
            self.titles.sync()
            try:
                fresh = UserState.from_dict(st, self.titles.index, len(FEATURES), self.mf.k)
                fresh.ids = self.titles.ids
            except UserStateError:
                self.unreadable_states += 1
        profile.model = fresh
        if fresh.impressions:
            fresh.impression_ctx = self.context(user_id, profile, fresh.impression_ts)
        return fresh

    # --- features -----------------------------------------------------------------

    def context(self, user_id: str, profile: UserProfile, now_ts: int) -> UserContext:
        """The user's side of the features at one time (no per-title work).

        Cached per (user, ts, learn step): the rows of one impression request share it.
        """
        self.titles.sync()
        st = self.state(user_id, profile)
        key = (user_id, now_ts, self.learn_steps)
        if self._ctx is not None and self._ctx[:3] == key and self._ctx[3] is st:
            return self._ctx[4]
        ix = self.titles
        content = None
        if profile.affinity and len(ix.tags):
            vec = ix.tag_vector(profile.affinity)
            norm = float(np.linalg.norm(vec))
            if norm > 0:
                content = vec / norm * min(1.0, profile.events / 20)
        tag_vecs = []
        for tags, total in ((st.liked, st.completes), (st.disliked, st.abandons)):
            tag_vecs.append(ix.tag_vector(tags) / (total + 1.0) if tags and len(ix.tags) else None)
        cw_idx, cw_val, cw_anchor = self.cowatch.sparse(st.recent)
        seq_idx, seq_val = self.sequence.sparse(st.sequence)
        next_from: dict[int, int] = {}
        next_ep: dict[int, float] = {}
        for rank, a in enumerate(st.recent[:5]):
            b = ix.next_episode.get(a)
            if b is not None and b not in next_from:
                next_from[b] = a
                next_ep[b] = 0.8**rank
        base = np.zeros(len(FEATURES), dtype=np.float32)
        plays = max(1, st.plays)
        skip_rate = st.skips / max(1, st.episode_plays)
        device = st.device or profile.device
        base[_F["completion_rate"]] = st.completes / plays
        base[_F["pause_rate"]] = min(3.0, st.pauses / max(0.25, st.watched_s / 3600.0))
        base[_F["skip_rate"]] = skip_rate
        base[_F["watch_hours"]] = math.log1p(st.watched_s / 3600.0)
        hour = (now_ts // 3_600_000) % 24
        base[_F["hour_sin"]] = math.sin(2 * math.pi * hour / 24)
        base[_F["hour_cos"]] = math.cos(2 * math.pi * hour / 24)
        if device in DEVICES:
            base[_F[f"device_{device}"]] = 1.0
        base[_F["cold"]] = 1.0 if len(st.positives) < 3 else 0.0
        vecs = (content, *tag_vecs)
        tag_cols = None
        if any(v is not None for v in vecs):
            tag_cols = np.zeros((len(ix.tags) + 1, 3))
            for j, v in enumerate(vecs):
                if v is not None:
                    tag_cols[:, j] = v
        ctx = UserContext(
            user_id=user_id,
            mf=st.mf,
            seen=st.seen,
            country=profile.country,
            content=content,
            mf_conf=self.mf.confidence(st.mf_n) if st.mf is not None else 0.0,
            cw_idx=cw_idx,
            cw_val=cw_val,
            cw_anchor=cw_anchor,
            seq_idx=seq_idx,
            seq_val=seq_val,
            next_ep=next_ep,
            next_from=next_from,
            sequence=st.sequence,
            base=base,
            tag_cols=tag_cols,
            skip_rate=skip_rate,
            mobile=device == "mobile",
        )
        self._ctx = (*key, st, ctx)
        return ctx

    def features(self, ctx: UserContext, rows: np.ndarray | list[int]) -> np.ndarray:
        """Feature rows (len(rows) x FEATURES) of these titles for the context's user: the
        cost of the rows asked for, whatever the catalog size."""
        rows = np.asarray(rows, dtype=np.int64)
        ix = self.titles
        x = np.repeat(ctx.base[None, :], len(rows), axis=0)
        if len(rows) == 0:
            return x
        if ctx.tag_cols is not None:
            x[:, _TAG_COLS] = ix.tag_scores(rows, ctx.tag_cols)
        if ctx.mf_conf > 0:
            x[:, _F["mf"]] = np.tanh(self.mf.scores(ctx.mf, rows)) * ctx.mf_conf
        x[:, _F["cowatch"]] = np.minimum(_lookup(ctx.cw_idx, ctx.cw_val, rows), 2.0)
        x[:, _F["seq"]] = np.minimum(_lookup(ctx.seq_idx, ctx.seq_val, rows), 2.0)
        rl = rows.tolist()
        if ctx.next_ep:
            x[:, _F["next_ep"]] = [ctx.next_ep.get(i, 0.0) for i in rl]
        x[:, _F["trend"]] = self.trending.values(ctx.country, rows)
        peak = self.popular.peak(None)
        if peak > 0:
            x[:, _F["pop"]] = np.log1p(self.popular.raw(None)[rows]) / math.log1p(peak)
        if ctx.seen:
            x[:, _F["seen"]] = [i in ctx.seen for i in rl]
        x[:, _F["is_episode"]] = ix.is_episode[rows]
        x[:, _F["long_runtime"]] = ix.long_runtime[rows]
        x[:, _F["skip_x_episode"]] = ctx.skip_rate * ix.is_episode[rows]
        if ctx.mobile:
            x[:, _F["mobile_x_long"]] = ix.long_runtime[rows]
        return x

    # --- learning -----------------------------------------------------------------

    def observe(self, ev: dict[str, Any], profile: UserProfile) -> None:
        """Learn from one validated event; ``profile`` is the user's state before it."""
        self.titles.sync()
        idx = self.titles.index.get(ev["title_id"])
        if idx is None:
            return
        uid = ev["user_id"]
        st = self.state(uid, profile)
        etype = ev["event_type"]
        ts = ev["ts"]
        if ev.get("device"):
            st.device = ev["device"]
        title = self.titles.titles[idx]
        if etype == "impression":
            if ts - st.impression_ts > 1000 or ts - st.impression_ts < 0:
                self._flush_impressions(st)
                st.impression_ts = ts
                st.impression_ctx = None
            if st.impression_ctx is None:
                st.impression_ctx = self.context(uid, profile, ts)
            # The row is built when it is learned (or checkpointed), with the request's
            # others in one call: from the user's side as of the request's first impression.
            st.impressions[idx] = None
            return
        if etype == "play":
            fresh = ev["title_id"] not in profile.in_progress and idx not in st.positives
            st.plays += 1
            st.episode_plays += int(self.titles.is_episode[idx])
            st.last_pos[idx] = float(ev.get("position_s") or 0.0)
            if fresh:
                row = self._learn_click(st, idx, self.context(uid, profile, ts), ts)
                self._sequence(st, idx, 1.0, ts)
                st.playing[idx] = row
                if len(st.playing) > 20:
                    st.playing.pop(next(iter(st.playing)))
            # Counted after the click rows are built: a title's own play must not lift the
            # trend and popularity it was chosen under (the learned weights would lean on it).
            self.trending.observe(idx, ev.get("country") or profile.country, ts)
            self.popular.observe(idx, None, ts)
            st.seen.pop(idx, None)
            st.seen[idx] = ts
            if len(st.seen) > POSITIVES_MAX:
                del st.seen[next(iter(st.seen))]
            return
        if etype == "pause":
            st.pauses += 1
        elif etype == "intro_skip":
            st.skips += 1
        pos = ev.get("position_s")
        if pos is not None and etype in ("progress", "stop", "complete"):
            last = st.last_pos.get(idx, 0.0)
            st.watched_s += min(900.0, max(0.0, float(pos) - last))
            st.last_pos[idx] = float(pos)
        out = outcome(ev, title)
        if out == "positive" and idx not in st.positives:
            self._grade(st, idx, SEQ_POSITIVE, ts)
            self._positive(uid, st, idx, ts, watched_ratio(ev, title) or 1.0)
        elif out == "abandon" and idx not in st.positives:
            r = min(watched_ratio(ev, title) or 0.0, POSITIVE_RATIO)
            self._grade(st, idx, -SEQ_ABANDON * (1.0 - r / POSITIVE_RATIO), ts)
            st.abandons += 1
            self._credit(st.disliked, title)
            row = st.playing.pop(idx, None)
            if row is not None:
                self._learn_vec("watch", row, False)
            r = watched_ratio(ev, title) or 0.0
            if r >= 0.25:  # a partial watch: a weak positive for the factorisation
                self._learn_mf(uid, st, idx, r)
        if etype in ("stop", "complete"):
            st.last_pos.pop(idx, None)

    def _sequence(self, st: UserState, idx: int, w: float, ts: int) -> None:
        """Learn the transition into ``idx`` from the viewer's recent plays, then push it."""
        before = [i for i in st.sequence if i != idx]
        self.sequence.learn_one(before, idx, w, ts)
        st.sequence = [idx, *before][:SEQUENCE_MAX]
        self.learn_steps += 1

    def _grade(self, st: UserState, idx: int, dw: float, ts: int) -> None:
        """Re-weight the play of ``idx`` by its outcome (graded feedback)."""
        if not dw or idx not in st.sequence:
            return
        pos = st.sequence.index(idx)
        self.sequence.correct(st.sequence[pos + 1 :], idx, dw, ts)
        self.learn_steps += 1

    def _positive(self, uid: str, st: UserState, idx: int, ts: int, ratio: float) -> None:
        st.completes += 1
        self._credit(st.liked, self.titles.titles[idx])
        row = st.playing.pop(idx, None)
        if row is not None:
            self._learn_vec("watch", row, True)
        self.cowatch.observe(idx, st.recent, ts)
        self.exposure.demanded(idx)
        self._learn_mf(uid, st, idx, max(ratio, POSITIVE_RATIO))
        st.positives[idx] = ts
        if len(st.positives) > POSITIVES_MAX:
            del st.positives[next(iter(st.positives))]
        if idx in st.recent:
            st.recent.remove(idx)
        st.recent.insert(0, idx)
        del st.recent[RECENT_MAX:]

    def _learn_mf(self, uid: str, st: UserState, idx: int, weight: float) -> None:
        if st.mf is None:
            st.mf = self.mf.new_user(uid)
        self.mf.learn(st.mf, idx, weight, self.popular)
        st.mf_n += 1
        self.learn_steps += 1

    @staticmethod
    def _credit(tags: dict[str, float], title: Any) -> None:
        if title is None:
            return
        for tag in title.tag_keys:
            tags[tag] = tags.get(tag, 0.0) + 1.0

    def _learn_vec(self, model: str, row: np.ndarray, y: bool, evaluate: bool = True) -> None:
        self.ranker.learn(
            model,
            {f: float(v) for f, v in zip(FEATURES, row.tolist(), strict=True) if v},
            y,
            evaluate,
        )
        self.learn_steps += 1

    def impression_rows(self, st: UserState) -> dict[int, np.ndarray]:
        """The pending impressions' feature rows, building the missing ones in one call."""
        todo = [i for i, row in st.impressions.items() if row is None]
        if todo and st.impression_ctx is not None:
            for i, row in zip(todo, self.features(st.impression_ctx, todo), strict=True):
                st.impressions[i] = row
        return {i: row for i, row in st.impressions.items() if row is not None}

    def _flush_impressions(self, st: UserState) -> None:
        for row in self.impression_rows(st).values():
            self._learn_vec("click", row, False)
        st.impressions.clear()

    def _learn_click(self, st: UserState, idx: int, ctx: UserContext, ts: int) -> np.ndarray:
        """Learn the play of ``idx`` as a click (and the negatives it implies); returns the
        played title's feature row."""
        shown = st.impressions and 0 <= ts - st.impression_ts <= IMPRESSION_TTL_MS
        if shown and idx in st.impressions:
            row = self.features(ctx, [idx])[0]
            st.impressions.pop(idx)
            self._flush_impressions(st)
            self._learn_vec("click", row, True)
            return row
        if not shown:
            st.impressions.clear()
        # Not picked from a shown row: what the user chose from the whole catalog.
        # Negatives: titles the recommender itself would have proposed (hard negatives,
        # the distribution it ranks at serving time), topped up with uniform ones.
        cand = self.candidates(ctx, Allowed(self.titles.active, np.zeros(0, dtype=np.int64)))
        cand = cand[cand != idx]
        hard = self.rng.choice(cand, size=min(len(cand), self.random_negatives), replace=False)
        easy = self.rng.integers(0, self.titles.n, size=1)
        negs = [j for j in [*hard.tolist(), *easy.tolist()] if j != idx]
        rows = self.features(ctx, [idx, *negs])
        self._learn_vec("click", rows[0], True)
        for x in rows[1:]:
            self._learn_vec("click", x, False, evaluate=False)
        return rows[0]

    # --- serving ------------------------------------------------------------------

    def candidates(
        self,
        ctx: UserContext,
        keep: Allowed,
        by_source: dict[str, np.ndarray] | None = None,
        sources: Collection[str] | None = None,
    ) -> np.ndarray:
        """Union of each source's ``per_source`` best titles that ``keep`` accepts (catalog
        rows, ascending; at most ``len(SOURCES) * per_source``), each read from an index
        that never scans the catalog:

        * content: the index over the titles' tag vectors (:meth:`TitleIndex.content_top`),
        * mf: the nearest-title index of the factorisation (:meth:`ImplicitMF.nearest`),
        * cowatch, seq: the neighbour rows of the user's recent titles,
        * next_ep: the series links of the user's recent episodes,
        * trend, pop: the exactly kept top lists (:meth:`CountryTrending.top`).

        ``by_source`` (for measurements) receives each source's picks; ``sources``: only
        these propose (an experiment arm's candidate mix).
        """
        k = self.per_source
        picks: list[np.ndarray] = []

        def use(src: str) -> bool:
            return sources is None or src in sources

        def best(src: str, rows: np.ndarray, vals: np.ndarray, kept: bool = False) -> None:
            if not use(src):
                return
            ok = vals > 0
            rows, vals = rows[ok], vals[ok]
            if len(rows) and not kept:
                ok = keep(rows)
                rows, vals = rows[ok], vals[ok]
            if len(rows) > k:
                rows = rows[np.argpartition(-vals, k - 1)[:k]]
            picks.append(rows)
            if by_source is not None:
                by_source[src] = rows

        if ctx.content is not None and use("content"):
            best("content", *self.titles.content_top(ctx.content, k, keep), kept=True)
        if ctx.mf_conf > 0 and use("mf"):
            best("mf", *self.mf.nearest(ctx.mf, k, keep), kept=True)
        best("cowatch", ctx.cw_idx, ctx.cw_val)
        best("seq", ctx.seq_idx, ctx.seq_val)
        if ctx.next_ep:
            best(
                "next_ep",
                np.fromiter(ctx.next_ep, dtype=np.int64, count=len(ctx.next_ep)),
                np.fromiter(ctx.next_ep.values(), dtype=np.float64, count=len(ctx.next_ep)),
            )
        for src, model, country in (
            ("trend", self.trending, ctx.country),
            ("pop", self.popular, None),
        ):
            if not use(src):
                continue
            top = np.asarray(model.top(country, 0, model.top_size), dtype=np.int64)
            if len(top):
                picks.append(top[keep(top)][:k])
                if by_source is not None:
                    by_source[src] = picks[-1]
        if not picks:
            return np.zeros(0, dtype=np.int64)
        return unique_rows(np.concatenate(picks))

    def score(
        self, x: np.ndarray, blend: Mapping[str, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, per-feature contributions) for rows of ``x``; ``blend`` replaces the
        prior weight of the sources it names (an experiment arm's blend).

        score = ranker logits (once warmed up) + the fixed ``PRIOR`` blend of source scores.
        The prior keeps the learned correction anchored: on the synthetic replay the sum
        beats both the ranker alone and the prior alone (docs/models.md).
        """
        w = self._prior.copy()
        for src, weight in (blend or {}).items():
            w[_F[src]] = weight
        b = 0.0
        if self.ranker.ready:
            rw, b = self.ranker.weights()
            w += rw
        return x @ w + b, x * w

    def recommend(
        self,
        user_id: str,
        profile: UserProfile,
        now_ts: int,
        k: int = 10,
        blend: Mapping[str, float] | None = None,
        sources: Collection[str] | None = None,
    ) -> Rows:
        """The main row (ranked, at most ``max_per_genre`` per genre, the last
        ``Exposure.slots(k)`` exploring) and the continue-watching row; the main row counts
        as served (:class:`online_models.exposure.Exposure`)."""
        ctx = self.context(user_id, profile, now_ts)
        ix = self.titles
        if ix.n == 0:
            return Rows([], [])
        keep = self.allow(user_id, profile)
        if self.exact_scan:
            every = np.arange(ix.n, dtype=np.int64)
            cand = every[keep(every)]
        else:
            cand = self.candidates(ctx, keep, sources=sources)
        items: list[RecItem] = []
        rows: list[int] = []
        per_genre: dict[str, int] = {}
        overflow: list[tuple[int, float, list[float]]] = []
        chosen: set[int] = set()
        genre = ix.primary_genre
        liked = [t for t, w in profile.top_tags(10) if w > 0]  # for "matches: ..." reasons
        first: tuple[list[int], list[float], list[int], np.ndarray] | None = None
        # Candidates first; if genre caps leave the row short, widen to a bounded list:
        # the most popular titles, then the first rows of the catalog (a cold start).
        for wider in (False, True):
            if len(items) >= k:
                break
            pool = cand  # distinct already, and nothing is chosen yet
            if wider:
                bound = 4 * self.per_source
                pool = np.concatenate(
                    [
                        np.asarray(self.popular.top(None, now_ts, bound), dtype=np.int64),
                        np.arange(min(ix.n, bound), dtype=np.int64),
                    ]
                )
                pool = pool[keep(pool)]
                pool = np.array(
                    [i for i in dict.fromkeys(pool.tolist()) if i not in chosen], dtype=np.int64
                )
            if len(pool) == 0:
                continue
            scores, contrib = self.score(self.features(ctx, pool), blend)
            scores = scores - self.exposure.penalty(pool)  # shown far more than watched
            # Best first, titles and scores read out of numpy once; the source shares only
            # for the few titles that make the row (or the overflow, or explore).
            order = np.argsort(-scores, kind="stable")
            shares_of = contrib[:, _SOURCE_COLS]
            ranked = (pool[order].tolist(), scores[order].tolist(), order.tolist(), shares_of)
            if not wider:
                first = ranked
            for i, sc, j in zip(*ranked[:3], strict=True):
                g = genre[i]
                if g and per_genre.get(g, 0) >= self.max_per_genre:
                    overflow.append((i, sc, shares_of[j].tolist()))
                    continue
                per_genre[g] = per_genre.get(g, 0) + 1
                chosen.add(i)
                rows.append(i)
                items.append(self._item(i, sc, shares_of[j].tolist(), ctx, profile, liked))
                if len(items) >= k:
                    break
        overflow.sort(key=lambda t: -t[1])
        for i, sc, shares in overflow:  # not enough genres: fill in score order
            if len(items) >= k:
                break
            if i not in chosen:
                chosen.add(i)
                rows.append(i)
                items.append(self._item(i, sc, shares, ctx, profile, liked))
        m = self.exposure.slots(k)
        if m and len(items) == k and first is not None:
            self._explore(items, rows, first, m, ctx, profile, liked)
        self.exposure.served(rows)
        return Rows(items, self.continue_row(profile, k))

    def _explore(
        self,
        items: list[RecItem],
        rows: list[int],
        ranked: tuple[list[int], list[float], list[int], np.ndarray],
        m: int,
        ctx: UserContext,
        profile: UserProfile,
        liked: list[str],
    ) -> None:
        """Give the last ``m`` places of the row to the best-scored candidates the rows
        have hardly shown (:meth:`Exposure.under`), within the genre cap of the rest of the
        row; places with no such candidate keep their title. In place."""
        head = rows[: len(rows) - m]
        taken = set(head)
        per_genre: dict[str, int] = {}
        genre = self.titles.primary_genre
        for i in head:
            per_genre[genre[i]] = per_genre.get(genre[i], 0) + 1
        pool, scores, order, shares = ranked  # best first; shares by pool position
        fresh = np.flatnonzero(self.exposure.under(np.asarray(pool, dtype=np.int64)))
        picked: list[tuple[int, float, list[float]]] = []
        for j in fresh.tolist():  # best first
            if len(picked) >= m:
                break
            i = pool[j]
            g = genre[i]
            if i in taken or (g and per_genre.get(g, 0) >= self.max_per_genre):
                continue
            picked.append((i, scores[j], shares[order[j]].tolist()))
            per_genre[g] = per_genre.get(g, 0) + 1
        if not picked:
            return
        ex = {i for i, _, _ in picked}
        tail = [(i, it) for i, it in zip(rows[len(head) :], items[len(head) :], strict=True)]
        new = [(i, self._item(i, sc, sh, ctx, profile, liked)) for i, sc, sh in picked]
        new += [(i, it) for i, it in tail if i not in ex]
        del rows[len(head) :], items[len(head) :]
        for i, it in new[:m]:
            rows.append(i)
            items.append(it)

    def allow(self, user_id: str, profile: UserProfile) -> Allowed:
        """Titles the main row may show: available in the user's country, not finished,
        not in progress (those go to the continue row), not already watched."""
        ix = self.titles
        ix.sync()
        blocked = [ix.index.get(tid) for tid in (*profile.finished, *profile.in_progress)]
        blocked_rows = {i for i in blocked if i is not None}
        blocked_rows.update(self.state(user_id, profile).positives)
        return Allowed(
            ix.available(profile.country),
            np.fromiter(sorted(blocked_rows), dtype=np.int64, count=len(blocked_rows)),
        )

    def allowed(self, user_id: str, profile: UserProfile) -> np.ndarray:
        """:meth:`allow` as a mask over the whole catalog, for the replay's full-catalog
        baselines (serving applies :meth:`allow` to candidates only)."""
        keep = self.allow(user_id, profile)
        mask = keep.avail.copy()
        mask[keep.blocked] = False
        return mask

    def continue_row(self, profile: UserProfile, k: int = 10) -> list[RecItem]:
        rows = []
        for tid, (pos, duration, ts) in profile.in_progress.items():
            title = self.catalog.get(tid)
            if title is None or not duration:
                continue
            r = pos / duration
            if 0.02 <= r < FINISHED_RATIO:
                art = title.artwork[0] if title.artwork else None
                reason = f"continue watching: {round(100 * r)}% watched"
                rows.append((ts, RecItem(tid, round(r, 4), (reason,), art)))
        rows.sort(key=lambda t: -t[0])
        return [it for _, it in rows[:k]]

    def _item(
        self,
        i: int,
        score: float,
        shares: list[float],
        ctx: UserContext,
        profile: UserProfile,
        liked: list[str],
    ) -> RecItem:
        ix = self.titles
        title = ix.titles[i]
        assert title is not None
        parts = sorted(
            ((v, s) for v, s in zip(shares, SOURCES, strict=True) if v > 0.05), reverse=True
        )
        reasons: list[str] = []
        for _, src in parts[:2]:
            text = self._reason(src, i, ctx, profile, liked)
            if text:
                reasons.append(text)
        if not reasons:
            reasons.append("popular now")
        art = title.artwork[0] if title.artwork else None
        return RecItem(title.title_id, round(score, 5), tuple(reasons), art)

    def _reason(
        self, src: str, i: int, ctx: UserContext, profile: UserProfile, liked: list[str]
    ) -> str | None:
        ix = self.titles
        if src == "cowatch":
            a = ctx.anchor(i)
            t = ix.titles[a] if a >= 0 else None
            return f"because you watched {t.name}" if t else None
        if src == "seq":
            for a in ctx.sequence[: self.sequence.window]:
                if i in self.sequence.rows.get(a, ()):
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
            title = ix.titles[i]
            tags = [t for t in liked if title and t in title.tag_keys]
            if tags:
                return "matches: " + ", ".join(t.split(":", 1)[1] for t in tags[:3])
            return None
        if src == "mf":
            return "viewers with your taste watched this"
        return "popular now"
