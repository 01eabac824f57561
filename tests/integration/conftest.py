"""Integration fixtures: the real local Kafka and Redis (``make stack-up``), isolated per run.

Each test module gets its own topic names, consumer group, Redis key prefix and
worker data directory, so runs never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer

from streams.adapters.kafka_admin import assign_all, delete_topics_async, ensure_topics_async
from streams.adapters.scrape import scrape
from streams.settings import Settings

# Its helpers assert for several test modules: pytest shows their values as in a test.
pytest.register_assert_rewrite("tests.integration.feature_truth")

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for(
    predicate: Callable[[], object], what: str, timeout: float = 120.0, interval: float = 0.2
) -> object:
    """Poll a condition until it holds; fail with ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def seconds_until(
    predicate: Callable[[], object], since: float, timeout: float = 120.0, interval: float = 0.1
) -> float | None:
    """Seconds from ``since`` (a ``time.monotonic()``) until a condition first holds; None
    if it does not within ``timeout``. A measurement to run beside a test's own waits (a
    recovery time to print), never an assertion's timer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
        except OSError:
            value = False  # a process still starting: not yet
        if value:
            return round(time.monotonic() - since, 2)
        await asyncio.sleep(interval)
    return None


def api_get(port: int, path: str) -> tuple[int, dict]:
    """GET a worker's JSON route: (status, body); (0, {}) while it does not listen yet."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
    except urllib.error.URLError:
        return 0, {}


def _stack_answers(settings: Settings) -> None:
    host, port = settings.broker.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        redis.Redis.from_url(settings.redis_url).ping()
    except (OSError, redis.RedisError) as exc:
        pytest.fail(f"the local stack does not answer ({exc}); run `make stack-up` first")


@pytest.fixture(scope="module")
def run_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    run = uuid.uuid4().hex[:8]
    settings = Settings.from_env().isolated(
        f"it-{run}",
        partitions=4,
        data_dir=str(tmp_path_factory.mktemp(f"worker-{run}")),
        web_port=free_port(),
    )
    _stack_answers(settings)
    asyncio.run(ensure_topics_async(settings))
    yield settings
    r = redis.Redis.from_url(settings.redis_url)
    keys = list(r.scan_iter(f"{settings.key_prefix}:*", count=1000))
    if keys:
        r.delete(*keys)
    # Faust's changelog, repartition and assignor topics too: a broker that keeps
    # thousands of leftover partitions starts slowly and lags on new topics.
    asyncio.run(delete_run_topics(settings))


async def delete_run_topics(settings: Settings) -> None:
    """Every topic of this run: ours, and Faust's changelog and repartition topics."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(settings.app_id)]
    finally:
        await admin.close()
    await delete_topics_async(settings, names)


def settings_env(settings: Settings) -> dict[str, str]:
    keys = [
        "app_id",
        "events_topic",
        "catalog_topic",
        "scores_topic",
        "dlq_topic",
        "key_prefix",
        "partitions",
        "data_dir",
        "web_port",
        "broker",
        "redis_url",
    ]
    return {f"REELSTREAM_{k.upper()}": str(getattr(settings, k)) for k in keys}


class WorkerProcess:
    """A ``reelstream worker`` subprocess with its own log file; with ``command="api"``, a
    ``reelstream api`` one (its port: ``REELSTREAM_API_PORT``)."""

    def __init__(
        self, settings: Settings, log_path: Path, command: str = "worker", **overrides: str
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        env = {**os.environ, **settings_env(settings), **overrides}
        self.port = int(env["REELSTREAM_API_PORT" if command == "api" else "REELSTREAM_WEB_PORT"])
        self.log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", command],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def metrics(self) -> dict[str, float]:
        if self.proc.poll() is not None:
            raise AssertionError(f"process exited with {self.proc.returncode}:\n{self.tail()}")
        return scrape(self.port).totals()

    def tail(self, n: int = 40) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def seek_and_gap_lines(paths: Iterable[Path]) -> list[str]:
    """The workers' seek, gap, drop and clear lines (INFO): what a loss's report quotes, as
    "<log> <time>: <message>", a seek's changelog and assignor partitions left out."""
    keys = (
        "skipped in delivery",
        "seeked to",
        "was next",
        "commits of",
        "cleared from",
        "read again from",
        "the agent took offset",
    )
    out = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            if not any(k in line for k in keys):
                continue
            try:
                doc = orjson.loads(line)
                msg, ts = str(doc["msg"]), float(doc["ts"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                out.append(f"{path.name}: {line[:300]}")
                continue
            if "seeked to" in msg:
                kept = re.findall(r"'[^']*-(?:title-)?events-\d+': (?:\d+|None)", msg)
                msg = "seeked to " + ", ".join(kept)
            out.append(f"{path.name} {ts:.2f}: {msg[:400]}")
    return out


@pytest.fixture(scope="module")
def start_api(
    run_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., WorkerProcess]]:
    """``reelstream api`` processes on free ports, stopped after the module."""
    started: list[WorkerProcess] = []
    logs = tmp_path_factory.mktemp("api-logs")

    def start(**overrides: str) -> WorkerProcess:
        overrides.setdefault("REELSTREAM_API_PORT", str(free_port()))
        p = WorkerProcess(run_settings, logs / f"api-{len(started)}.log", "api", **overrides)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture(scope="module")
def start_worker(
    run_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []
    logs = tmp_path_factory.mktemp("logs")

    def start(**overrides: str) -> WorkerProcess:
        w = WorkerProcess(run_settings, logs / f"worker-{len(started)}.log", **overrides)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


async def read_topic(
    settings: Settings, topic: str, expected: int | None = None, timeout: float = 60.0
) -> list:
    """Every record of a topic, from the beginning; waits until ``expected`` are there."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = await assign_all(consumer, topic)
        records: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            end = await consumer.end_offsets(tps)
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
            positions = [await consumer.position(tp) for tp in tps]
            caught_up = all(pos >= end[tp] for pos, tp in zip(positions, tps, strict=True))
            if caught_up and (expected is None or len(records) >= expected):
                break
        return records
    finally:
        await consumer.stop()


def decode_values(records: list) -> list[dict]:
    return [orjson.loads(r.value) for r in records]


@pytest.fixture
async def anyio_backend() -> AsyncIterator[str]:
    yield "asyncio"


async def send_paced(
    producer: Any, events: list[dict], sent: list[int], per_s: float = 500.0
) -> None:
    """Send at ``per_s`` so faults and group changes happen while events still arrive."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i, ev in enumerate(events, 1):
        await producer.send(ev)
        sent[0] += 1
        if i % 50 == 0:
            await producer.flush()
            ahead = i / per_s - (loop.time() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)  # pacing the load, not waiting for a result
    await producer.flush()


async def readyz(port: int, timeout_s: float = 8.0) -> tuple[int, dict]:
    """(status, body) of a worker's /readyz; (0, {}) when it does not answer."""
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"http://127.0.0.1:{port}/readyz", timeout=aiohttp.ClientTimeout(timeout_s)
            ) as r,
        ):
            return r.status, await r.json()
    except (aiohttp.ClientError, TimeoutError):
        return 0, {}
