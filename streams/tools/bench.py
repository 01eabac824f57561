"""``reelstream bench``: throughput, freshness and scale-out on the real local Kafka and Redis.

One run, on topics, a Redis key prefix, consumer groups and data directories of
its own (all removed at the end):

1. load the events topic with synthetic traffic (single-event records, or
   envelopes of one session's events with ``--envelope N``);
2. read it with a bare aiokafka consumer, once without decoding and once
   decoding every record with :func:`streams.contract.decode_record`: the floor
   cost of reading Kafka in Python on this machine;
3. one ``reelstream worker`` process consumes the topic through the full
   pipeline: events/s, CPU seconds per 1,000 events, peak RSS;
4. freshness, on that same warm worker: live traffic (``ts`` stamped at send)
   offered at half the measured single-worker rate, first for a warm-up (10 s by
   default, reported apart: the worker finishes what the load left it), then for
   the measured window (20 s by default); for every score message the
   worker publishes, the time from its triggering event's ``ts`` to the message
   reaching this process from the score topic. The worker writes Redis before it
   sends to the score topic, so that is an upper bound on event -> score in
   Redis; ``generated_at - event_ts`` (batch start) is the lower bound, and the
   worker's own histogram (event ``ts`` -> Redis write acknowledged) is shown too;
5. two worker processes in one fresh consumer group over the same topic.

Rates are measured from the worker's ``/metrics`` (``reelstream_events_consumed_total``),
between the first poll that sees an event processed and the first that sees
them all; for two workers, from the moment both are consuming (after their
first rebalance). Benchmarks report figures: nothing here asserts a target.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer

from streams.adapters.kafka_admin import (
    assign_all,
    delete_topics_async,
    earliest_reader,
    ensure_topics_async,
)
from streams.adapters.scrape import histogram_share, scrape, scrape_buckets
from streams.contract import decode_record
from streams.settings import Settings
from streams.tools.demo import start_worker, stop_worker
from streams.tools.traffic import envelopes

T = TypeVar("T")

CONSUMED = "reelstream_events_consumed_total"
TITLE_APPLIED = "reelstream_title_records_applied_total"
POLL_S = 0.25
OFFER_GAP_S = 0.1  # a turn of the offering loop later than this is reported


@dataclass
class BenchConfig:
    events: int = 200_000
    users: int = 2_000
    titles: int = 400
    seed: int = 7
    partitions: int = 4
    envelope: int = 0  # events per record at most; 0 or 1: one event per record
    freshness_seconds: float = 20.0
    # Live traffic at the same rate before the measured window (see _freshness).
    freshness_warmup_s: float = 10.0
    freshness_rate: float | None = None  # default: half the single-worker rate
    scale: bool = True  # run the two-worker phase
    stall_timeout_s: float = 90.0
    profile_out: str | None = None  # py-spy collapsed stacks of the single worker
    keep: bool = False
    worker_env: dict[str, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings_env(s: Settings) -> dict[str, str]:
    names = [
        *("broker", "redis_url", "app_id", "events_topic", "catalog_topic", "scores_topic"),
        *("dlq_topic", "key_prefix", "partitions", "data_dir", "web_port"),
    ]
    return {f"REELSTREAM_{n.upper()}": str(getattr(s, n)) for n in names}


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process, in MiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (``q`` in 0..100).

    >>> percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50), percentile(list(range(1, 101)), 99)
    (3.0, 99)
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


class Progress:
    """Progress lines on stderr; in-place updates (``end=""``) at most 4 times a second."""

    def __init__(self, quiet: bool = False) -> None:
        self.t0 = time.monotonic()
        self.last = 0.0
        self.quiet = quiet
        # On a terminal a status line is redrawn in place; in a log, one line every 5 s.
        self.tty = sys.stderr.isatty()

    def __call__(self, msg: str, *, end: str = "\n") -> None:
        now = time.monotonic()
        if self.quiet or (end == "" and now - self.last < (0.25 if self.tty else 5.0)):
            return
        self.last = now
        prefix = f"[{now - self.t0:6.1f}s] "
        if self.tty:
            print(f"\r{prefix}{msg}\033[K", end=end, file=sys.stderr, flush=True)
        else:
            print(f"{prefix}{msg}", file=sys.stderr, flush=True)


def run_stoppable(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` with SIGTERM handled like Ctrl-C: the run is cancelled, so its
    ``finally`` stops the worker subprocesses and deletes the run's topics instead of
    the tool dying and leaving workers running (raises ``asyncio.CancelledError``)."""

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await coro
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(main())


class Worker:
    """One ``reelstream worker`` subprocess with its own data dir and /metrics port."""

    def __init__(self, settings: Settings, workdir: Path, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.settings = dataclasses.replace(
            settings, data_dir=str(workdir / f"{name}-data"), web_port=_free_port()
        )
        self.log_path = workdir / f"{name}.log"
        env = {**env, **_settings_env(self.settings)}
        if any(k.startswith("REELSTREAM_EXP_") for k in env):
            # Experimental knobs: the same worker, started through the patching entry point.
            log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streams.tools.bench_experiments"],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        else:
            self.proc = start_worker(
                self.settings, Path(self.settings.data_dir), self.log_path, extra_env=env
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def consumed(self) -> float:
        if self.proc.poll() is not None:
            code = self.proc.returncode
            raise RuntimeError(f"worker {self.name} exited ({code}):\n{self.tail()}")
        return scrape(self.settings.web_port).total(CONSUMED)

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        stop_worker(self.proc)


async def _load(
    settings: Settings,
    catalog: list[dict[str, Any]],
    events: Iterator[dict[str, Any]],
    n: int,
    envelope: int,
    say: Progress,
) -> dict[str, Any]:
    """Publish the catalog, then ``n`` events; returns records, events and rates."""
    from streams.adapters.producer import EventProducer

    batch = list(itertools.islice(events, n))
    groups = envelopes(batch, envelope) if envelope > 1 else ([e] for e in batch)
    records: list[tuple[bytes, bytes]] = []
    for g in groups:
        value = orjson.dumps(g[0] if len(g) == 1 else {"v": 1, "events": g})
        records.append((g[0]["user_id"].encode(), value))
    started = time.monotonic()
    last = started
    async with EventProducer(settings, linger_ms=20) as producer:
        await producer.send_titles(catalog)
        for i, (key, value) in enumerate(records, 1):
            await producer.send_raw(settings.events_topic, key, value)
            if time.monotonic() - last >= 1.0:
                last = time.monotonic()
                say(f"loading: {i:,}/{len(records):,} records", end="")
    elapsed = time.monotonic() - started
    say(f"loaded {n:,} events in {len(records):,} records in {elapsed:.1f}s")
    return {
        "events": n,
        "records": len(records),
        "bytes": sum(len(v) for _, v in records),
        "seconds": round(elapsed, 2),
        "events_per_s": round(n / elapsed),
    }


async def _bare_read(settings: Settings, expect_records: int, decode: bool) -> dict[str, Any]:
    """Read the whole events topic with a group-less aiokafka consumer."""
    consumer = earliest_reader(
        settings, max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024
    )
    await consumer.start()
    try:
        await assign_all(consumer, settings.events_topic)
        n_records = n_events = 0
        started = time.perf_counter()
        while n_records < expect_records:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for recs in batches.values():
                n_records += len(recs)
                if decode:
                    for r in recs:
                        n_events += len(decode_record(r.value)[0])
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    out: dict[str, Any] = {
        "records": n_records,
        "seconds": round(elapsed, 3),
        "records_per_s": round(n_records / elapsed),
    }
    if decode:
        out["events"] = n_events
        out["events_per_s"] = round(n_events / elapsed)
    return out


async def _watch(
    workers: list[Worker],
    target: float,
    say: Progress,
    label: str,
    stall_s: float,
    until: Callable[[], Awaitable[bool]] | None = None,
) -> dict[str, Any]:
    """Poll the workers' counters until together they have processed ``target`` events
    (and ``until`` says the work those events caused elsewhere is done too).

    The window opens at the first poll where every worker has processed
    something (for one worker: the first event) and closes at the first poll
    where the total reaches ``target`` and ``until`` holds.
    """
    t_open = None
    counts_open: list[float] = []
    cpu_open: list[float] = []
    last_total, last_change = -1.0, time.monotonic()
    first_any = None
    first_any_total = 0.0
    cpu_first: list[float] = []
    while True:
        counts = [await asyncio.to_thread(w.consumed) for w in workers]
        now = time.monotonic()
        total = sum(counts)
        if total > 0 and first_any is None:
            first_any, first_any_total = now, total
            cpu_first = [proc_cpu_s(w.pid) for w in workers]
        if t_open is None and all(c > 0 for c in counts):
            t_open, counts_open = now, counts
            cpu_open = [proc_cpu_s(w.pid) for w in workers]
        if total != last_total:
            last_total, last_change = total, now
        elif now - last_change > stall_s:
            raise RuntimeError(
                f"{label}: stuck at {total:,.0f}/{target:,.0f} events for {stall_s:.0f}s;"
                f" worker log tail:\n{workers[0].tail()}"
            )
        if total >= target and (until is None or await until()):
            if t_open is None:  # some worker never got a partition: time from the first event
                t_open, counts_open = first_any or now, [first_any_total]
                cpu_open = cpu_first
            cpu_close = [proc_cpu_s(w.pid) for w in workers]
            break
        say(f"{label}: {total:,.0f}/{target:,.0f} events", end="")
        await asyncio.sleep(POLL_S)
    window = max(now - t_open, 1e-9)
    events = total - sum(counts_open)
    cpu = sum(cpu_close) - sum(cpu_open)
    per_worker = [
        {
            "events": c,
            "share": round(c / total, 3) if total else 0.0,
            "peak_rss_mb": round(proc_peak_rss_mb(w.pid), 1),
        }
        for c, w in zip(counts, workers, strict=True)
    ]
    out = {
        "events_measured": int(events),
        "seconds": round(window, 2),
        "events_per_s": round(events / window),
        "cpu_s_per_1k_events": round(1000 * cpu / events, 4) if events else None,
        "cpu_utilisation": round(cpu / window, 2),
        "workers": per_worker,
    }
    if first_any is not None and now > first_any:
        out["events_per_s_from_first_event"] = round((total - first_any_total) / (now - first_any))
    say(f"{label}: {out['events_per_s']:,} events/s over {window:.1f}s")
    return out


class _TitleRecordsEnd:
    """How many title records the run's events have produced so far (the title-events
    topic's end offsets, summed; the topic is the run's own, so it starts empty)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer = earliest_reader(settings)
        self.tps: list[Any] = []

    async def __aenter__(self) -> _TitleRecordsEnd:
        await self.consumer.start()
        self.tps = await assign_all(self.consumer, self.settings.title_events_topic)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def total(self) -> int:
        return sum((await self.consumer.end_offsets(self.tps)).values())


async def _freshness(
    settings: Settings,
    worker: Worker,
    events: Iterator[dict[str, Any]],
    rate: float,
    seconds: float,
    already: float,
    envelope: int,
    say: Progress,
    stall_s: float,
    warmup_s: float = 0.0,
) -> dict[str, Any]:
    """Offer live traffic at ``rate`` events/s for ``warmup_s`` + ``seconds``; time the
    scores of the last ``seconds``' events.

    Records have the load's shape: single events, or with ``envelope`` > 1 one
    session's consecutive events per record, every event stamped ``ts`` = now
    as its record is sent (so a client's batching delay is not included). The warm-up
    lets the worker finish what the load left it (its first timed full collection, the
    title publish, exchange round and checkpoint that carry the load's changes), so the
    figures are the steady state at this rate; the warm-up's own p99 is reported apart.
    """
    from streams.adapters.producer import EventProducer

    scores = AIOKafkaConsumer(
        **settings.kafka_client_kwargs(), group_id=None, enable_auto_commit=False
    )
    await scores.start()
    lags_arrival: list[float] = []
    lags_generated: list[float] = []
    timeline: dict[int, list[float]] = {}  # second since start -> lags of arrivals then
    lags_warmup: list[float] = []
    start_ms = int(time.time() * 1000)
    measured_from = [float("inf")]  # event time from which scores count (the warm-up's end)
    stop = asyncio.Event()

    async def read_scores() -> None:
        tps = await assign_all(scores, settings.scores_topic)
        await scores.seek_to_end(*tps)
        while not stop.is_set():
            batches = await scores.getmany(timeout_ms=100)
            arrived = time.time() * 1000
            for recs in batches.values():
                for r in recs:
                    msg = orjson.loads(r.value)
                    if msg["event_ts"] >= measured_from[0]:
                        lags_arrival.append(arrived - msg["event_ts"])
                        second = int((arrived - measured_from[0]) // 1000)
                        timeline.setdefault(second, []).append(arrived - msg["event_ts"])
                        lags_generated.append(msg["generated_at"] - msg["event_ts"])
                    elif msg["event_ts"] >= start_ms:
                        lags_warmup.append(arrived - msg["event_ts"])

    reader = asyncio.create_task(read_scores())
    await asyncio.sleep(0.5)  # let the reader take its position at the end of the topic
    sent = records = 0
    warm_sent = 0  # events offered during the warm-up
    hist_before = gc_before = None
    cpu0 = 0.0
    groups = envelopes(events, envelope) if envelope > 1 else ([e] for e in events)
    # The offering loop's own stops (its GC, a slow send): after one, the events it owed
    # go out at once, stamped late, and the worker sees a burst it did not cause.
    offer_gaps_ms: list[float] = []
    bench_gc_ms: list[float] = []
    gc_started = [0.0]

    def gc_pause(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        elif hist_before is not None and info["generation"] == 2:
            bench_gc_ms.append(1000 * (time.perf_counter() - gc_started[0]))

    gc.callbacks.append(gc_pause)
    # What the bench holds (a 100,000-viewer, 50,000-title simulation, the earlier
    # phases' leftovers in a sweep) made one full collection of this process take 2 s
    # at the end of a sweep's window: the events owed meanwhile went out stamped late and
    # the scores were stamped on arrival late. Frozen, a collection walks only what the
    # window itself allocates.
    gc.collect()
    gc.freeze()
    try:
        started = last_turn = time.monotonic()
        async with EventProducer(settings, validate=False) as producer:
            while (elapsed := time.monotonic() - started) < warmup_s + seconds:
                turn = time.monotonic()
                if hist_before is not None and turn - last_turn > OFFER_GAP_S:
                    offer_gaps_ms.append(1000 * (turn - last_turn))
                last_turn = turn
                if hist_before is None and elapsed >= warmup_s:
                    measured_from[0] = int(time.time() * 1000)
                    warm_sent = sent
                    hist_before = await asyncio.to_thread(scrape_buckets, worker.settings.web_port)
                    gc_before = await asyncio.to_thread(scrape, worker.settings.web_port)
                    cpu0 = proc_cpu_s(worker.pid)
                target = int(elapsed * rate)
                while sent < target:
                    now_ms = int(time.time() * 1000)
                    group = [{**e, "ts": now_ms} for e in next(groups)]
                    if len(group) == 1:
                        await producer.send(group[0])
                    else:
                        await producer.send_envelope(group)
                    sent += len(group)
                    records += 1
                phase = "warm-up" if hist_before is None else "measured"
                say(f"freshness: offered {sent:,} events at {rate:,.0f}/s ({phase})", end="")
                await asyncio.sleep(0.005)
        assert hist_before is not None and gc_before is not None
        await _watch([worker], already + sent, say, "freshness: draining", stall_s)
        cpu = proc_cpu_s(worker.pid) - cpu0
        measured = sent - warm_sent
        hist_after = await asyncio.to_thread(scrape_buckets, worker.settings.web_port)
        gc_after = await asyncio.to_thread(scrape, worker.settings.web_port)
        await asyncio.sleep(1.0)  # the last score messages are on their way
        stop.set()
        await reader
        await scores.stop()
    finally:
        gc.callbacks.remove(gc_pause)  # pauses until the last score is read count
        gc.unfreeze()
    share = histogram_share(hist_before, hist_after)

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(percentile(values, 50), 1),
            "p99_ms": round(percentile(values, 99), 1),
            "max_ms": round(max(values), 1) if values else float("nan"),
        }

    out = {
        "offered_events_per_s": round(rate),
        "seconds": seconds,
        "warmup_seconds": warmup_s,
        "warmup_events": warm_sent,
        "warmup_event_to_score_topic": stats(lags_warmup) if lags_warmup else None,
        "events": measured,
        "records": records,
        "score_messages": len(lags_arrival),
        "event_to_score_topic": stats(lags_arrival),
        "event_to_batch_start": stats(lags_generated),
        "worker_redis_written_within": {
            f"{le}s": v for le, v in share.items() if le in ("0.1", "0.25", "0.5", "1.0")
        },
        "cpu_s_per_1k_events": round(1000 * cpu / measured, 4) if measured else None,
        # Full collections meanwhile: each stops the worker (streams/worker/gc_pauses.py).
        "gc_full_collections": {
            k: round(
                gc_after.value(f"reelstream_gc_pause_seconds_{k}", generation="2")
                - gc_before.value(f"reelstream_gc_pause_seconds_{k}", generation="2"),
                3,
            )
            for k in ("count", "sum")
        },
        # Stops of the worker's event loop past REELSTREAM_LOOP_BLOCKED_S, each with its
        # stack in the worker's log (streams/worker/loop_watch.py).
        "event_loop_held": round(
            gc_after.value("reelstream_event_loop_blocked_total")
            - gc_before.value("reelstream_event_loop_blocked_total")
        ),
        # The bench's own stops while offering, past OFFER_GAP_S: the load was bursty then.
        "offer_gaps_ms": [round(g) for g in offer_gaps_ms],
        "bench_full_gc_ms": [round(g) for g in bench_gc_ms],
        "measured_from_ms": measured_from[0],  # to line the timeline up with worker logs
        "p50_ms_by_second": [
            round(percentile(timeline[sec], 50)) for sec in sorted(timeline) if timeline[sec]
        ],
    }
    say(
        f"freshness: {len(lags_arrival):,} score messages, p99 "
        f"{out['event_to_score_topic']['p99_ms']:,.0f} ms"
    )
    return out


async def _cleanup(settings: Settings, prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
    finally:
        await admin.close()
    await delete_topics_async(settings, names)
    import redis

    r = redis.Redis.from_url(settings.redis_url)
    keys = list(r.scan_iter(f"{settings.key_prefix}:*", count=1000))
    for i in range(0, len(keys), 1000):
        r.delete(*keys[i : i + 1000])


def _machine() -> dict[str, Any]:
    import faust

    try:
        import faust._cython.streams

        cython = not os.environ.get("NO_CYTHON")
    except ImportError:
        cython = False
    return {
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "faust": faust.__version__,
        "faust_cython_streams": cython,
    }


async def run_bench(cfg: BenchConfig, say: Progress) -> dict[str, Any]:

    run = uuid.uuid4().hex[:6]
    prefix = f"bench-{run}"
    workdir = Path(tempfile.mkdtemp(prefix=f"reelstream-{prefix}-"))
    settings = Settings.from_env().isolated(
        prefix, app_id=f"{prefix}-w1", partitions=cfg.partitions, data_dir=str(workdir)
    )
    env = {k: v for k, v in os.environ.items() if k.startswith("REELSTREAM_")}
    env.update(cfg.worker_env)
    result: dict[str, Any] = {
        "run": prefix,
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": _machine(),
        "config": {
            "events": cfg.events,
            "users": cfg.users,
            "titles": cfg.titles,
            "partitions": cfg.partitions,
            "envelope": cfg.envelope,
            "worker_env": {k: v for k, v in env.items() if k not in _settings_env(settings)},
        },
    }
    workers: list[Worker] = []
    say(f"run {prefix}: topics {prefix}-*, Redis prefix {settings.key_prefix}, dir {workdir}")
    try:
        await _phases(cfg, settings, prefix, workdir, env, workers, result, say)
    except (RuntimeError, OSError) as exc:  # report what was measured before the failure
        result["error"] = str(exc)
        say(f"stopped: {exc}")
    finally:
        for w in workers:
            w.stop()
        result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        if not cfg.keep:
            say("cleaning up topics, Redis keys and data dirs ...")
            with contextlib.suppress(Exception):
                await _cleanup(settings, prefix)
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"kept topics {prefix}-*, Redis keys {settings.key_prefix}:*, dir {workdir}")
    return result


async def _phases(
    cfg: BenchConfig,
    settings: Settings,
    prefix: str,
    workdir: Path,
    env: dict[str, str],
    workers: list[Worker],
    result: dict[str, Any],
    say: Progress,
) -> None:
    """The measured phases, in order; each one adds its figures to ``result``."""
    from streams.tools.synthetic import SimConfig, Simulation

    await ensure_topics_async(settings)
    sim = Simulation(SimConfig(users=cfg.users, titles=cfg.titles, seed=cfg.seed))
    stream = sim.events()
    load = await _load(settings, sim.catalog, stream, cfg.events, cfg.envelope, say)
    result["load"] = load
    say("bare aiokafka read, no decoding ...")
    result["bare_read"] = await _bare_read(settings, load["records"], decode=False)
    say("bare aiokafka read + decode_record ...")
    result["bare_decode"] = await _bare_read(settings, load["records"], decode=True)
    say(f"bare: {result['bare_decode']['events_per_s']:,} events/s decoded")

    say("starting one worker ...")
    w1 = Worker(settings, workdir, "w1", env)
    workers.append(w1)
    profiler = None
    if cfg.profile_out:
        profiler = _start_py_spy(w1.pid, cfg.profile_out)
    # The rate counts the title side too: a worker has taken a load when it has also
    # folded every title record the load's events produced (otherwise that work spills
    # into the next phase and the rate overstates what the worker sustains).
    async with _TitleRecordsEnd(settings) as title_end:

        async def title_side_done() -> bool:
            applied = await asyncio.to_thread(
                lambda: scrape(w1.settings.web_port).total(TITLE_APPLIED)
            )
            return applied >= await title_end.total()

        one = await _watch(
            [w1], cfg.events, say, "1 worker", cfg.stall_timeout_s, until=title_side_done
        )
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        profiler.wait(30)
        one["profile"] = cfg.profile_out
    one["ratio_to_bare"] = round(one["events_per_s"] / result["bare_decode"]["events_per_s"], 4)
    result["one_worker"] = one

    rate = cfg.freshness_rate or one["events_per_s"] / 2
    result["freshness"] = await _freshness(
        settings,
        w1,
        stream,
        rate,
        cfg.freshness_seconds,
        cfg.events,
        cfg.envelope,
        say,
        cfg.stall_timeout_s,
        cfg.freshness_warmup_s,
    )
    total = cfg.events + result["freshness"]["warmup_events"] + result["freshness"]["events"]
    result["one_worker"]["workers"][0]["peak_rss_mb"] = round(proc_peak_rss_mb(w1.pid), 1)
    w1.stop()

    if cfg.scale:
        say("starting two workers in a fresh consumer group ...")
        two_settings = dataclasses.replace(settings, app_id=f"{prefix}-w2")
        pair = [Worker(two_settings, workdir, name, env) for name in ("w2a", "w2b")]
        workers.extend(pair)
        two = await _watch(pair, total, say, "2 workers", cfg.stall_timeout_s)
        two["scaling"] = round(two["events_per_s"] / one["events_per_s"], 3)
        two["events_total"] = total
        result["two_workers"] = two
        for w in pair:
            w.stop()


def _start_py_spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    return subprocess.Popen(
        [
            *(exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"),
            *("--nonblocking", "--threads", "-o", out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def format_table(r: dict[str, Any]) -> str:
    """The human-readable summary of a :func:`run_bench` result."""
    c, m = r["config"], r["machine"]
    rows: list[tuple[str, str]] = []

    def add(name: str, value: str) -> None:
        rows.append((name, value))

    load = r.get("load", {})
    shape = f"envelopes of <= {c['envelope']}" if c["envelope"] > 1 else "one event per record"
    add("events loaded", f"{load.get('events', 0):,} in {load.get('records', 0):,} records")
    add("record shape", f"{shape}, {c['partitions']} partitions, {c['users']:,} users")
    add("producer load rate", f"{load.get('events_per_s', 0):,} events/s")
    if "bare_read" in r:
        add("bare aiokafka read", f"{r['bare_read']['records_per_s']:,} records/s")
        add("bare aiokafka + decode_record", f"{r['bare_decode']['events_per_s']:,} events/s")
    if "one_worker" in r:
        o = r["one_worker"]
        add("1 worker, full pipeline", f"{o['events_per_s']:,} events/s")
        add("  ratio to bare decode", f"{o['ratio_to_bare']:.1%}")
        add("  CPU s per 1,000 events", f"{o['cpu_s_per_1k_events']:.3f}")
        add("  peak RSS", f"{o['workers'][0]['peak_rss_mb']:.0f} MiB")
    if "freshness" in r:
        f = r["freshness"]
        a, g = f["event_to_score_topic"], f["event_to_batch_start"]
        add(
            "freshness offered load",
            f"{f['offered_events_per_s']:,} events/s for {f['seconds']:.0f}s"
            f" ({f['score_messages']:,} score messages)",
        )
        add(
            "  event ts -> score on topic",
            f"p50 {a['p50_ms']:,.0f} ms  p99 {a['p99_ms']:,.0f} ms  max {a['max_ms']:,.0f} ms",
        )
        add(
            "  event ts -> batch start",
            f"p50 {g['p50_ms']:,.0f} ms  p99 {g['p99_ms']:,.0f} ms  max {g['max_ms']:,.0f} ms",
        )
        w = f["worker_redis_written_within"]
        add(
            "  worker: in Redis within",
            "  ".join(f"{k} {v:.1%}" for k, v in w.items()),
        )
        add("  CPU s per 1,000 events", f"{f['cpu_s_per_1k_events']:.3f}")
        wu = f.get("warmup_event_to_score_topic")
        if wu:
            add(
                f"  warm-up before ({f['warmup_seconds']:.0f}s, not counted)",
                f"p50 {wu['p50_ms']:,.0f} ms  p99 {wu['p99_ms']:,.0f} ms"
                f"  max {wu['max_ms']:,.0f} ms",
            )
        gcf = f.get("gc_full_collections") or {}
        if gcf:
            add("  full GC pauses", f"{gcf['count']:.0f}, {gcf['sum'] * 1000:,.0f} ms in all")
        if f.get("offer_gaps_ms"):
            gaps = f["offer_gaps_ms"]
            add(
                f"  offering held > {OFFER_GAP_S * 1000:.0f} ms",
                f"{len(gaps)} times, longest {max(gaps):,} ms (the load came in bursts)",
            )
        if f.get("bench_full_gc_ms"):
            pauses = f["bench_full_gc_ms"]
            add("  bench's own full GC", f"{len(pauses)}, longest {max(pauses):,} ms")
        if f.get("event_loop_held"):
            add("  event loop held > 1 s", f"{f['event_loop_held']} times (stacks: worker log)")
    if "two_workers" in r:
        t = r["two_workers"]
        add("2 workers, one group", f"{t['events_per_s']:,} events/s (x{t['scaling']:.2f})")
        add("  share per worker", " / ".join(f"{w['share']:.0%}" for w in t["workers"]))
        add("  CPU s per 1,000 events", f"{t['cpu_s_per_1k_events']:.3f}")
        add("  peak RSS per worker", " / ".join(f"{w['peak_rss_mb']:.0f}" for w in t["workers"]))
    if "error" in r:
        add("STOPPED", r["error"].splitlines()[0])
    width = max(len(k) for k, _ in rows) + 2
    head = (
        f"reelstream bench {r['run']}  {r['started_at']}  {m['cpus']} CPUs, load average "
        f"{m['loadavg'][0]} -> {m.get('loadavg_end', ['?'])[0]}, faust {m['faust']}, "
        f"Cython streams {'on' if m['faust_cython_streams'] else 'off'}"
    )
    return "\n".join([head, *(f"{k:<{width}}{v}" for k, v in rows)])


def main(cfg: BenchConfig, json_path: str | None = None, quiet: bool = False) -> int:
    say = Progress(quiet)
    try:
        result = run_stoppable(run_bench(cfg, say))
    except asyncio.CancelledError:
        print("stopped by SIGTERM (the run's cleanup ran)", file=sys.stderr)
        return 143
    print(format_table(result))
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
        print(f"JSON written to {json_path}")
    return 1 if "error" in result else 0


def parse_env_pairs(pairs: list[str]) -> dict[str, str]:
    """``["REELSTREAM_BATCH_MAX=2000"]`` -> ``{"REELSTREAM_BATCH_MAX": "2000"}``.

    >>> parse_env_pairs(["A=1", "B=x=y"])
    {'A': '1', 'B': 'x=y'}
    """
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--worker-env wants NAME=VALUE, got {pair!r}")
        out[name] = value
    return out
