"""Reading a whole compacted topic on every worker, outside the consumer group.

The catalog and the title snapshots are needed by every worker, not split among
them: a group-less aiokafka consumer is assigned every partition from the
beginning, and ``ready`` is set once it has caught up with the end offsets seen
at start. Subclasses say what one record does; a record they refuse, one the
fetch guard could not decode (:mod:`streams.poison`) or one whose handling
raises is dead-lettered with its coordinates, and the follower moves on.

A fetched batch holds up to 5,000 records and the follower shares the worker's event
loop: after every ``YIELD_AFTER_S`` of handling it yields, so a costly ``on_record``
(catalog tagging, about 0.6 ms a record) delays scoring and the API by at most that
much, not by a whole batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streams import poison
from streams.adapters.kafka_admin import assign_all, earliest_reader
from streams.contract import Rejection, dead_letter
from streams.settings import Settings

# Sends one dead-letter record (key, value); the worker's producer in production.
Reject = Callable[[bytes | None, bytes], Awaitable[None]]
YIELD_AFTER_S = 0.02


class CompactedTopicFollower:
    topic: str

    def __init__(self, settings: Settings, topic: str, reject: Reject | None = None) -> None:
        self.settings = settings
        self.topic = topic
        self.reject = reject
        self.ready = asyncio.Event()

    def on_record(self, record: ConsumerRecord) -> Rejection | None:
        """Fold one record in; returns why it was refused, if it was."""
        raise NotImplementedError

    async def handle(self, record: ConsumerRecord) -> None:
        """One record in; a refused or undecodable one, or one that raises, is dead-lettered."""
        rejection = poison.rejection(record.headers)
        if rejection is None:
            try:
                rejection = self.on_record(record)
            except Exception as exc:  # one bad record must not stop the follower
                rejection = poison.processing_error(exc)
        if rejection is None:
            return
        poison.count(record.topic, record.partition, record.offset, rejection)
        if self.reject is not None:
            dlq = dead_letter(
                record.value,
                rejection,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                now_ms=int(time.time() * 1000),
            )
            await self.reject(record.key, dlq)

    def after_batch(self) -> None:
        """Called after each fetched batch (metrics)."""

    async def run(self) -> None:
        consumer = earliest_reader(self.settings)
        await consumer.start()
        try:
            tps = await assign_all(consumer, self.topic)
            end = await consumer.end_offsets(tps)
            while True:
                if not self.ready.is_set() and await _caught_up(consumer, end):
                    self.ready.set()
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                slice_start = time.monotonic()
                for records in batches.values():
                    for record in records:
                        await self.handle(record)
                        if time.monotonic() - slice_start > YIELD_AFTER_S:
                            await asyncio.sleep(0)  # let scoring and the API run
                            slice_start = time.monotonic()
                self.after_batch()
        finally:
            await consumer.stop()


async def _caught_up(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return False
    return True
