"""Cost of the title-side exchange per round and per worker, against workers and catalog:
``python -m streams.tools.bench_exchange --titles 400,10000 --workers 2,4``.

Synthetic traffic is split over ``W`` in-process engines with the producer's partitioner
(the :class:`~online_models.federation.Federation` of ``reelstream replay --workers``,
``--partitions`` title shards); every ``--every`` events each worker publishes its
contribution records (one per shard), each shard's aggregator (the worker owning that
partition) folds them and publishes its snapshot, and every worker merges the snapshots.
These are the records and calls of the live worker (streams/adapters/title_exchange.py),
so bytes are exact and CPU is the worker's minus Kafka. Per round and per worker: bytes
published, bytes read (every shard's snapshot plus the records of the shards it
aggregates), CPU ms to publish, to aggregate and to merge. The figures feed
docs/scaling.md; nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from online_models.federation import Federation, RoundCost
from streams.adapters.kafka_admin import kafka_partition
from streams.tools.bench_sweep import parse_sizes
from streams.tools.synthetic import SimConfig, Simulation


def per_worker(cost: RoundCost) -> dict[str, float]:
    return {
        "bytes_published": statistics.fmean(cost.published),
        "bytes_read": statistics.fmean(cost.read),
        "bytes_read_max": float(max(cost.read)),
        "snapshot_bytes": float(cost.snapshot_bytes),
        "publish_cpu_ms": statistics.fmean(cost.publish_cpu) * 1e3,
        "aggregate_cpu_ms": statistics.fmean(cost.aggregate_cpu) * 1e3,
        "merge_cpu_ms": statistics.fmean(cost.merge_cpu) * 1e3,
    }


def run(
    titles: int,
    workers: int,
    events: int,
    every: int,
    users: int,
    seed: int = 1,
    partitions: int = 8,
) -> dict[str, Any]:
    sim = Simulation(SimConfig(users=users, titles=titles, seed=seed))
    fed = Federation(
        sim.title_catalog(),
        workers,
        partitions=partitions,
        partition_of=kafka_partition,
        exchange_every=every,
    )
    rounds: list[dict[str, float]] = []
    for ev in sim.events(limit=events):
        fed.engine_for(ev["user_id"]).ingest(ev)
        done = fed.rounds
        fed.tick()
        if fed.rounds > done and fed.last is not None:
            rounds.append(per_worker(fed.last))
    last = rounds[-1] if rounds else {}
    return {
        "titles": titles,
        "workers": workers,
        "partitions": partitions,
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
    ap.add_argument("--partitions", type=int, default=8, help="title shards (partitions)")
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--every", type=int, default=4_000, help="events between rounds")
    ap.add_argument("--users", type=int, default=4_000)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    out = []
    print(
        "titles  workers  rounds  last round per worker: published KB  read KB (max)  "
        "snapshots KB  CPU ms: publish  aggregate  merge"
    )
    for t in parse_sizes(args.titles):
        for w in parse_sizes(args.workers):
            r = run(t, w, args.events, args.every, args.users, partitions=args.partitions)
            out.append(r)
            x = r["last_round"]
            if not x:  # one worker, or fewer events than one round
                print(
                    f"{t:>6,}  {w:>7}  {r['rounds']:>6}  no exchange round (one worker or "
                    f"fewer than --every {args.every} events)",
                    flush=True,
                )
                continue
            read = f"{x['bytes_read'] / 1e3:,.1f} ({x['bytes_read_max'] / 1e3:,.1f})"
            print(
                f"{t:>6,}  {w:>7}  {r['rounds']:>6}  {x['bytes_published'] / 1e3:>29,.1f}"
                f"  {read:>13}  {x['snapshot_bytes'] / 1e3:>12,.1f}"
                f"  {x['publish_cpu_ms']:>15.1f}  {x['aggregate_cpu_ms']:>9.1f}"
                f"  {x['merge_cpu_ms']:>5.1f}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
