"""In-process cost of the recommendation engine vs catalog size:
``python -m streams.tools.bench_engine --titles 20000``.

Synthetic traffic (:mod:`streams.tools.synthetic`) through :class:`Engine` on one
core, no Kafka, Redis or Faust: the first ``--warmup`` events teach the models
(untimed), the next ``--events`` are timed through ``Engine.ingest`` (µs per
event: profile, features and every model's ``observe``), then one refresh
(``Engine.score_message``) is timed for each of ``--refresh-users`` users who have
history, and ``--catalog-changes`` catalog records (an added title, an updated one, a
tombstone, in turn) are each timed until the models' title index has taken them in.
Wall time and this process's CPU time are both reported: on a shared
machine the CPU figure is the steadier one. Only the Engine's public calls are
used, so the same module measures any version of the models. Figures are printed
(and written with ``--json``); nothing here asserts a target.

``--recall N`` (two-stage models only) also compares, for N users at the end, the
candidate union from the indexes with the exhaustive one the models used to take (each
source's ``per_source`` best allowed titles by its feature column over every title):
recall of the union and of each source.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

from features.catalog import parse_title
from online_models.engine import Engine
from streams.tools.bench import percentile
from streams.tools.synthetic import SimConfig, Simulation


def exhaustive_candidates(rec: Any, ctx: Any, keep: Any) -> dict[str, np.ndarray]:
    """Each source's ``per_source`` best allowed titles by its feature column, computed
    over every title (what the single-stage models did): the reference for recall."""
    from online_models.recommender import _F, SOURCES

    every = np.arange(rec.titles.n)
    x = rec.features(ctx, every)
    ok = keep(every)
    out = {}
    k = min(rec.per_source, len(every))
    for src in SOURCES:
        col = np.where(ok, x[:, _F[src]], -np.inf)
        top = np.argpartition(-col, k - 1)[:k]
        out[src] = top[np.isfinite(col[top]) & (col[top] > 0)]
    return out


def candidate_recall(eng: Engine, user_ids: list[str], ts: int) -> dict[str, Any]:
    """Recall of the indexed candidates against :func:`exhaustive_candidates`, pooled over
    users (hits / reference size), for the union and per source."""
    rec = eng.models
    hits: dict[str, int] = {}
    size: dict[str, int] = {}
    union_sizes = []
    for uid in user_ids:
        profile = eng.profile(uid)
        ctx = rec.context(uid, profile, max(ts, profile.last_ts))
        keep = rec.allow(uid, profile)
        got: dict[str, np.ndarray] = {}
        union = rec.candidates(ctx, keep, got)
        union_sizes.append(len(union))
        ref = exhaustive_candidates(rec, ctx, keep)
        ref["union"] = np.unique(np.concatenate(list(ref.values())))
        got["union"] = union
        for src, r in ref.items():
            g = got.get(src, np.zeros(0, dtype=np.int64))
            hits[src] = hits.get(src, 0) + len(np.intersect1d(r, g))
            size[src] = size.get(src, 0) + len(r)
    return {
        "users": len(user_ids),
        "union_size_mean": statistics.fmean(union_sizes) if union_sizes else 0.0,
        "union_size_max": max(union_sizes, default=0),
        "recall": {s: hits[s] / size[s] for s in size if size[s]},
    }


def catalog_change_ms(eng: Engine, sim: Simulation, changes: int) -> list[float]:
    """Milliseconds per catalog record until the title index holds it: an added title,
    an update of an existing one and a tombstone, in turn (``changes`` records)."""
    rec = eng.models
    per: list[float] = []
    existing = [t["title_id"] for t in sim.catalog]
    for i in range(changes):
        kind = i % 3
        base = dict(sim.catalog[i % len(sim.catalog)])
        t0 = time.perf_counter()
        if kind == 0:
            base["title_id"] = f"bench-new-{i}"
            eng.catalog.upsert(parse_title(base))
        elif kind == 1:
            base["title"] = f"{base.get('title', 'x')} (updated {i})"
            eng.catalog.upsert(parse_title(base))
        else:
            eng.catalog.remove(existing[-1 - i // 3])
        rec.titles.sync()
        per.append((time.perf_counter() - t0) * 1e3)
    return per


def run(
    titles: int,
    users: int,
    warmup: int,
    events: int,
    refresh_users: int,
    seed: int = 1,
    recall_users: int = 0,
    catalog_changes: int = 30,
) -> dict[str, Any]:
    sim = Simulation(SimConfig(users=users, titles=titles, seed=seed))
    evs = list(sim.events(limit=warmup + events))
    eng = Engine()
    for rec in sim.catalog:
        eng.catalog.upsert(parse_title(rec))
    for ev in evs[:warmup]:
        eng.ingest(ev)
    timed = evs[warmup:]
    t0, c0 = time.perf_counter(), time.process_time()
    for ev in timed:
        eng.ingest(ev)
    ingest_s, ingest_cpu = time.perf_counter() - t0, time.process_time() - c0
    last_ts = max(ev["ts"] for ev in evs)
    active = sorted({ev["user_id"] for ev in timed})[:refresh_users]
    per: list[float] = []
    per_cpu: list[float] = []  # steadier than wall time on a shared machine
    c1 = time.process_time()
    for uid in active:
        r0, q0 = time.perf_counter(), time.process_time()
        eng.score_message(uid, event_ts=last_ts, now_ms=last_ts)
        per.append(time.perf_counter() - r0)
        per_cpu.append(time.process_time() - q0)
    refresh_cpu = time.process_time() - c1
    out: dict[str, Any] = {}
    if recall_users:
        out["candidate_recall"] = candidate_recall(eng, active[:recall_users], last_ts)
    changes = catalog_change_ms(eng, sim, catalog_changes)
    return {
        **out,
        "titles": len(sim.catalog),
        "users": users,
        "warmup_events": warmup,
        "timed_events": len(timed),
        "ingest_us_per_event": ingest_s / max(1, len(timed)) * 1e6,
        "ingest_cpu_us_per_event": ingest_cpu / max(1, len(timed)) * 1e6,
        "refresh_users": len(per),
        "refresh_cpu_ms_mean": refresh_cpu / len(per) * 1e3 if per else None,
        "refresh_ms_mean": statistics.fmean(per) * 1e3 if per else None,
        "refresh_ms_median": statistics.median(per) * 1e3 if per else None,
        "refresh_ms_p99": percentile(per, 99) * 1e3 if per else None,
        "refresh_cpu_ms_p99": percentile(per_cpu, 99) * 1e3 if per_cpu else None,
        "catalog_changes": len(changes),
        "catalog_change_ms_median": statistics.median(changes) if changes else None,
        "catalog_change_ms_p99": percentile(changes, 99) if changes else None,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--titles", type=int, default=400)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=20_000, help="untimed events first")
    ap.add_argument("--events", type=int, default=20_000, help="timed events")
    ap.add_argument("--refresh-users", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--recall", type=int, default=0, help="candidate recall over N users")
    ap.add_argument("--catalog-changes", type=int, default=30, help="timed catalog records")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    out = run(
        args.titles,
        args.users,
        args.warmup,
        args.events,
        args.refresh_users,
        args.seed,
        args.recall,
        args.catalog_changes,
    )
    print(
        f"titles {out['titles']:,}  users {out['users']:,}  timed events {out['timed_events']:,}"
        f"  ingest {out['ingest_us_per_event']:.1f} us/event"
        f" (CPU {out['ingest_cpu_us_per_event']:.1f})"
        f"  refresh {out['refresh_ms_mean']:.2f} ms/user (median {out['refresh_ms_median']:.2f},"
        f" p99 {out['refresh_ms_p99']:.2f}, CPU {out['refresh_cpu_ms_mean']:.2f};"
        f" {out['refresh_users']} users)  catalog change {out['catalog_change_ms_median']:.2f} ms"
        f" (p99 {out['catalog_change_ms_p99']:.2f}; {out['catalog_changes']} records)"
    )
    if "candidate_recall" in out:
        cr = out["candidate_recall"]
        print(
            f"candidate recall vs exhaustive ({cr['users']} users, union size mean "
            f"{cr['union_size_mean']:.0f}, max {cr['union_size_max']}): "
            + "  ".join(f"{s} {v:.3f}" for s, v in cr["recall"].items())
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
