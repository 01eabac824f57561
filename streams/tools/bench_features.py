"""Per-event cost of the feature update on one core: ``python -m streams.tools.bench_features``.

Runs the pure path the worker runs per event (admission gate, profile, behavioural
and per-title features, title-side record) over synthetic events, then the title
owner's fold (``TitleStats.update``) over the records it produced. No Kafka, Redis
or Faust: this is the cost the features add to the per-event budget.
"""

from __future__ import annotations

import argparse
import time

from features.catalog import parse_title
from features.title_stats import TitleStats
from online_models.engine import Engine
from streams.tools.synthetic import SimConfig, Simulation


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--titles", type=int, default=1000)
    args = ap.parse_args(argv)
    sim = Simulation(SimConfig(users=args.users, titles=args.titles, seed=1))
    events = list(sim.events(limit=args.events))
    eng = Engine()
    for rec in sim.catalog:
        eng.catalog.upsert(parse_title(rec))
    now = int(time.time() * 1000)
    recs = []
    t0 = time.perf_counter()
    for ev in events:
        r = eng.ingest(ev, now)
        if r.title_record is not None:
            recs.append(r.title_record)
    t1 = time.perf_counter()
    from features.event_gate import EventGate
    from features.user_features import UserFeatures

    gates: dict[str, EventGate] = {}
    feats: dict[str, UserFeatures] = {}
    runtimes = {t: eng.catalog.titles[t].runtime_s for t in eng.catalog.titles}
    f0 = time.perf_counter()
    for ev in events:
        uid = ev["user_id"]
        g = gates.get(uid) or gates.setdefault(uid, EventGate())
        if g.check(ev["event_id"], ev["ts"], now) == "ok":
            f = feats.get(uid) or feats.setdefault(uid, UserFeatures())
            f.update(ev, runtimes.get(ev["title_id"]))
    f1 = time.perf_counter()
    t1 += f1 - f0
    titles: dict[str, TitleStats] = {}
    for i, rec in enumerate(recs):
        s = titles.get(rec["t"])
        if s is None:
            s = titles[rec["t"]] = TitleStats()
        s.update(rec, (0, i, 0))
    t2 = time.perf_counter()
    p = next(iter(eng.profiles.values()))
    import orjson

    t3 = time.perf_counter()
    for _ in range(2000):
        type(p).from_dict(orjson.loads(orjson.dumps(p.to_dict())))
    t4 = time.perf_counter()
    n = len(events)
    print(f"events: {n:,}  users: {len(eng.profiles):,}  title records: {len(recs):,}")
    print(
        "user side  Engine.ingest (gate+profile+features+popularity): "
        f"{(t1 - t0) / n * 1e6:.1f} us/event"
    )
    print(
        f"features only (EventGate.check + UserFeatures.update): {(f1 - f0) / n * 1e6:.1f} us/event"
    )
    print(f"title side TitleStats.update: {(t2 - t1) / max(1, len(recs)) * 1e6:.1f} us/record")
    print(f"profile JSON round trip (per table write): {(t4 - t3) / 2000 * 1e6:.1f} us")


if __name__ == "__main__":
    main()
