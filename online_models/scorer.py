"""The first scorer: recent popularity blended with the user's tag affinity, in numpy.

It is the seam later models plug into: ``score(profile, now_ts)`` returns a
score per catalog index, ``top_k`` turns them into ranked items with reasons.
Titles the user finished or that are not available in the user's country are
never returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from features.catalog import Catalog, Title
from features.title_popularity import TitlePopularity
from features.user_profile import UserProfile

MODEL_VERSION = "pop-affinity-1"


@dataclass(frozen=True, slots=True)
class ScoredItem:
    title_id: str
    score: float
    reasons: tuple[str, ...]
    artwork_id: str | None


class CatalogMatrix:
    """Titles as rows of a tag matrix, rebuilt only when the catalog changes."""

    def __init__(self) -> None:
        self.version = -1
        self.title_ids: list[str] = []
        self.titles: list[Title] = []
        self.index: dict[str, int] = {}
        self.tag_index: dict[str, int] = {}
        self.tags: list[str] = []
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        self.regions: dict[str, np.ndarray] = {}
        self.regional = np.zeros(0, dtype=bool)

    def sync(self, catalog: Catalog) -> None:
        if catalog.version == self.version:
            return
        self.titles = list(catalog.titles.values())
        self.title_ids = [t.title_id for t in self.titles]
        self.index = {tid: i for i, tid in enumerate(self.title_ids)}
        self.tags = sorted({k for t in self.titles for k in t.tag_keys})
        self.tag_index = {k: j for j, k in enumerate(self.tags)}
        m = np.zeros((len(self.titles), len(self.tags)), dtype=np.float32)
        for i, t in enumerate(self.titles):
            if t.tag_keys:
                w = 1.0 / math.sqrt(len(t.tag_keys))
                for k in t.tag_keys:
                    m[i, self.tag_index[k]] = w
        self.matrix = m
        self.regional = np.array([bool(t.regions) for t in self.titles], dtype=bool)
        self.regions = {}
        self.version = catalog.version

    def available_mask(self, country: str | None) -> np.ndarray:
        """True where the title can be shown in ``country``."""
        if country is None or not self.regional.any():
            return np.ones(len(self.titles), dtype=bool)
        mask = self.regions.get(country)
        if mask is None:
            mask = np.array([t.available_in(country) for t in self.titles], dtype=bool)
            self.regions[country] = mask
        return mask


class PopularityAffinityScorer:
    """score = w_pop * normalised log-popularity + confidence * cosine(tag affinity, title)."""

    model_version = MODEL_VERSION

    def __init__(
        self,
        catalog: Catalog,
        popularity: TitlePopularity,
        w_pop: float = 0.35,
        confident_after: int = 20,
    ) -> None:
        self.catalog = catalog
        self.popularity = popularity
        self.cm = CatalogMatrix()
        self.w_pop = w_pop
        self.confident_after = confident_after
        self._pop_cache: tuple[int, int, np.ndarray] | None = None

    def popularity_vector(self, now_ts: int) -> np.ndarray:
        """log1p(decayed count) scaled to [0, 1]; cached per (catalog version, second)."""
        key = (self.cm.version, now_ts // 1000)
        if self._pop_cache is not None and self._pop_cache[:2] == key:
            return self._pop_cache[2]
        scale = self.popularity.scale(now_ts)
        counts = self.popularity.counts
        raw = np.fromiter(
            (counts.get(t, 0.0) for t in self.cm.title_ids),
            dtype=np.float32,
            count=len(self.cm.title_ids),
        )
        vec = np.log1p(raw * scale)
        top = float(vec.max()) if len(vec) else 0.0
        if top > 0:
            vec /= top
        self._pop_cache = (key[0], key[1], vec)
        return vec

    def affinity_vector(self, profile: UserProfile) -> np.ndarray | None:
        if not profile.affinity:
            return None
        vec = np.zeros(len(self.cm.tags), dtype=np.float32)
        for tag, w in profile.affinity.items():
            j = self.cm.tag_index.get(tag)
            if j is not None:
                vec[j] = w
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else None

    def top_k(self, profile: UserProfile, now_ts: int, k: int) -> list[ScoredItem]:
        self.cm.sync(self.catalog)
        n = len(self.cm.title_ids)
        if n == 0:
            return []
        pop = self.popularity_vector(now_ts)
        scores = self.w_pop * pop
        aff = self.affinity_vector(profile)
        content = None
        if aff is not None:
            confidence = min(1.0, profile.events / self.confident_after)
            content = self.cm.matrix @ aff
            scores = scores + confidence * content
        scores = np.where(self.cm.available_mask(profile.country), scores, -np.inf)
        for tid in profile.finished:
            i = self.cm.index.get(tid)
            if i is not None:
                scores[i] = -np.inf
        k = min(k, n)
        idx = np.argpartition(-scores, k - 1)[:k]
        idx = idx[np.argsort(-scores[idx])]
        top_tags = [t for t, w in profile.top_tags(8) if w > 0]
        out = []
        for i in idx:
            s = float(scores[i])
            if not math.isfinite(s):
                break
            title = self.cm.titles[i]
            out.append(
                ScoredItem(
                    title.title_id,
                    round(s, 5),
                    self._reasons(title, pop[i], content, i, top_tags),
                    title.artwork[0] if title.artwork else None,
                )
            )
        return out

    @staticmethod
    def _reasons(
        title: Title, pop: float, content: np.ndarray | None, i: int, top_tags: list[str]
    ) -> tuple[str, ...]:
        reasons = []
        if content is not None and content[i] > 0.2:
            shared = [t.split(":", 1)[1] for t in top_tags if t in title.tag_keys][:3]
            if shared:
                reasons.append("matches: " + ", ".join(shared))
        if pop > 0.6:
            reasons.append("popular now")
        return tuple(reasons) or ("popular now",)
