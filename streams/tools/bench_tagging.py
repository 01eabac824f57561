"""What tagging on arrival costs the catalog follower, per record (docs/catalog-intelligence.md).

``python -m streams.tools.bench_tagging [--titles 2000 --records 1000]``: fits the
tagger on a synthetic catalog's editorial tags (as ``reelstream tags train`` does),
then feeds the follower ``--records`` new records carrying genres and a synopsis
only (the case tagging is for), timing ``CatalogFollower.apply`` with and without the
tagger. No broker: the Kafka fetch is the same either way.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import orjson

from features.catalog import Catalog
from online_models.tagger import SynopsisTagger, editorial_tags
from streams.adapters.catalog_follower import CatalogFollower
from streams.settings import Settings
from streams.tools.synthetic import SimConfig, Simulation


def _ms(xs: list[float]) -> str:
    a = np.array(xs) * 1000
    return (
        f"p50={np.percentile(a, 50):.3f} p99={np.percentile(a, 99):.3f} "
        f"max={a.max():.3f} mean={a.mean():.3f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--titles", type=int, default=2000, help="catalog the tagger learns from")
    ap.add_argument("--records", type=int, default=1000, help="new records timed")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    records = Simulation(SimConfig(users=1, titles=args.titles, seed=args.seed)).catalog
    started = time.perf_counter()
    tagger = SynopsisTagger.from_bytes(
        SynopsisTagger().fit(r for r in records if editorial_tags(r)).to_bytes()
    )
    print(
        f"tagger fitted on {args.titles} titles and reloaded "
        f"in {time.perf_counter() - started:.2f} s"
    )
    new = [
        orjson.dumps(
            {
                **{k: r[k] for k in ("name", "kind", "synopsis", "genres", "runtime_s")},
                "title_id": f"new{i:06d}",
            }
        )
        for i, r in enumerate(records[i % len(records)] for i in range(args.records))
    ]
    for label, tg in (("without tagger", None), ("with tagger", tagger)):
        follower = CatalogFollower(Settings(), Catalog(), tagger=tg)
        times = []
        for i, raw in enumerate(new):
            t0 = time.perf_counter()
            follower.apply(f"new{i:06d}".encode(), raw)
            times.append(time.perf_counter() - t0)
        derived = sum(bool(t.derived_tags) for t in follower.catalog.titles.values())
        print(f"apply {label:<15} n={len(times)} {_ms(times)}  titles with derived tags: {derived}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
