"""Latency of plain-language watchlist answers on a large simulated catalog.

    python -m streams.tools.bench_query --titles 10000 --users 500 --events 20000 --rounds 5

Builds the simulated world, replays ``events`` events into an engine, then
answers every request of the query set (tests/unit/query_set.py, its example
titles renamed to movies of this catalog) ``rounds`` times, each time for
another viewer (so the engine's per-viewer feature cache does not help), and
prints percentiles of the end-to-end answer time (parse, filter, the viewer's
model scores, ordering) and of the parse alone. The first answer after a
catalog change also builds the parser's vocabulary and the filter arrays; it is
timed separately as ``cold``. Wall times are printed beside the CPU time of the
answering thread (what the answer costs when the machine is shared) and the load
average. No figure is asserted anywhere: this prints.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def percentiles(samples_ms: list[float]) -> str:
    a = np.array(samples_ms)
    return (
        f"n={len(a)} p50={np.percentile(a, 50):.2f} p95={np.percentile(a, 95):.2f} "
        f"p99={np.percentile(a, 99):.2f} max={a.max():.2f} mean={statistics.fmean(a):.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--titles", type=int, default=10_000)
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args(argv)

    from online_models.watchlist import QueryService
    from streams.tools.catalog_intel_cli import simulated_engine
    from tests.unit.query_set import NOW_YEAR, QUERIES, TITLES

    t0 = time.perf_counter()
    sim, engine = simulated_engine(args.users, args.titles, args.seed, args.events)
    print(
        f"world: {len(engine.catalog):,} titles, {args.users:,} viewers, {args.events:,} events "
        f"replayed in {time.perf_counter() - t0:.1f} s"
    )
    movies = [r["name"] for r in sim.catalog if r["kind"] == "movie"]
    renames = dict(zip([t[1] for t in TITLES], movies, strict=False))
    texts = []
    for text, _ in QUERIES:
        for old, new in renames.items():
            text = text.replace(old, new).replace(old.lower(), new)
        texts.append(text)
    svc = QueryService(engine, now_year=NOW_YEAR)
    viewers = sorted(engine.profiles) or ["nobody"]

    t = time.perf_counter()
    svc.answer(viewers[0], texts[0], args.k, engine.profiles.get(viewers[0]))
    cold = (time.perf_counter() - t) * 1000

    answer_ms: list[float] = []
    answer_cpu_ms: list[float] = []
    parse_ms: list[float] = []
    returned = 0
    n = 0
    for _ in range(args.rounds):
        for text in texts:
            uid = viewers[n % len(viewers)]
            n += 1
            profile = engine.profiles.get(uid)
            t, c = time.perf_counter(), time.thread_time()
            ans = svc.answer(uid, text, args.k, profile)
            answer_ms.append((time.perf_counter() - t) * 1000)
            answer_cpu_ms.append((time.thread_time() - c) * 1000)
            returned += len(ans["items"])
            t = time.perf_counter()
            svc.parse(text)
            parse_ms.append((time.perf_counter() - t) * 1000)
    print(f"cold first answer (vocabulary + filter arrays built): {cold:.1f} ms")
    print(f"answer (parse + filter + viewer model + order): {percentiles(answer_ms)}")
    print(f"  the same, CPU time of this thread only:       {percentiles(answer_cpu_ms)}")
    print(f"parse only:                                     {percentiles(parse_ms)}")
    if hasattr(os, "getloadavg"):
        print(f"load average during the run: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} CPUs)")
    print(f"requests {len(texts)} x {args.rounds} rounds, {returned:,} titles returned")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
