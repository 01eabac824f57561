"""``reelstream soak``: one worker's memory under steady traffic from many more viewers than
its user cache holds (issue 11, "Bounded memory").

One run, on topics, a Redis key prefix, a consumer group and a data directory of its
own (removed at the end, like ``reelstream bench``):

1. one ``reelstream worker`` with ``REELSTREAM_USER_CACHE=--cache``;
2. live synthetic traffic (``ts`` = now) at ``--rate`` events/s for ``--minutes``. The
   simulation's viewings (a session's events about one title: impression, play,
   progress, ..., stop) are dealt to ``--viewers`` viewer ids in turn, so every viewer
   comes back about every ``viewers`` viewings: long after the cache dropped it when
   ``viewers`` is well above ``cache`` (a simulated session is ~36 events, a viewing ~4);
3. every ``--sample-s`` seconds: the worker's RSS (``VmRSS`` of /proc/<pid>/status),
   events consumed, the cache's entries and evictions (its /metrics), the load average.

The summary: warm-up end (the first sample at or after ``--warmup-minutes`` with the
cache full), RSS then and at the end, growth in %, the post-warm-up slope (least
squares, MiB per minute), events/s offered and consumed, distinct viewers sent.
Figures only: nothing here asserts a target.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.adapters.kafka_admin import ensure_topics_async
from streams.adapters.scrape import scrape
from streams.settings import Settings
from streams.tools.bench import Progress, Worker, _cleanup, proc_cpu_s, run_stoppable
from streams.tools.traffic import send_events

CONSUMED = "reelstream_events_consumed_total"


@dataclass
class SoakConfig:
    minutes: float = 20.0
    rate: float = 250.0  # events/s offered
    viewers: int = 20_000
    cache: int = 2_000  # the worker's REELSTREAM_USER_CACHE
    warmup_minutes: float = 5.0
    sample_s: float = 10.0
    titles: int = 400
    partitions: int = 4
    seed: int = 11
    keep: bool = False
    # Events per viewer sent before the measured traffic, as fast as the worker takes them:
    # viewers who already have a history, so their records are near their caps and the
    # measured window shows the plateau rather than records still filling up.
    history: int = 0


def vm_rss_mb(pid: int) -> float:
    """Resident set size (VmRSS) of a process, in MiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def dealt(events: Iterator[dict[str, Any]], viewers: int) -> Iterator[dict[str, Any]]:
    """The events with each viewing (user, session, title) dealt to the next of ``viewers``
    ids in turn.

    >>> evs = [{"user_id": u, "session_id": s, "title_id": "t"} for u, s in
    ...        [("a", 1), ("b", 1), ("a", 1), ("a", 2), ("c", 1)]]
    >>> [e["user_id"] for e in dealt(iter(evs), 3)]
    ['v0000000', 'v0000001', 'v0000000', 'v0000002', 'v0000000']
    """
    open_: OrderedDict[tuple[str, Any, str], str] = OrderedDict()  # recent viewings -> viewer
    turn = 0
    for ev in events:
        key = (ev["user_id"], ev.get("session_id"), ev["title_id"])
        viewer = open_.get(key)
        if viewer is None:
            viewer = open_[key] = f"v{turn % viewers:07d}"
            turn += 1
            if len(open_) > 10_000:
                open_.popitem(last=False)
        yield {**ev, "user_id": viewer}


def summarise(samples: list[dict[str, float]], cache: int, warmup_s: float) -> dict[str, Any]:
    """Warm-up end, RSS then and at the end, growth and slope after warm-up.

    >>> s = [{"t": t, "rss_mb": 100 + (t >= 60) * 50 + t / 100, "cache_entries": 10}
    ...      for t in range(0, 301, 30)]
    >>> r = summarise(s, cache=10, warmup_s=60)
    >>> r["warmup_end_s"], r["rss_at_warmup_mb"], r["rss_end_mb"], r["growth_pct"]
    (60, 150.6, 153.0, 1.59)
    """
    if not samples:
        return {}
    warm = next(
        (s for s in samples if s["t"] >= warmup_s and s["cache_entries"] >= 0.95 * cache),
        None,
    )
    if warm is None:
        return {"warmup_end_s": None, "rss_end_mb": round(samples[-1]["rss_mb"], 1)}
    after = [s for s in samples if s["t"] >= warm["t"]]
    start, end = warm["rss_mb"], samples[-1]["rss_mb"]
    start_rocks = warm.get("rocksdb_mb")
    slope = 0.0
    if len(after) > 1:
        mt = sum(s["t"] for s in after) / len(after)
        mr = sum(s["rss_mb"] for s in after) / len(after)
        var = sum((s["t"] - mt) ** 2 for s in after)
        slope = sum((s["t"] - mt) * (s["rss_mb"] - mr) for s in after) / var * 60 if var else 0.0
    return {
        "warmup_end_s": warm["t"],
        "rss_at_warmup_mb": round(start, 1),
        "rss_end_mb": round(end, 1),
        "rss_max_after_warmup_mb": round(max(s["rss_mb"] for s in after), 1),
        "rocksdb_at_warmup_mb": start_rocks,
        "rocksdb_end_mb": samples[-1].get("rocksdb_mb"),
        "growth_pct": round(100 * (end - start) / start, 2),
        "slope_mb_per_min": round(slope, 3),
    }


async def run_soak(cfg: SoakConfig, say: Progress) -> dict[str, Any]:
    from streams.tools.synthetic import SimConfig, Simulation

    prefix = f"soak-{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix=f"reelstream-{prefix}-"))
    settings = Settings.from_env().isolated(
        prefix, app_id=f"{prefix}-w1", partitions=cfg.partitions, data_dir=str(workdir)
    )
    env = {k: v for k, v in os.environ.items() if k.startswith("REELSTREAM_")}
    env["REELSTREAM_USER_CACHE"] = str(cfg.cache)
    result: dict[str, Any] = {
        "run": prefix,
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "config": {**cfg.__dict__, "cpus": os.cpu_count()},
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    say(f"run {prefix}: topics {prefix}-*, Redis prefix {settings.key_prefix}, dir {workdir}")
    worker: Worker | None = None
    samples: list[dict[str, float]] = []
    viewers_sent: set[str] = set()
    sent = [0]
    try:
        await ensure_topics_async(settings)
        sim = Simulation(SimConfig(users=2_000, titles=cfg.titles, seed=cfg.seed))
        from streams.adapters.producer import EventProducer

        async with EventProducer(settings) as producer:
            await producer.send_titles(sim.catalog)
        worker = Worker(settings, workdir, "w1", env)
        say(f"worker pid {worker.pid}, user cache {cfg.cache:,}; waiting for /metrics ...")
        deadline = time.monotonic() + 120
        while True:
            try:
                worker.consumed()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not come up:\n{worker.tail()}") from None
                await asyncio.sleep(1.0)

        def traffic() -> Iterator[dict[str, Any]]:
            for ev in dealt(sim.events(), cfg.viewers):
                viewers_sent.add(ev["user_id"])
                yield ev

        stream = traffic()
        history = 0
        if cfg.history > 0:
            want = cfg.history * cfg.viewers
            say(f"history: {want:,} events ({cfg.history} per viewer), as fast as taken ...")
            history = await send_events(settings, itertools.islice(stream, want), live=True)
            while (done := worker.consumed()) < history:
                say(f"history: {done:,.0f} of {history:,} consumed", end="")
                await asyncio.sleep(2.0)
            say(f"history: {history:,} events consumed; the measured traffic starts")
        result["history_events"] = history
        stop = asyncio.Event()
        sender = asyncio.create_task(
            send_events(
                settings,
                stream,
                rate=cfg.rate,
                live=True,
                stop=stop,
                progress=lambda n, _r: sent.__setitem__(0, n),
            )
        )
        started = time.monotonic()
        cpu0 = proc_cpu_s(worker.pid)
        while (t := time.monotonic() - started) < cfg.minutes * 60:
            if sender.done():
                sender.result()  # raises what stopped it
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({worker.proc.returncode}):\n{worker.tail()}")
            page = await asyncio.to_thread(scrape, worker.settings.web_port)
            samples.append(
                {
                    "t": round(t),
                    "rss_mb": round(vm_rss_mb(worker.pid), 1),
                    "consumed": page.total(CONSUMED),
                    "cache_entries": page.value("reelstream_table_entries", table="user-profiles"),
                    "evictions": page.total("reelstream_user_cache_evictions_total"),
                    "lag": page.total("reelstream_consumer_lag_records"),
                    "rocksdb_mb": round(page.total("reelstream_rocksdb_memory_bytes") / 2**20, 1),
                    "viewers": len(viewers_sent),
                    "load1": round(os.getloadavg()[0], 2),
                }
            )
            s = samples[-1]
            say(
                f"{t / 60:5.1f} min  RSS {s['rss_mb']:.0f} MiB  consumed {s['consumed']:,.0f}  "
                f"cache {s['cache_entries']:,.0f}  evicted {s['evictions']:,.0f}  "
                f"viewers {s['viewers']:,}  lag {s['lag']:,.0f}  "
                f"RocksDB {s['rocksdb_mb']:.0f} MiB  load {s['load1']}"
            )
            await asyncio.sleep(max(0.0, cfg.sample_s - (time.monotonic() - started - t)))
        stop.set()
        sent_n = await sender
        elapsed = time.monotonic() - started
        cpu = proc_cpu_s(worker.pid) - cpu0
        result["summary"] = {
            **summarise(samples, cfg.cache, cfg.warmup_minutes * 60),
            "seconds": round(elapsed),
            "events_sent": sent_n,
            "offered_events_per_s": round(sent_n / elapsed, 1),
            "consumed_events_per_s": round((samples[-1]["consumed"] - history) / elapsed, 1),
            "distinct_viewers_sent": len(viewers_sent),
            "cache": cfg.cache,
            "evictions": samples[-1]["evictions"],
            "final_lag": samples[-1]["lag"],
            "worker_cpu_share": round(cpu / elapsed, 3),
            "loadavg_mean_1m": round(sum(s["load1"] for s in samples) / len(samples), 2),
        }
    except (RuntimeError, OSError) as exc:
        result["error"] = str(exc)
        say(f"stopped: {exc}")
    finally:
        if worker is not None:
            worker.stop()
        result["samples"] = samples
        result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        if not cfg.keep:
            say("cleaning up topics, Redis keys and data dir ...")
            with contextlib.suppress(Exception):
                await _cleanup(settings, prefix)
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def format_summary(r: dict[str, Any]) -> str:
    c, s = r["config"], r.get("summary", {})
    lines = [
        f"reelstream soak {r['run']}  {r['started_at']}  {c['cpus']} CPUs, load average "
        f"{r['loadavg_start'][0]} -> {r['loadavg_end'][0]} (mean {s.get('loadavg_mean_1m')})",
        f"traffic        {s.get('events_sent', 0):,} events in {s.get('seconds', 0)} s: "
        f"{s.get('offered_events_per_s')} offered, {s.get('consumed_events_per_s')} consumed "
        f"events/s; {s.get('distinct_viewers_sent', 0):,} distinct viewers "
        f"({c['viewers']:,} ids), user cache {c['cache']:,} "
        f"({s.get('evictions', 0):,.0f} evictions), final lag {s.get('final_lag')}",
        f"warm-up end    {s.get('warmup_end_s')} s (cache full, >= {c['warmup_minutes']} min)",
        f"RSS            {s.get('rss_at_warmup_mb')} MiB at warm-up -> {s.get('rss_end_mb')} MiB "
        f"at end (max {s.get('rss_max_after_warmup_mb')}): growth {s.get('growth_pct')} %, "
        f"slope {s.get('slope_mb_per_min')} MiB/min",
        f"  of which     RocksDB {s.get('rocksdb_at_warmup_mb')} -> {s.get('rocksdb_end_mb')} MiB "
        "(memtables, table readers, block caches: reelstream_rocksdb_memory_bytes)",
        f"worker CPU     {s.get('worker_cpu_share')} cores",
    ]
    if "error" in r:
        lines.append("STOPPED " + r["error"].splitlines()[0])
    return "\n".join(lines)


def main(cfg: SoakConfig, json_path: str | None = None, quiet: bool = False) -> int:
    try:
        result = run_stoppable(run_soak(cfg, Progress(quiet)))
    except asyncio.CancelledError:
        print("stopped by SIGTERM (the run's cleanup ran)", file=sys.stderr)
        return 143
    print(format_summary(result))
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
        print(f"JSON written to {json_path}")
    return 1 if "error" in result else 0
