"""``reelstream demo``: the whole loop on the local stack, with a live view.

Starts the stack, publishes the synthetic catalog, starts a worker process and
waits until it is ready (``/readyz``: broker, Redis, tables recovered, catalog
loaded), then sends live synthetic traffic (with a few malformed records) and
every two seconds prints the event rate, the dead-letter count, how soon scores
reached Redis after their events, and a few users' top-10. Traffic starts only
once the worker is ready and the default rate is well under one worker's
capacity, so every report shows scores refreshed within a second of their events
instead of a start-up backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

from streams.adapters.redis_keys import recs_key
from streams.adapters.scrape import histogram_share, scrape, scrape_buckets
from streams.settings import Settings, stack_dir
from streams.tools import stack
from streams.tools.synthetic import SimConfig, Simulation

READY_TIMEOUT_S = 180.0
# Offered by default: about a third of what one worker sustains on a 2-core laptop with
# this catalog, so reports show live refreshes, not a queue (docs/performance.md).
DEFAULT_RATE = 200.0

MALFORMED = [
    b'{"event_id": "bad-1", "user_id": "u1"}',
    b"not json at all",
    b'{"event_id":"bad-2","user_id":"u1","title_id":"t1","event_type":"warp","ts":1}',
]


def start_worker(
    settings: Settings, data_dir: Path, log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REELSTREAM_DATA_DIR": str(data_dir),
        "REELSTREAM_WEB_PORT": str(settings.web_port),
        **(extra_env or {}),
    }
    exe = Path(sys.executable).with_name("reelstream")
    cmd = [str(exe), "worker"] if exe.exists() else [sys.executable, "-m", "streams.cli", "worker"]
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _show(
    settings: Settings,
    sim: Simulation,
    users: list[str],
    elapsed: float,
    sent: int,
    stats: dict[str, float],
    prev: dict[str, float],
    fresh: dict[str, float],
) -> None:
    import redis

    r = redis.Redis.from_url(settings.redis_url)
    consumed = stats.get("reelstream_events_consumed_total", 0.0)
    rate = (consumed - prev.get("reelstream_events_consumed_total", 0.0)) / 2.0
    dlq = stats.get("reelstream_events_rejected_total", 0.0)
    refreshes = stats.get("reelstream_score_refreshes_total", 0.0)
    print(
        f"\n[{elapsed:5.0f}s] sent {sent:,}  processed {consumed:,.0f} ({rate:,.0f}/s)"
        f"  dead-lettered {dlq:,.0f}  score refreshes {refreshes:,.0f}"
    )
    if fresh:
        within = "  ".join(
            f"{le} s {100 * fresh[le]:.0f}%" for le in ("0.1", "0.25", "0.5", "1.0") if le in fresh
        )
        print(f"  scores in Redis after their events, last 2 s: within {within}")
    truth = sim.ground_truth()["users"]
    for uid in users:
        blob = r.get(recs_key(settings.key_prefix, uid))
        likes = ", ".join(t.split(":", 1)[1] for t in truth[uid]["favorite_tags"])
        if not blob:
            print(f"  {uid} (planted: {likes}): no scores yet")
            continue
        msg = orjson.loads(blob)
        lag = msg["generated_at"] - msg["event_ts"]
        print(f"  {uid} (planted: {likes}) top-10, refreshed {lag:,} ms after its event:")
        for item in msg["items"][:10]:
            title = next(t for t in sim.catalog if t["title_id"] == item["title_id"])
            print(
                f"    {item['rank']:2d}. {title['name'][:28]:28s} {item['score']:.3f}  "
                f"{'; '.join(item['reasons'])}"
            )


def run_demo(*, seconds: float, rate: float | None, users: int, titles: int, seed: int) -> int:
    rate = rate or DEFAULT_RATE
    settings = Settings.from_env()
    stack.up(settings)
    # The run in the event ids: a demo run again on the same stack is new traffic.
    sim = Simulation(SimConfig(users=users, titles=titles, seed=seed, run=f"{time.time_ns():x}"))
    demo_dir = stack_dir() / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_publish_catalog(settings, sim))
    print(f"published {len(sim.catalog)} titles to '{settings.catalog_topic}'")
    worker = start_worker(settings, demo_dir / "worker-data", demo_dir / "worker.log")
    print(f"worker started (pid {worker.pid}), log: {demo_dir / 'worker.log'}")
    try:
        if not wait_ready(settings.web_port, worker, READY_TIMEOUT_S):
            print(f"the worker did not become ready; see {demo_dir / 'worker.log'}")
            return 1
        asyncio.run(_drive(settings, sim, seconds, rate, worker))
    except KeyboardInterrupt:
        print("\ninterrupted")
    finally:
        stop_worker(worker)
    p = settings.key_prefix
    print(f"""
Stopped. The stack is still up (stop it with `make stack-down`). To look around:
  redis-cli --scan --pattern '{p}:recs:*' | head        # users with scores
  redis-cli GET '{p}:recs:{{u000001}}'                    # one user's score message
  .venv/bin/reelstream worker                            # run a worker yourself
  then: curl -s http://127.0.0.1:{settings.web_port}/metrics | grep ^reelstream_
  score topic: '{settings.scores_topic}', dead letters: '{settings.dlq_topic}' on {settings.broker}
""")
    return 0


def readyz(port: int, timeout: float = 2.0) -> tuple[int, dict]:
    """(status, body) of a local worker's /readyz; (0, {}) when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=timeout) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503 while not ready: the body says why
        try:
            return exc.code, orjson.loads(exc.read())
        except orjson.JSONDecodeError:
            return exc.code, {}
    except (OSError, orjson.JSONDecodeError):
        return 0, {}


def wait_ready(port: int, worker: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Until the worker's /readyz says ready; prints what it still waits for every 2 s."""
    started = time.monotonic()
    shown = -2.0  # the first "not ready" answer is shown at once
    while time.monotonic() - started < timeout_s:
        if worker.poll() is not None:
            print(f"worker exited with {worker.returncode}")
            return False
        status, body = readyz(port)
        elapsed = time.monotonic() - started
        if status == 200:
            print(f"worker ready after {elapsed:.1f} s; sending live traffic")
            return True
        if elapsed - shown >= 2.0:
            shown = elapsed
            waiting = [k for k, ok in (body.get("checks") or {}).items() if not ok]
            print(f"  [{elapsed:4.0f}s] waiting for the worker: {', '.join(waiting) or 'starting'}")
        time.sleep(0.25)
    return False


async def _publish_catalog(settings: Settings, sim: Simulation) -> None:
    from streams.adapters.producer import EventProducer

    async with EventProducer(settings) as producer:
        await producer.send_titles(sim.catalog)


async def _drive(
    settings: Settings,
    sim: Simulation,
    seconds: float,
    rate: float,
    worker: subprocess.Popen[bytes],
) -> None:
    from streams.adapters.producer import EventProducer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    events = sim.events()
    per_user: dict[str, int] = {}
    started = time.monotonic()
    sent = 0
    prev: dict[str, float] = {}
    hist = await asyncio.to_thread(scrape_buckets, settings.web_port)
    next_view = started + 2.0
    async with EventProducer(settings) as producer:
        while not stop.is_set() and time.monotonic() - started < seconds:
            if worker.poll() is not None:
                print(f"worker exited with {worker.returncode}; see its log")
                return
            target = int((time.monotonic() - started) * rate)
            while sent < target:
                ev = next(events)
                await producer.send({**ev, "ts": int(time.time() * 1000)})
                per_user[ev["user_id"]] = per_user.get(ev["user_id"], 0) + 1
                sent += 1
                if sent % 997 == 0:
                    bad = MALFORMED[(sent // 997) % len(MALFORMED)]
                    await producer.send_raw(settings.events_topic, b"u1", bad)
            if time.monotonic() >= next_view:
                next_view += 2.0
                await producer.flush()
                stats = (await asyncio.to_thread(scrape, settings.web_port)).totals()
                now_hist = await asyncio.to_thread(scrape_buckets, settings.web_port)
                fresh, hist = histogram_share(hist, now_hist), now_hist
                watched = sorted(per_user, key=lambda u: -per_user[u])[:3]
                await asyncio.to_thread(
                    _show,
                    settings,
                    sim,
                    watched,
                    time.monotonic() - started,
                    sent,
                    stats,
                    prev,
                    fresh,
                )
                prev = stats
            await asyncio.sleep(0.02)
