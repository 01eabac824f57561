"""Every worker reads the whole compacted ``catalog`` topic: titles are needed on all of them.

A plain aiokafka consumer outside the consumer group, assigned every partition
from the beginning; ``ready`` is set once it has caught up with the end offsets
seen at start, so the events agent never scores against an empty catalog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from features.catalog import Catalog, CatalogError, parse_title
from streams.contract import Rejection, dead_letter
from streams.kafka_admin import assign_all
from streams.metrics import CATALOG_TITLES, EVENTS_REJECTED
from streams.settings import Settings

log = logging.getLogger(__name__)


class CatalogFollower:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        reject: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.reject = reject
        self.ready = asyncio.Event()

    def apply(
        self, key: bytes | None, value: bytes | None, *, partition: int, offset: int
    ) -> bytes | None:
        """Fold one record in; returns a dead-letter record when it is refused."""
        if value is None:  # tombstone: the title left the catalog
            if key:
                self.catalog.remove(key.decode("utf-8", "replace"))
            return None
        try:
            self.catalog.upsert(parse_title(orjson.loads(value)))
            return None
        except (orjson.JSONDecodeError, CatalogError) as exc:
            reason = "invalid_json" if isinstance(exc, orjson.JSONDecodeError) else "bad_title"
            EVENTS_REJECTED.labels(reason=f"catalog_{reason}").inc()
            return dead_letter(
                value,
                Rejection(reason, str(exc)[:200]),
                topic=self.settings.catalog_topic,
                partition=partition,
                offset=offset,
                now_ms=int(time.time() * 1000),
            )

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_kwargs(),
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            tps = await assign_all(consumer, self.settings.catalog_topic)
            end = await consumer.end_offsets(tps)
            if all(end[tp] == 0 for tp in tps):
                self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    for r in records:
                        dlq = self.apply(r.key, r.value, partition=tp.partition, offset=r.offset)
                        if dlq is not None and self.reject is not None:
                            await self.reject(dlq)
                CATALOG_TITLES.set(len(self.catalog))
                if not self.ready.is_set() and await _caught_up(consumer, end):
                    log.info("catalog loaded: %d titles", len(self.catalog))
                    self.ready.set()
        finally:
            await consumer.stop()


async def _caught_up(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return False
    return True
