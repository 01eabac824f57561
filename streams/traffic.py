"""Sending traffic to Kafka: a JSON-lines log or the synthetic simulation, optionally paced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from streams.producer import EventProducer
from streams.settings import Settings


async def send_events(
    settings: Settings,
    events: Iterable[dict[str, Any]],
    *,
    rate: float | None = None,
    live: bool = False,
    progress: Callable[[int, float], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Send events in order; ``rate`` paces them (events/s), ``live`` stamps ``ts`` = now.

    Live stamping keeps the simulated order but makes event time the wall clock,
    which is what freshness measurements and the demo need.
    """
    started = time.monotonic()
    last_report = started
    n = 0
    async with EventProducer(settings) as producer:
        for ev in events:
            if stop is not None and stop.is_set():
                break
            if live:
                ev = {**ev, "ts": int(time.time() * 1000)}
            await producer.send(ev)
            n += 1
            if rate and n % 100 == 0:
                ahead = n / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if progress is not None and time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                progress(n, n / (last_report - started))
    return n
