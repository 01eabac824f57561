"""Cost of one artwork decision: ``python -m online_models.artwork_bench``.

Prints microseconds per decision for a single title and for a score message's
list of 20 titles (one context, vectorised), for Thompson sampling and UCB, the
best of ``--repeats`` runs (the least disturbed by other load on the machine), as
wall time and as this process's CPU time (the cost itself when the machine's cores are
shared with other work), and the load average so a reader can judge the figures.
The cost includes building the context vector once per list and the decision
record per title.
"""

from __future__ import annotations

import argparse
import os
import time
from math import inf

from online_models.artwork import (
    ArtworkConfig,
    ArtworkPolicy,
    context_vector,
    decision_record,
)


def measure(mode: str, titles: int = 400, lists: int = 1000, repeats: int = 5) -> dict[str, float]:
    pol = ArtworkPolicy(ArtworkConfig(mode=mode, seed=3))
    variants = [(f"t{i}-a0", f"t{i}-a1", f"t{i}-a2") for i in range(titles)]
    x0 = context_vector({"tone:dark": 1.0}, "tv", 20, [("drama",)])
    for i, v in enumerate(variants):  # every arm has seen some data
        for j, a in enumerate(v):
            pol.update(a, x0, float((i + j) % 3 == 0))
    best = {"single_us": inf, "list20_us": inf, "single_cpu_us": inf, "list20_cpu_us": inf}
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        for i in range(lists):
            x = context_vector({"tone:dark": 1.0, "tone:light": 0.5}, "tv", i % 24, [("drama",)])
            d = pol.choose(variants[i % titles], x)
            decision_record("u1", "t1", variants[i % titles], d, x, i)
        _keep(best, "single", t, c, lists)
        t, c = time.perf_counter(), time.process_time()
        for i in range(lists):
            x = context_vector({"tone:dark": 1.0, "tone:light": 0.5}, "tv", i % 24, [("drama",)])
            start = (i * 20) % (titles - 20)
            row = variants[start : start + 20]
            for v, d in zip(row, pol.choose_many(row, x), strict=True):
                assert d is not None
                decision_record("u1", v[0], v, d, x, i)
        _keep(best, "list20", t, c, lists * 20)
    return best


def _keep(best: dict[str, float], name: str, t: float, c: float, n: int) -> None:
    best[f"{name}_us"] = min(best[f"{name}_us"], (time.perf_counter() - t) / n * 1e6)
    best[f"{name}_cpu_us"] = min(best[f"{name}_cpu_us"], (time.process_time() - c) / n * 1e6)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lists", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for mode in ("ts", "ucb"):
        r = measure(mode, lists=args.lists, repeats=args.repeats)
        print(
            f"{mode}: single title {r['single_us']:.1f} us wall ({r['single_cpu_us']:.1f} us CPU); "
            f"per decision in a list of 20: {r['list20_us']:.1f} us wall "
            f"({r['list20_cpu_us']:.1f} us CPU)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
