"""Sending traffic to Kafka: a JSON-lines log or the synthetic simulation, optionally paced.

Producers may batch a session's events into one envelope record
``{"v": 1, "events": [...]}`` (contract v1): the worker then pays Kafka's and
Faust's per-record cost once per envelope instead of once per event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from streams.adapters.producer import EventProducer
from streams.contract import MAX_EVENTS_PER_ENVELOPE
from streams.settings import Settings

Event = dict[str, Any]


def envelopes(events: Iterable[Event], max_events: int) -> Iterator[list[Event]]:
    """Group a stream into lists of one user's consecutive events of one session.

    A user's list is emitted when it holds ``max_events`` events, when that
    user's next event belongs to another session, and at the end of the
    stream. Each user's events keep their order (the lists go to one key, so one
    partition); different users' lists may come out in a different order than
    their events went in.

    >>> evs = [{"user_id": u, "session_id": s, "event_id": i}
    ...        for i, (u, s) in enumerate(["a1", "b1", "a1", "a2", "b1", "b1"])]
    >>> [[e["event_id"] for e in env] for env in envelopes(evs, 2)]
    [[0, 2], [1, 4], [3], [5]]
    """
    if not 1 <= max_events <= MAX_EVENTS_PER_ENVELOPE:
        raise ValueError(f"max_events must be in 1..{MAX_EVENTS_PER_ENVELOPE}")
    open_: dict[str, list[Event]] = {}
    for ev in events:
        uid = ev["user_id"]
        buf = open_.get(uid)
        if buf is not None and buf[0].get("session_id") != ev.get("session_id"):
            yield open_.pop(uid)
            buf = None
        if buf is None:
            buf = open_[uid] = []
        buf.append(ev)
        if len(buf) >= max_events:
            yield open_.pop(uid)
    yield from open_.values()


async def send_events(
    settings: Settings,
    events: Iterable[Event],
    *,
    rate: float | None = None,
    live: bool = False,
    envelope: int = 0,
    progress: Callable[[int, float], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Send events in order; ``rate`` paces them (events/s), ``live`` stamps ``ts`` = now.

    Live stamping keeps the simulated order but makes event time the wall clock,
    which is what freshness measurements and the demo need. ``envelope`` > 1
    sends up to that many events of one user's session per record (see
    :func:`envelopes`); the count returned is of events either way.
    """
    started = time.monotonic()
    last_report = started
    n = 0
    groups: Iterable[list[Event]] = (
        envelopes(events, envelope) if envelope > 1 else ([ev] for ev in events)
    )
    async with EventProducer(settings) as producer:
        for group in groups:
            if stop is not None and stop.is_set():
                break
            if live:
                now_ms = int(time.time() * 1000)
                group = [{**ev, "ts": now_ms} for ev in group]
            if len(group) == 1:
                await producer.send(group[0])
            else:
                await producer.send_envelope(group)
            before, n = n, n + len(group)
            if rate and n // 100 != before // 100:
                ahead = n / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if progress is not None and time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                progress(n, n / (last_report - started))
    return n
