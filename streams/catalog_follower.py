"""Every worker reads the whole compacted ``catalog`` topic: titles are needed on all of them.

``ready`` (see :mod:`streams.topic_follower`) is set once it has caught up, so
the events agent never scores against an empty catalog.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import orjson
from aiokafka import ConsumerRecord

from features.catalog import Catalog, CatalogError, parse_title
from streams.contract import Rejection, dead_letter
from streams.metrics import CATALOG_TITLES, EVENTS_REJECTED
from streams.settings import Settings
from streams.topic_follower import CompactedTopicFollower


class CatalogFollower(CompactedTopicFollower):
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        reject: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(settings, settings.catalog_topic)
        self.catalog = catalog
        self.reject = reject

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

    async def on_record(self, record: ConsumerRecord) -> None:
        dlq = self.apply(record.key, record.value, partition=record.partition, offset=record.offset)
        if dlq is not None and self.reject is not None:
            await self.reject(dlq)

    def after_batch(self) -> None:
        CATALOG_TITLES.set(len(self.catalog))
