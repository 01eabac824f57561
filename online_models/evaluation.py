"""Prequential (test-then-train) evaluation of the recommender against a popularity baseline.

For every *fresh* play -- a title the user has neither finished nor has in
progress -- the engine is asked for the user's top-``k`` **before** it learns
from the play, and the most-popular-so-far baseline is asked too. If that
viewing later becomes positive (see :mod:`online_models.labels`: a ``complete``,
or playback reaching 70 % of the runtime) the two lists are scored against it:
Recall@k (hit or miss, one relevant title per positive) and NDCG@k
(``1 / log2(rank + 1)``). So every positive is predicted from what the models
knew before the user started watching it; viewings that end in an early abandon
are not scored. Positives are split by the user's history, the number of
positive viewings before this one (``min_history``).

Catalog coverage is the share of active titles that appeared in at least one
requested top-``k``. The ranker's AUC and log loss come from its own
prequential statistics (each implicit label predicted before it is learned).

The baseline recommends the titles with the most positive viewings so far,
under the same filters (available in the user's country, not finished, not in
progress, not already watched).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.catalog import Catalog
from features.event_gate import OK
from online_models.federation import Federation
from online_models.labels import outcome
from online_models.ranker import MODELS, PrequentialStats


@dataclass
class RankingMetrics:
    """Recall@k and NDCG@k over scored positives, overall and for users with history."""

    k: int
    min_history: int
    n: dict[str, int] = field(default_factory=lambda: {"all": 0, "history": 0})
    hits: dict[str, float] = field(default_factory=lambda: {"all": 0.0, "history": 0.0})
    dcg: dict[str, float] = field(default_factory=lambda: {"all": 0.0, "history": 0.0})
    shown: set[str] = field(default_factory=set)

    def add(self, recommended: list[str], target: str, history: int) -> None:
        rank = recommended.index(target) if target in recommended[: self.k] else None
        for seg in ("all", "history") if history >= self.min_history else ("all",):
            self.n[seg] += 1
            if rank is not None:
                self.hits[seg] += 1
                self.dcg[seg] += 1.0 / math.log2(rank + 2)

    def summary(self, catalog_size: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for seg in ("all", "history"):
            n = self.n[seg]
            out[seg] = {
                "positives": n,
                f"recall@{self.k}": self.hits[seg] / n if n else None,
                f"ndcg@{self.k}": self.dcg[seg] / n if n else None,
            }
        out["coverage"] = len(self.shown) / catalog_size if catalog_size else None
        return out


class PopularityBaseline:
    """Most positive viewings so far (no decay), as a vector over the title index."""

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.float64)

    def observe(self, idx: int) -> None:
        if idx >= len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(idx + 1 - len(self.counts))])
        self.counts[idx] += 1

    def top(self, allowed: np.ndarray, ids: list[str], k: int) -> list[str]:
        counts = np.zeros(len(allowed))
        counts[: len(self.counts)] = self.counts[: len(allowed)]
        scores = np.where(allowed, counts, -np.inf)
        kk = min(k, len(scores))
        if kk == 0:
            return []
        top = np.argpartition(-scores, kk - 1)[:kk]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [ids[i] for i in top.tolist() if np.isfinite(scores[i])]


def pooled_ranker_metrics(rankers: list[Any]) -> dict[str, Any]:
    """The rankers' prequential metrics over all their predictions (one per worker)."""
    out: dict[str, Any] = {}
    pooled = PrequentialStats()
    for name in MODELS:
        st = PrequentialStats()
        for r in rankers:
            s = r.stats[name]
            st.preds += s.preds
            st.labels += s.labels
            st.loss += s.loss
            st.n += s.n
        out[name] = st.summary()
        pooled.preds += st.preds
        pooled.labels += st.labels
        pooled.loss += st.loss
        pooled.n += st.n
    out["all"] = pooled.summary()
    return out


def replay(
    events: Iterable[dict[str, Any]],
    catalog: Catalog,
    k: int = 10,
    min_history: int = 5,
    progress: Callable[[int, float], None] | None = None,
    progress_every: int = 10_000,
    workers: int = 1,
    partitions: int = 4,
    partition_of: Callable[[str, int], int] | None = None,
    exchange_every: int | None = None,
    factors: str = "sum",
    ranker: str = "blend",
) -> dict[str, Any]:
    """Run events (already validated, in event-time order) through fresh engines.

    With ``workers`` > 1 the events of each user go to the engine of the worker that owns
    the user's partition (:class:`online_models.federation.Federation`; ``partition_of``
    is the producer's partitioner), which exchange title-side state every
    ``exchange_every`` events (never when None). Metrics are pooled over all workers;
    the popularity baseline counts every event, as one process would.

    Returns the report: model and baseline ranking metrics, ranker metrics, counts, speed.
    """
    if workers > 1 and partition_of is None:
        raise ValueError("several workers need the producer's partitioner (partition_of)")
    fed = Federation(
        catalog,
        workers,
        partitions if workers > 1 else 1,
        partition_of or (lambda _u, _n: 0),
        exchange_every,
        factors=factors,
        ranker=ranker,
    )
    base = PopularityBaseline()
    ours = RankingMetrics(k, min_history)
    pop = RankingMetrics(k, min_history)
    pending: dict[tuple[str, str], tuple[list[str], list[str], int]] = {}
    counted: set[tuple[str, str]] = set()
    history: dict[str, int] = {}
    requests = 0
    n = 0
    started = time.perf_counter()
    for ev in events:
        n += 1
        uid, tid, etype = ev["user_id"], ev["title_id"], ev["event_type"]
        engine = fed.engine_for(uid)
        models = engine.models
        key = (uid, tid)
        if etype == "play" and key not in counted and key not in pending and tid in catalog:
            profile = engine.profile(uid)
            if tid not in profile.in_progress and tid not in profile.finished:
                rows = engine.rows(uid, ev["ts"], k)
                rec = [it.title_id for it in rows.items]
                allowed = models.allowed(uid, profile)
                rec_base = base.top(allowed, models.titles.ids, k)
                ours.shown.update(rec)
                pop.shown.update(rec_base)
                pending[key] = (rec, rec_base, history.get(uid, 0))
                requests += 1
        ok = engine.ingest(ev).status == OK
        fed.tick()
        if not ok:  # duplicates and late events teach nothing
            continue
        out = outcome(ev, catalog.get(tid)) if etype in ("progress", "stop", "complete") else None
        if out == "positive" and key not in counted:
            counted.add(key)
            snap = pending.pop(key, None)
            if snap is not None:
                ours.add(snap[0], tid, snap[2])
                pop.add(snap[1], tid, snap[2])
            history[uid] = history.get(uid, 0) + 1
            idx = models.titles.index.get(tid)
            if idx is not None:
                base.observe(idx)
        elif out == "abandon":
            pending.pop(key, None)
        if progress is not None and n % progress_every == 0:
            progress(n, time.perf_counter() - started)
    elapsed = time.perf_counter() - started
    models = fed.engines[0].models
    models.titles.sync()
    size = int(models.titles.active.sum()) if models.titles.n else len(catalog)
    return {
        "k": k,
        "min_history": min_history,
        "events": n,
        "users": sum(len(e.profiles) for e in fed.engines),
        "catalog_titles": size,
        "requests": requests,
        "seconds": elapsed,
        "events_per_s": n / elapsed if elapsed > 0 else None,
        "workers": workers,
        "partitions": fed.partitions,
        "exchange": {
            "every_events": exchange_every if fed.exchanges else None,
            "factors": factors,
            "ranker": ranker,
            "rounds": fed.rounds,
            "max_record_bytes": fed.record_bytes,
        },
        "model": {"version": models.model_version, **ours.summary(size)},
        "baseline": {"version": "most-popular-so-far", **pop.summary(size)},
        "ranker": pooled_ranker_metrics([e.models.ranker for e in fed.engines]),
    }
