"""``reelstream tail-scores``: an example downstream consumer of the score topic.

Prints one line per score message: the user, the top titles and two freshness
figures: ``fresh`` (event time to scores generated, measured by the worker)
and ``age`` (event time to now, what this consumer sees). Starts at the end
of the topic unless ``--from-beginning``; ``--max`` stops after N messages.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

import orjson
from aiokafka import AIOKafkaConsumer

from streams.adapters.kafka_admin import assign_all
from streams.settings import Settings


def format_message(msg: dict, top: int, now_ms: int) -> str:
    """One line for a score message.

    >>> format_message({"user_id": "u1", "items": [{"title_id": "t1", "score": 0.5}],
    ...                 "event_ts": 1000, "generated_at": 1040}, 3, 1100)
    'u1  fresh 40 ms  age 100 ms  t1(0.500)'
    """
    items = " ".join(f"{i['title_id']}({i['score']:.3f})" for i in msg.get("items", [])[:top])
    ev, gen = msg.get("event_ts") or 0, msg.get("generated_at") or 0
    return f"{msg.get('user_id')}  fresh {gen - ev:,} ms  age {now_ms - ev:,} ms  {items}"


async def tail_scores(
    settings: Settings,
    *,
    from_beginning: bool = False,
    max_messages: int | None = None,
    top: int = 5,
    idle_timeout_s: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print score messages as they arrive; returns how many were printed."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_kwargs(), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    n = 0
    try:
        tps = await assign_all(consumer, settings.scores_topic)
        if not from_beginning:
            await consumer.seek_to_end(*tps)
        idle_since = time.monotonic()
        while max_messages is None or n < max_messages:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                if idle_timeout_s is not None and time.monotonic() - idle_since > idle_timeout_s:
                    break
                continue
            idle_since = time.monotonic()
            now_ms = int(time.time() * 1000)
            for records in batch.values():
                for r in records:
                    if r.value is None:
                        continue
                    try:
                        msg = orjson.loads(r.value)
                    except orjson.JSONDecodeError:
                        print(f"(undecodable record at offset {r.offset})", file=out)
                        continue
                    print(format_message(msg, top, now_ms), file=out, flush=True)
                    n += 1
                    if max_messages is not None and n >= max_messages:
                        return n
    finally:
        await consumer.stop()
    return n


def run(settings: Settings, **kwargs: object) -> int:
    return asyncio.run(tail_scores(settings, **kwargs))  # type: ignore[arg-type]
