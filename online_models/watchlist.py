"""Answer a plain-language request: hard constraints filter, the viewer's own model ranks.

:class:`QueryService` parses the text (:mod:`online_models.intent`) against the
engine's catalog, keeps the titles that satisfy every hard constraint (genres
wanted, tags unwanted, runtime and year bounds, audience, kind, availability in
the viewer's country, not already finished), and orders them by

    z(viewer model score) + SOFT_WEIGHT * share of soft tags matched
                          + SIMILAR_WEIGHT * tag cosine with the "like ..." titles

where the viewer model score is the engine's own ranking score for that user
(``Recommender.context`` + ``Recommender.score``, the same numbers that order
the user's main row), standardised over the titles that passed the filter. A
series appears once (its best-scoring episode). The answer carries the parse.

The only hook into the engine is :func:`viewer_scores`; it reads, never learns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.user_profile import UserProfile
from online_models.intent import Intent, Vocabulary, parse

SOFT_WEIGHT = 1.5
SIMILAR_WEIGHT = 6.0
ANONYMOUS = "\x00query-anonymous"  # scoring id for a viewer the engine has never seen


def viewer_scores(
    engine: Any, user_id: str, profile: UserProfile | None, idx: np.ndarray, now_ts: int
) -> tuple[np.ndarray, bool]:
    """(ranking scores of catalog rows ``idx`` for this viewer, personalised?).

    A viewer the engine does not know is scored as an anonymous newcomer (popularity
    and trend features only) without leaving model state behind for them.
    """
    models = engine.models
    known = profile is not None and profile.model is not None
    prof = profile or UserProfile()
    try:
        ctx = models.context(user_id if known else ANONYMOUS, prof, now_ts)
        scores, _ = models.score(models.features(ctx, idx))
    finally:
        if not known:
            prof.model = None
    return np.asarray(scores, dtype=np.float64), known


@dataclass
class _Arrays:
    version: int
    runtime: np.ndarray
    year: np.ndarray  # -1: unknown
    is_movie: np.ndarray
    series: list[str | None]
    episode: np.ndarray  # episode number (0 for a movie)
    members: dict[str, list[int]]  # series id -> its catalog rows, earliest episode first


class QueryService:
    """Parses and answers requests against one engine (catalog + models)."""

    def __init__(self, engine: Any, now_year: int | None = None) -> None:
        self.engine = engine
        self.now_year = now_year
        self._vocab: tuple[int, int, Vocabulary] | None = None
        self._arrays: _Arrays | None = None

    # --- cached views of the catalog ----------------------------------------------------
    def vocabulary(self) -> Vocabulary:
        year = self.now_year or time.gmtime().tm_year
        cat = self.engine.catalog
        if self._vocab is None or self._vocab[:2] != (cat.version, year):
            self._vocab = (cat.version, year, Vocabulary.from_catalog(cat, year))
        return self._vocab[2]

    def arrays(self) -> _Arrays:
        ix = self.engine.models.titles
        ix.sync()
        if self._arrays is None or self._arrays.version != ix.version:
            n = ix.n
            runtime = np.zeros(n)
            year = np.full(n, -1, dtype=np.int64)
            is_movie = np.zeros(n, dtype=bool)
            series: list[str | None] = [None] * n
            episode = np.zeros(n, dtype=np.int64)
            for i, t in enumerate(ix.titles):
                if t is None:
                    continue
                runtime[i] = t.runtime_s
                year[i] = t.release_year if t.release_year is not None else -1
                is_movie[i] = t.kind == "movie"
                series[i] = t.series_id
                episode[i] = ((t.season or 1) * 10_000 + t.episode) if t.episode else 0
            members: dict[str, list[int]] = {}
            for i, sid in enumerate(series):
                if sid is not None:
                    members.setdefault(sid, []).append(i)
            for rows in members.values():
                rows.sort(key=lambda i: episode[i])
            self._arrays = _Arrays(ix.version, runtime, year, is_movie, series, episode, members)
        return self._arrays

    # --- answering ----------------------------------------------------------------------
    def parse(self, text: str) -> Intent:
        return parse(text, self.vocabulary())

    def hard_mask(self, intent: Intent, profile: UserProfile | None) -> np.ndarray:
        ix = self.engine.models.titles
        a = self.arrays()
        mask = ix.available(profile.country if profile else None).copy()
        m = ix.tag_matrix

        def has(keys: list[str]) -> np.ndarray:
            cols = [ix.tag_index[k] for k in keys if k in ix.tag_index]
            if not cols:
                return np.zeros(ix.n, dtype=bool)
            return np.asarray((m[:, cols] > 0).sum(axis=1)).ravel() > 0  # m is sparse

        if intent.genres_any:
            mask &= has(intent.genres_any)
        if intent.unwanted:
            mask &= ~has(intent.unwanted)
        if intent.audience:
            mask &= has([f"audience:{v}" for v in intent.audience])
        if intent.kind == "movie":
            mask &= a.is_movie
        elif intent.kind == "episode":
            mask &= ~a.is_movie
        if intent.runtime_min_s is not None:
            mask &= a.runtime >= intent.runtime_min_s
        if intent.runtime_max_s is not None:
            mask &= a.runtime <= intent.runtime_max_s
        if intent.year_min is not None:
            mask &= a.year >= intent.year_min
        if intent.year_max is not None:
            mask &= (a.year >= 0) & (a.year <= intent.year_max)
        for ref in intent.similar_to:
            i = ix.index.get(ref.title_id)
            if i is not None:
                mask[i] = False
                s = a.series[i]
                if s is not None:
                    mask[a.members[s]] = False
        if profile is not None:
            for tid in profile.finished:
                i = ix.index.get(tid)
                if i is not None:
                    mask[i] = False
        return mask

    def answer(
        self,
        user_id: str,
        text: str,
        k: int = 10,
        profile: UserProfile | None = None,
        now_ts: int | None = None,
    ) -> dict[str, Any]:
        """The response of ``POST /query`` and ``reelstream query``."""
        intent = self.parse(text)
        out: dict[str, Any] = {
            "user_id": user_id,
            "text": text,
            "intent": intent.to_dict(),
            "answerable": intent.answerable,
            "reason": intent.reason,
            "personalized": False,
            "satisfying": 0,
            "items": [],
            "model_version": self.engine.models.model_version,
        }
        if not intent.answerable:
            return out
        ix = self.engine.models.titles
        mask = self.hard_mask(intent, profile)
        idx = np.flatnonzero(mask)
        out["satisfying"] = len(idx)
        if len(idx) == 0:
            out["reason"] = "no title in the catalog satisfies every hard constraint"
            return out
        if now_ts is None:
            now_ts = (profile.last_ts if profile else 0) or int(self.engine.popularity.ref_ts or 0)
        model, personal = viewer_scores(self.engine, user_id, profile, idx, now_ts)
        out["personalized"] = personal
        std = float(model.std())
        # Clipped: one outlying model score must not outweigh what the request asks for.
        z = np.clip((model - model.mean()) / std, -3.0, 3.0) if std > 1e-9 else np.zeros_like(model)
        m = ix.tag_matrix[idx]
        soft_keys = [*intent.wanted, *(intent.genres_any if len(intent.genres_any) > 1 else [])]
        soft_cols = [ix.tag_index[t] for t in soft_keys if t in ix.tag_index]
        soft = np.zeros(len(idx))
        if soft_cols:
            soft = np.asarray((m[:, soft_cols] > 0).sum(axis=1)).ravel() / len(soft_cols)
        sim = np.zeros(len(idx))
        refs = [ix.index[r.title_id] for r in intent.similar_to if r.title_id in ix.index]
        if refs:
            sim = (m @ ix.tag_matrix[refs].T).toarray().max(axis=1)
        total = z + SOFT_WEIGHT * soft + SIMILAR_WEIGHT * sim
        order = np.argsort(-total, kind="stable")
        a = self.arrays()
        # A series is listed once, where its best episode ranks, as its earliest
        # episode that satisfies the request.
        seen_series: set[str] = set()
        items = []
        for o in order.tolist():
            s = a.series[int(idx[o])]
            if s is not None:
                if s in seen_series:
                    continue
                seen_series.add(s)
                earliest = next(j for j in a.members[s] if mask[j])
                o = int(np.searchsorted(idx, earliest))
            i = int(idx[o])
            t = ix.titles[i]
            assert t is not None
            matched = [k for k in soft_keys if k in t.tag_keys]
            reasons = []
            if refs and sim[o] > 0:
                reasons.append(f"like {intent.similar_to[0].name} ({sim[o]:.0%} tags shared)")
            if matched:
                reasons.append("matches: " + ", ".join(k.split(":", 1)[1] for k in matched))
            reasons.append("ranked by your taste" if personal else "popular with viewers")
            items.append(
                {
                    "title_id": t.title_id,
                    "name": t.name,
                    "rank": len(items) + 1,
                    "score": round(float(total[o]), 4),
                    "model_score": round(float(model[o]), 4),
                    "kind": t.kind,
                    "runtime_s": t.runtime_s,
                    "release_year": t.release_year,
                    "genres": list(t.genres),
                    "matched": matched,
                    "reasons": reasons,
                }
            )
            if len(items) >= k:
                break
        out["items"] = items
        return out
