"""Reading a whole compacted topic on every worker, outside the consumer group.

The catalog and the title snapshots are needed by every worker, not split among
them: a group-less aiokafka consumer is assigned every partition from the
beginning, and ``ready`` is set once it has caught up with the end offsets seen
at start. Subclasses say what one record does.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streams.kafka_admin import assign_all
from streams.settings import Settings


class CompactedTopicFollower:
    topic: str

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.ready = asyncio.Event()

    async def on_record(self, record: ConsumerRecord) -> None:
        raise NotImplementedError

    def after_batch(self) -> None:
        """Called after each fetched batch (metrics)."""

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_kwargs(),
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            tps = await assign_all(consumer, self.topic)
            end = await consumer.end_offsets(tps)
            while True:
                if not self.ready.is_set() and await _caught_up(consumer, end):
                    self.ready.set()
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batches.values():
                    for record in records:
                        await self.on_record(record)
                self.after_batch()
        finally:
            await consumer.stop()


async def _caught_up(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return False
    return True
