"""Prequential (test-then-train) evaluation of the recommender against simple baselines.

For every *fresh* play -- a title the user has neither finished nor has in
progress -- the engine is asked for the user's top-``k`` **before** it learns
from the play, and each baseline (:mod:`online_models.baselines`: most popular
so far, recency-decayed popularity, item-to-item co-occurrence) is asked on the
same request. If that viewing later becomes positive (see
:mod:`online_models.labels`: a ``complete``, or playback reaching 70 % of the
runtime) every list is scored against it:
Recall@k (hit or miss, one relevant title per positive) and NDCG@k
(``1 / log2(rank + 1)``). So every positive is predicted from what the models
knew before the user started watching it; viewings that end in an early abandon
are not scored. Positives are split by the user's history, the number of
positive viewings before this one (``min_history``), and by the half of the log
the play falls in (``split_ts``: the event time of the middle event), so settings
chosen on the first half can be judged on the second.

Catalog coverage is the share of active titles that appeared in at least one
requested top-``k``. The ranker's AUC and log loss come from its own
prequential statistics (each implicit label predicted before it is learned).

The baselines answer under the same filters as the model (available in the
user's country, not finished, not in progress, not already watched) and learn
from the same positive viewings; the report's headline ratio is the model
against the strongest of them on each figure (:func:`strongest`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from features.catalog import Catalog
from features.event_gate import OK
from online_models.baselines import default_baselines
from online_models.engine import Engine
from online_models.federation import Federation
from online_models.labels import outcome
from online_models.ranker import MODELS, PrequentialStats

SEGMENTS = ("all", "history")
HALVES = ("first_half", "second_half")


@dataclass
class RankingMetrics:
    """Recall@k and NDCG@k over scored positives: overall and for users with history, over
    the whole log and over each half of it (by the play's event time)."""

    k: int
    min_history: int
    n: dict[str, int] = field(default_factory=dict)
    hits: dict[str, float] = field(default_factory=dict)
    dcg: dict[str, float] = field(default_factory=dict)
    shown: set[str] = field(default_factory=set)
    shown_half: dict[str, set[str]] = field(default_factory=dict)

    def request(self, recommended: list[str], half: str | None = None) -> None:
        """Count a served list for catalog coverage."""
        self.shown.update(recommended)
        if half is not None:
            self.shown_half.setdefault(half, set()).update(recommended)

    def add(self, recommended: list[str], target: str, history: int, half: str | None = None):
        rank = recommended.index(target) if target in recommended[: self.k] else None
        segs = list(SEGMENTS if history >= self.min_history else SEGMENTS[:1])
        if half is not None:
            segs += [f"{half}:{seg}" for seg in segs]
        for seg in segs:
            self.n[seg] = self.n.get(seg, 0) + 1
            if rank is not None:
                self.hits[seg] = self.hits.get(seg, 0.0) + 1
                self.dcg[seg] = self.dcg.get(seg, 0.0) + 1.0 / math.log2(rank + 2)

    def _seg(self, seg: str) -> dict[str, Any]:
        n = self.n.get(seg, 0)
        return {
            "positives": n,
            f"recall@{self.k}": self.hits.get(seg, 0.0) / n if n else None,
            f"ndcg@{self.k}": self.dcg.get(seg, 0.0) / n if n else None,
        }

    def summary(self, catalog_size: int) -> dict[str, Any]:
        out: dict[str, Any] = {seg: self._seg(seg) for seg in SEGMENTS}
        out["coverage"] = len(self.shown) / catalog_size if catalog_size else None
        for half in HALVES:
            out[half] = {seg: self._seg(f"{half}:{seg}") for seg in SEGMENTS}
            shown = self.shown_half.get(half, set())
            out[half]["coverage"] = len(shown) / catalog_size if catalog_size else None
        return out


def strongest(baselines: dict[str, dict[str, Any]], part: str | None, seg: str, metric: str):
    """(name, value) of the baseline with the highest ``metric`` on one part and segment."""
    best: tuple[str | None, float | None] = (None, None)
    for name, rep in baselines.items():
        v = (rep[part] if part else rep)[seg][metric]
        if v is not None and (best[1] is None or v > best[1]):
            best = (name, v)
    return best


def pooled_ranker_metrics(rankers: list[Any]) -> dict[str, Any]:
    """The rankers' prequential metrics over all their predictions (one per worker);
    a head abstains (``abstains``: AUC and log loss None, left out of the pooled figures)
    unless its labels hold both classes."""
    out: dict[str, Any] = {}
    pooled = PrequentialStats(None)
    for name in MODELS:
        st = PrequentialStats(None)
        for r in rankers:
            s = r.stats[name]
            for p, y in zip(s.preds, s.labels, strict=True):
                st.add(p, y)
        out[name] = {**st.summary(), "abstains": not st.both_classes}
        if st.both_classes:  # an abstaining head's predictions are not pooled either
            for p, y in zip(st.preds, st.labels, strict=True):
                pooled.add(p, y)
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
    split_ts: int | None = None,
    ingest: Callable[[Engine, dict[str, Any]], bool] | None = None,
    exact_scan: bool = False,
) -> dict[str, Any]:
    """Run events (already validated, in event-time order) through fresh engines.

    ``ingest(engine, event)`` folds one event in and says whether it was learned (not a
    duplicate or late): ``reelstream replay`` passes the worker's per-batch core
    (streams/tools/replay.py), so replay and worker run the same code; the default is
    :meth:`Engine.ingest`.

    With ``workers`` > 1 the events of each user go to the engine of the worker that owns
    the user's partition (:class:`online_models.federation.Federation`; ``partition_of``
    is the producer's partitioner), which exchange title-side state every
    ``exchange_every`` events (never when None). Metrics are pooled over all workers;
    the baselines learn from every event, as one process would. ``split_ts`` (default:
    the middle event's time) splits the log in two halves. ``exact_scan``: the served
    row ranks every allowed title, not the candidate union (the two-stage reference).

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
    for e in fed.engines:  # the report's AUC is over every prediction of the log
        e.models.ranker.keep_all_predictions()
        e.models.exact_scan = exact_scan
    events = events if isinstance(events, list) else list(events)
    if split_ts is None and events:
        split_ts = events[len(events) // 2]["ts"]
    bases = default_baselines()
    ours = RankingMetrics(k, min_history)
    theirs = [RankingMetrics(k, min_history) for _ in bases]
    pending: dict[tuple[str, str], tuple[list[list[str]], int, str | None]] = {}
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
                ts = ev["ts"]
                half = None if split_ts is None else HALVES[ts >= split_ts]
                rows = engine.rows(uid, ts, k)
                lists = [[it.title_id for it in rows.items]]
                allowed = models.allowed(uid, profile)
                ids = models.titles.ids
                lists += [b.top(uid, allowed, ids, k, ts) for b in bases]
                for rm, rec in zip((ours, *theirs), lists, strict=True):
                    rm.request(rec, half)
                pending[key] = (lists, history.get(uid, 0), half)
                requests += 1
        ok = ingest(engine, ev) if ingest is not None else engine.ingest(ev).status == OK
        fed.tick()
        if not ok:  # duplicates and late events teach nothing
            continue
        out = outcome(ev, catalog.get(tid)) if etype in ("progress", "stop", "complete") else None
        if out == "positive" and key not in counted:
            counted.add(key)
            snap = pending.pop(key, None)
            if snap is not None:
                for rm, rec in zip((ours, *theirs), snap[0], strict=True):
                    rm.add(rec, tid, snap[1], snap[2])
            history[uid] = history.get(uid, 0) + 1
            idx = models.titles.index.get(tid)
            if idx is not None:
                for b in bases:
                    b.learn_one(uid, idx, ev["ts"])
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
        "split_ts": split_ts,
        "exact_scan": exact_scan,
        "model": {"version": models.model_version, **ours.summary(size)},
        # kept for readers of earlier reports: the most-popular-so-far baseline
        "baseline": {"version": bases[0].name, **theirs[0].summary(size)},
        "baselines": {
            b.name: {"version": b.name, **rm.summary(size)}
            for b, rm in zip(bases, theirs, strict=True)
        },
        "ranker": pooled_ranker_metrics([e.models.ranker for e in fed.engines]),
    }
