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

Each source proposes its ``per_source`` best titles; the union is scored by the
online ranker (:mod:`online_models.ranker`). See docs/models.md.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.catalog import Catalog
from features.user_features import FINISHED_RATIO, RECENT_MAX
from features.user_profile import UserProfile
from online_models.cowatch import CoWatch
from online_models.labels import POSITIVE_RATIO, outcome, watched_ratio
from online_models.mf import ImplicitMF
from online_models.ranker import Ranker
from online_models.sequence import ItemSequence
from online_models.titles import TitleIndex
from online_models.trending import CountryTrending

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
SEQUENCE_MAX = 20
# A fresh play teaches the sequence model with weight 1 when it starts; its outcome
# grades it: a positive viewing adds SEQ_POSITIVE, an early abandon at watched ratio
# r takes away SEQ_ABANDON * (1 - r / POSITIVE_RATIO).
SEQ_POSITIVE = 0.5
SEQ_ABANDON = 0.5
POSITIVES_MAX = 1000
IMPRESSION_TTL_MS = 3 * 3_600_000


@dataclass(slots=True)
class UserState:
    """Model-side state of one user (the feature profile lives in :class:`UserProfile`)."""

    recent: list[int] = field(default_factory=list)  # positive watches, most recent first
    sequence: list[int] = field(default_factory=list)  # fresh plays, most recent first
    positives: dict[int, int] = field(default_factory=dict)  # title index -> ts
    plays: int = 0
    completes: int = 0
    abandons: int = 0
    pauses: int = 0
    skips: int = 0
    episode_plays: int = 0
    watched_s: float = 0.0
    device: str | None = None
    impressions: dict[int, np.ndarray] = field(default_factory=dict)
    impression_ts: int = 0
    playing: dict[int, np.ndarray] = field(default_factory=dict)
    last_pos: dict[int, float] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)  # title index -> last play ts
    liked: dict[str, float] = field(default_factory=dict)  # tag -> positive viewings
    disliked: dict[str, float] = field(default_factory=dict)  # tag -> early abandons


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
        self.cowatch = CoWatch()
        self.sequence = ItemSequence()
        self.mf = ImplicitMF(seed=seed)
        self.trending = CountryTrending(half_life_ms=12 * 3_600_000)
        self.popular = CountryTrending(half_life_ms=7 * 86_400_000)
        self.ranker = Ranker(FEATURES)
        self.users: dict[str, UserState] = {}
        self.per_source = per_source
        self.max_per_genre = max_per_genre
        self.random_negatives = random_negatives
        self.rng = np.random.default_rng(seed)
        for model in (self.cowatch, self.sequence, self.mf, self.trending, self.popular):
            self.titles.listeners.append(model.resize)
        self._ctx: tuple[str, int, int, dict[str, Any]] | None = None
        self._prior = np.zeros(len(FEATURES), dtype=np.float32)
        for f, v in PRIOR.items():
            self._prior[_F[f]] = v
        self.learn_steps = 0
        # The worker's title-side exchange (online_models/federation.py), when it has one.
        self.exchange: Any = None

    def user(self, user_id: str) -> UserState:
        st = self.users.get(user_id)
        if st is None:
            st = self.users[user_id] = UserState()
        return st

    # --- features -----------------------------------------------------------------

    def context(self, user_id: str, profile: UserProfile, now_ts: int) -> dict[str, Any]:
        """Feature matrix (titles x FEATURES) and per-source extras for one user at one time.

        Cached per (user, ts, learn step): the rows of one impression request share it.
        """
        self.titles.sync()
        key = (user_id, now_ts, self.learn_steps)
        if self._ctx is not None and self._ctx[:3] == key:
            return self._ctx[3]
        ix = self.titles
        n = ix.n
        st = self.user(user_id)
        x = np.zeros((n, len(FEATURES)), dtype=np.float32)
        # content
        content = np.zeros(n, dtype=np.float32)
        if profile.affinity and len(ix.tags):
            vec = np.zeros(len(ix.tags), dtype=np.float32)
            for tag, w in profile.affinity.items():
                j = ix.tag_index.get(tag)
                if j is not None:
                    vec[j] = w
            norm = float(np.linalg.norm(vec))
            if norm > 0:
                content = ix.tag_matrix @ (vec / norm)
                content *= min(1.0, profile.events / 20)
        x[:, _F["content"]] = content
        for name, tags, total in (
            ("liked", st.liked, st.completes),
            ("disliked", st.disliked, st.abandons),
        ):
            if tags and len(ix.tags):
                vec = np.zeros(len(ix.tags), dtype=np.float32)
                for tag, w in tags.items():
                    j = ix.tag_index.get(tag)
                    if j is not None:
                        vec[j] = w
                x[:, _F[name]] = ix.tag_matrix @ (vec / (total + 1.0))
        mf = self.mf.scores(user_id)
        x[:, _F["mf"]] = np.tanh(mf) * self.mf.confidence(user_id)
        cw, anchors = self.cowatch.scores(st.recent)
        x[:, _F["cowatch"]] = np.minimum(cw, 2.0)
        x[:, _F["seq"]] = np.minimum(self.sequence.scores(st.sequence), 2.0)
        next_from = {}
        for rank, a in enumerate(st.recent[:5]):
            b = ix.next_episode.get(a)
            if b is not None and b not in next_from:
                next_from[b] = a
                x[b, _F["next_ep"]] = 0.8**rank
        x[:, _F["trend"]] = self.trending.vector(profile.country, now_ts)
        pop = np.log1p(self.popular.raw(None))
        top = float(pop.max()) if n else 0.0
        x[:, _F["pop"]] = pop / top if top > 0 else 0.0
        if st.seen:
            x[np.fromiter(st.seen, dtype=np.int64, count=len(st.seen)), _F["seen"]] = 1.0
        x[:, _F["is_episode"]] = ix.is_episode
        x[:, _F["long_runtime"]] = ix.long_runtime
        plays = max(1, st.plays)
        skip_rate = st.skips / max(1, st.episode_plays)
        device = st.device or profile.device
        x[:, _F["completion_rate"]] = st.completes / plays
        x[:, _F["pause_rate"]] = min(3.0, st.pauses / max(0.25, st.watched_s / 3600.0))
        x[:, _F["skip_rate"]] = skip_rate
        x[:, _F["skip_x_episode"]] = skip_rate * ix.is_episode
        x[:, _F["mobile_x_long"]] = (device == "mobile") * ix.long_runtime
        x[:, _F["watch_hours"]] = math.log1p(st.watched_s / 3600.0)
        hour = (now_ts // 3_600_000) % 24
        x[:, _F["hour_sin"]] = math.sin(2 * math.pi * hour / 24)
        x[:, _F["hour_cos"]] = math.cos(2 * math.pi * hour / 24)
        if device in DEVICES:
            x[:, _F[f"device_{device}"]] = 1.0
        x[:, _F["cold"]] = 1.0 if len(st.positives) < 3 else 0.0
        ctx = {"x": x, "anchors": anchors, "next_from": next_from, "sequence": st.sequence}
        self._ctx = (*key, ctx)
        return ctx

    @staticmethod
    def _row(x: np.ndarray, i: int) -> dict[str, float]:
        return {f: float(v) for f, v in zip(FEATURES, x[i].tolist(), strict=True) if v}

    # --- learning -----------------------------------------------------------------

    def observe(self, ev: dict[str, Any], profile: UserProfile) -> None:
        """Learn from one validated event; ``profile`` is the user's state before it."""
        self.titles.sync()
        idx = self.titles.index.get(ev["title_id"])
        if idx is None:
            return
        uid = ev["user_id"]
        st = self.user(uid)
        etype = ev["event_type"]
        ts = ev["ts"]
        if ev.get("device"):
            st.device = ev["device"]
        title = self.titles.titles[idx]
        if etype == "impression":
            if ts - st.impression_ts > 1000 or ts - st.impression_ts < 0:
                self._flush_impressions(st)
                st.impression_ts = ts
            x = self.context(uid, profile, ts)["x"]
            st.impressions[idx] = x[idx].copy()
            return
        if etype == "play":
            fresh = ev["title_id"] not in profile.in_progress and idx not in st.positives
            self.trending.observe(idx, ev.get("country") or profile.country, ts)
            self.popular.observe(idx, None, ts)
            st.plays += 1
            st.episode_plays += int(self.titles.is_episode[idx])
            st.last_pos[idx] = float(ev.get("position_s") or 0.0)
            if fresh:
                x = self.context(uid, profile, ts)["x"]
                self._learn_click(uid, st, idx, x, ts)
                self._sequence(st, idx, 1.0)
                st.playing[idx] = x[idx].copy()
                if len(st.playing) > 20:
                    st.playing.pop(next(iter(st.playing)))
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
            self._grade(st, idx, SEQ_POSITIVE)
            self._positive(uid, st, idx, ts, watched_ratio(ev, title) or 1.0)
        elif out == "abandon" and idx not in st.positives:
            r = min(watched_ratio(ev, title) or 0.0, POSITIVE_RATIO)
            self._grade(st, idx, -SEQ_ABANDON * (1.0 - r / POSITIVE_RATIO))
            st.abandons += 1
            self._credit(st.disliked, title)
            row = st.playing.pop(idx, None)
            if row is not None:
                self._learn_vec("watch", row, False)
            r = watched_ratio(ev, title) or 0.0
            if r >= 0.25:  # a partial watch: a weak positive for the factorisation
                self.mf.learn(uid, idx, r, self.popular.raw(None))
                self.learn_steps += 1
        if etype in ("stop", "complete"):
            st.last_pos.pop(idx, None)

    def _sequence(self, st: UserState, idx: int, w: float) -> None:
        """Learn the transition into ``idx`` from the viewer's recent plays, then push it."""
        before = [i for i in st.sequence if i != idx]
        self.sequence.learn_one(before, idx, w)
        st.sequence = [idx, *before][:SEQUENCE_MAX]
        self.learn_steps += 1

    def _grade(self, st: UserState, idx: int, dw: float) -> None:
        """Re-weight the play of ``idx`` by its outcome (graded feedback)."""
        if not dw or idx not in st.sequence:
            return
        pos = st.sequence.index(idx)
        self.sequence.correct(st.sequence[pos + 1 :], idx, dw)
        self.learn_steps += 1

    def _positive(self, uid: str, st: UserState, idx: int, ts: int, ratio: float) -> None:
        st.completes += 1
        self._credit(st.liked, self.titles.titles[idx])
        row = st.playing.pop(idx, None)
        if row is not None:
            self._learn_vec("watch", row, True)
        self.cowatch.observe(idx, st.recent, ts)
        self.mf.learn(uid, idx, max(ratio, POSITIVE_RATIO), self.popular.raw(None))
        self.learn_steps += 1
        st.positives[idx] = ts
        if len(st.positives) > POSITIVES_MAX:
            del st.positives[next(iter(st.positives))]
        if idx in st.recent:
            st.recent.remove(idx)
        st.recent.insert(0, idx)
        del st.recent[RECENT_MAX:]

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

    def _flush_impressions(self, st: UserState) -> None:
        for row in st.impressions.values():
            self._learn_vec("click", row, False)
        st.impressions.clear()

    def _learn_click(self, uid: str, st: UserState, idx: int, x: np.ndarray, ts: int) -> None:
        shown = st.impressions and 0 <= ts - st.impression_ts <= IMPRESSION_TTL_MS
        if shown and idx in st.impressions:
            st.impressions.pop(idx)
            self._flush_impressions(st)
            self._learn_vec("click", x[idx], True)
            return
        if not shown:
            st.impressions.clear()
        # Not picked from a shown row: what the user chose from the whole catalog.
        self._learn_vec("click", x[idx], True)
        # Negatives: titles the recommender itself would have proposed (hard negatives,
        # the distribution it ranks at serving time), topped up with uniform ones.
        cand = self.candidates(x, self.titles.active)
        cand = cand[cand != idx]
        hard = self.rng.choice(cand, size=min(len(cand), self.random_negatives), replace=False)
        easy = self.rng.integers(0, self.titles.n, size=1)
        for j in [*hard.tolist(), *easy.tolist()]:
            if j != idx:
                self._learn_vec("click", x[j], False, evaluate=False)

    # --- serving ------------------------------------------------------------------

    def candidates(
        self, x: np.ndarray, allowed: np.ndarray, sources: Collection[str] | None = None
    ) -> np.ndarray:
        """Union of each source's ``per_source`` best allowed titles (catalog indexes);
        ``sources``: only these propose (an experiment arm's candidate mix)."""
        picks = []
        k = self.per_source
        for src in SOURCES:
            if sources is not None and src not in sources:
                continue
            col = np.where(allowed, x[:, _F[src]], -np.inf)
            kk = min(k, len(col))
            if kk == 0:
                continue
            top = np.argpartition(-col, kk - 1)[:kk]
            picks.append(top[np.isfinite(col[top]) & (col[top] > 0)])
        if not picks:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate(picks))

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
        ctx = self.context(user_id, profile, now_ts)
        x = ctx["x"]
        ix = self.titles
        if ix.n == 0:
            return Rows([], [])
        allowed = self.allowed(user_id, profile)
        cand = self.candidates(x, allowed, sources)
        items: list[RecItem] = []
        per_genre: dict[str, int] = {}
        overflow: list[tuple[int, float, np.ndarray]] = []
        chosen: set[int] = set()
        # Candidates first; if genre caps leave the row short, widen to every allowed title.
        for pool in (cand, np.flatnonzero(allowed)):
            if len(items) >= k:
                break
            pool = np.array([i for i in pool.tolist() if i not in chosen], dtype=np.int64)
            if len(pool) == 0:
                continue
            scores, contrib = self.score(x[pool], blend)
            for o in np.argsort(-scores, kind="stable").tolist():
                i = int(pool[o])
                g = ix.primary_genre[i]
                if g and per_genre.get(g, 0) >= self.max_per_genre:
                    overflow.append((i, float(scores[o]), contrib[o]))
                    continue
                per_genre[g] = per_genre.get(g, 0) + 1
                chosen.add(i)
                items.append(self._item(i, float(scores[o]), contrib[o], ctx, profile))
                if len(items) >= k:
                    break
        overflow.sort(key=lambda t: -t[1])
        for i, sc, co in overflow:  # not enough genres: fill in score order
            if len(items) >= k:
                break
            if i not in chosen:
                chosen.add(i)
                items.append(self._item(i, sc, co, ctx, profile))
        return Rows(items, self.continue_row(profile, k))

    def allowed(self, user_id: str, profile: UserProfile) -> np.ndarray:
        """Titles the main row may show: available in the user's country, not finished,
        not in progress (those go to the continue row), not already watched."""
        ix = self.titles
        ix.sync()
        allowed = ix.available(profile.country).copy()
        for tid in (*profile.finished, *profile.in_progress):
            i = ix.index.get(tid)
            if i is not None:
                allowed[i] = False
        for i in self.user(user_id).positives:
            allowed[i] = False
        return allowed

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
        contrib: np.ndarray,
        ctx: dict[str, Any],
        profile: UserProfile,
    ) -> RecItem:
        ix = self.titles
        title = ix.titles[i]
        assert title is not None
        parts = sorted(
            ((float(contrib[_F[s]]), s) for s in SOURCES if contrib[_F[s]] > 0.05), reverse=True
        )
        reasons: list[str] = []
        for _, src in parts[:2]:
            text = self._reason(src, i, ctx, profile)
            if text:
                reasons.append(text)
        if not reasons:
            reasons.append("popular now")
        art = title.artwork[0] if title.artwork else None
        return RecItem(title.title_id, round(score, 5), tuple(reasons), art)

    def _reason(self, src: str, i: int, ctx: dict[str, Any], profile: UserProfile) -> str | None:
        ix = self.titles
        if src == "cowatch":
            a = int(ctx["anchors"][i])
            t = ix.titles[a] if a >= 0 else None
            return f"because you watched {t.name}" if t else None
        if src == "seq":
            for a in ctx["sequence"][: self.sequence.window]:
                if i in self.sequence.rows.get(a, ()):
                    t = ix.titles[a]
                    return f"because you watched {t.name}" if t else None
            return None
        if src == "next_ep":
            a = ctx["next_from"].get(i)
            t = ix.titles[a] if a is not None else None
            return f"next episode after {t.name}" if t else None
        if src == "trend":
            return f"trending in {profile.country}" if profile.country else "trending now"
        if src == "content":
            title = ix.titles[i]
            tags = [t for t, w in profile.top_tags(10) if w > 0 and title and t in title.tag_keys]
            if tags:
                return "matches: " + ", ".join(t.split(":", 1)[1] for t in tags[:3])
            return None
        if src == "mf":
            return "viewers with your taste watched this"
        return "popular now"
