"""``reelstream demo``: the whole loop on the local stack, with a live view.

Starts the stack, publishes the synthetic catalog, starts a worker process,
sends live synthetic traffic (with a few malformed records), and every two
seconds prints the event rate, the dead-letter count and a few users' top-10.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from streams.adapters.redis_keys import recs_key
from streams.adapters.scrape import scrape
from streams.settings import Settings, stack_dir
from streams.tools import stack
from streams.tools.synthetic import SimConfig, Simulation

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


def run_demo(*, seconds: float, rate: float, users: int, titles: int, seed: int) -> int:
    settings = Settings.from_env()
    stack.up(settings)
    sim = Simulation(SimConfig(users=users, titles=titles, seed=seed))
    demo_dir = stack_dir() / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_publish_catalog(settings, sim))
    print(f"published {len(sim.catalog)} titles to '{settings.catalog_topic}'")
    worker = start_worker(settings, demo_dir / "worker-data", demo_dir / "worker.log")
    print(f"worker started (pid {worker.pid}), log: {demo_dir / 'worker.log'}")
    try:
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
                watched = sorted(per_user, key=lambda u: -per_user[u])[:3]
                await asyncio.to_thread(
                    _show, settings, sim, watched, time.monotonic() - started, sent, stats, prev
                )
                prev = stats
            await asyncio.sleep(0.02)
