"""Cost of the title-side exchange per round and per worker, against workers and catalog:
``python -m streams.tools.bench_exchange --titles 400,10000 --workers 2,4``.

The worker's exchange (streams/adapters/title_exchange.py) publishes the same record
:class:`online_models.federation.TitleExchange` builds here and merges its peers' records
with the same call, so bytes are exact and CPU is the worker's minus Kafka. Synthetic
traffic is split over ``W`` in-process engines with the producer's partitioner (the
:class:`~online_models.federation.Federation` of ``reelstream replay --workers``); every
``--every`` events each worker publishes and merges every peer's record. Per round and
per worker: bytes published, bytes read (its peers' records), CPU ms to publish and to
merge. The figures feed docs/scaling.md; nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from online_models.federation import Federation, TitleExchange
from streams.adapters.kafka_admin import kafka_partition
from streams.tools.bench_sweep import parse_sizes
from streams.tools.synthetic import SimConfig, Simulation


def run(
    titles: int, workers: int, events: int, every: int, users: int, seed: int = 1
) -> dict[str, Any]:
    sim = Simulation(SimConfig(users=users, titles=titles, seed=seed))
    fed = Federation(
        sim.title_catalog(), workers, partitions=8, partition_of=kafka_partition, exchange_every=0
    )
    # Federation builds its exchanges only with exchange_every; rounds are timed here.
    xs = [TitleExchange(e.models, f"worker-{i}") for i, e in enumerate(fed.engines)]
    rounds: list[dict[str, float]] = []
    for n, ev in enumerate(sim.events(limit=events), 1):
        fed.engine_for(ev["user_id"]).ingest(ev)
        if n % every:
            continue
        pub_cpu: list[float] = []
        records = []
        for x in xs:
            c0 = time.process_time()
            records.append(x.publish())
            pub_cpu.append(time.process_time() - c0)
        merge_cpu = []
        for i, x in enumerate(xs):
            c0 = time.process_time()
            for j, raw in enumerate(records):
                if j != i:
                    x.merge(raw)
            merge_cpu.append(time.process_time() - c0)
        sizes = [len(r) for r in records]
        rounds.append(
            {
                "bytes_published": statistics.fmean(sizes),
                "bytes_read": statistics.fmean(sum(sizes) - s for s in sizes),
                "publish_cpu_ms": statistics.fmean(pub_cpu) * 1e3,
                "merge_cpu_ms": statistics.fmean(merge_cpu) * 1e3,
            }
        )
    last = rounds[-1] if rounds else {}
    return {
        "titles": titles,
        "workers": workers,
        "events": events,
        "every_events": every,
        "rounds": len(rounds),
        "last_round": last,
        "mean_round": {k: statistics.fmean(r[k] for r in rounds) for k in last},
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--titles", default="400,10000", help="catalog sizes, comma-separated")
    ap.add_argument("--workers", default="2,4", help="worker counts, comma-separated")
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--every", type=int, default=4_000, help="events between rounds")
    ap.add_argument("--users", type=int, default=4_000)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    out = []
    print(
        "titles  workers  rounds  last round per worker: published KB  read KB  "
        "publish CPU ms  merge CPU ms"
    )
    for t in parse_sizes(args.titles):
        for w in parse_sizes(args.workers):
            r = run(t, w, args.events, args.every, args.users)
            out.append(r)
            x = r["last_round"]
            print(
                f"{t:>6,}  {w:>7}  {r['rounds']:>6}  {x['bytes_published'] / 1e3:>29,.1f}"
                f"  {x['bytes_read'] / 1e3:>7,.1f}  {x['publish_cpu_ms']:>14.1f}"
                f"  {x['merge_cpu_ms']:>12.1f}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
