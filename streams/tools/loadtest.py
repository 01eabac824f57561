"""``reelstream loadtest``: a bounded local load test of ``GET /recommendations``.

``--concurrency`` clients (default 200) each send requests back to back for
``--seconds`` (default 30, at most 600) against a worker on loopback, for users
that have scores in Redis (``--cold-share`` of them unknown, to exercise the
cold-start path). Prints requests/s, p50/p90/p99/max latency and status counts.
The client shares the machine with the worker, so the figures are a floor.

With ``--rate R`` the clients offer R requests/s in all, on a fixed schedule (open
loop), and each latency counts from the request's scheduled time, so time a request
spent waiting behind a stalled server is not left out (coordinated omission);
otherwise each client sends its next request as soon as the last one answered.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

from streams.settings import Settings

MAX_SECONDS = 600.0
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class LoadReport:
    seconds: float
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile of the latencies, in seconds."""
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, max(0, round(q * len(xs)) - 1))]

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def __str__(self) -> str:
        ms = {q: self.quantile(q) * 1000 for q in (0.5, 0.9, 0.99, 1.0)}
        codes = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.statuses.items()))
        return (
            f"{self.requests:,} requests in {self.seconds:.1f} s with {self.concurrency} clients: "
            f"{self.requests / self.seconds:,.0f} req/s; latency p50 {ms[0.5]:.1f} ms, "
            f"p90 {ms[0.9]:.1f} ms, p99 {ms[0.99]:.1f} ms, max {ms[1.0]:.1f} ms; "
            f"status {codes or '-'}; connection errors {self.errors:,}"
        )


def users_with_scores(settings: Settings, limit: int = 2000) -> list[str]:
    import redis

    r = redis.Redis.from_url(settings.redis_url)
    out = []
    for key in r.scan_iter(f"{settings.key_prefix}:recs:*", count=1000):
        k = key.decode()
        out.append(k[k.index("{") + 1 : -1])
        if len(out) >= limit:
            break
    return out


async def run_load(
    base_url: str,
    users: list[str],
    *,
    concurrency: int = 200,
    seconds: float = 30.0,
    k: int = 10,
    cold_share: float = 0.1,
    seed: int = 7,
    rate: float | None = None,
) -> LoadReport:
    host = urlsplit(base_url).hostname or ""
    if host not in LOOPBACK:
        raise ValueError(f"the load test only targets loopback, not {host!r}")
    seconds = min(seconds, MAX_SECONDS)
    rng = random.Random(seed)
    users = users or [f"u{i:06d}" for i in range(1, 1001)]
    report = LoadReport(seconds=seconds, concurrency=concurrency)
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=10)
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, connector=conn, timeout=timeout) as session:
        t0 = time.perf_counter()

        async def client(i: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                if rng.random() < cold_share:
                    uid = f"cold-{rng.randrange(10**9)}"
                else:
                    uid = rng.choice(users)
                started = time.perf_counter()
                if rate:
                    # Client i's n-th request is due at t0 + (i + n * concurrency) / rate.
                    started = t0 + (i + n * concurrency) / rate
                    n += 1
                    if started > t0 + seconds:
                        break
                    if started > time.perf_counter():
                        await asyncio.sleep(started - time.perf_counter())
                try:
                    async with session.get(f"/recommendations/{uid}", params={"k": k}) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError):
                    report.errors += 1
                    continue
                report.latencies.append(time.perf_counter() - started)
                report.statuses[status] = report.statuses.get(status, 0) + 1

        started = time.monotonic()
        await asyncio.gather(*(client(i) for i in range(concurrency)))
        report.seconds = time.monotonic() - started
    return report


def run(
    settings: Settings,
    url: str | None,
    concurrency: int,
    seconds: float,
    cold_share: float,
    rate: float | None = None,
) -> LoadReport:
    users = users_with_scores(settings)
    base = url or f"http://127.0.0.1:{settings.web_port}"
    return asyncio.run(
        run_load(
            base,
            users,
            concurrency=concurrency,
            seconds=seconds,
            cold_share=cold_share,
            rate=rate,
        )
    )
