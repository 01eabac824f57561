"""Every worker follows the compacted title-snapshot topic into its :class:`GlobalTitleView`.

Same shape as the catalog follower: a group-less aiokafka consumer assigned every
partition from the beginning, so a (re)started worker rebuilds the global view
from the latest snapshot of each title, then keeps following.
"""

from __future__ import annotations

import logging

import orjson
from aiokafka import AIOKafkaConsumer

from features.title_view import GlobalTitleView
from streams.kafka_admin import assign_all
from streams.metrics import TITLE_VIEW_TITLES
from streams.settings import Settings

log = logging.getLogger(__name__)


class TitleViewFollower:
    def __init__(self, settings: Settings, view: GlobalTitleView) -> None:
        self.settings = settings
        self.view = view

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if not key:
            return
        try:
            self.view.apply(key.decode(), orjson.loads(value) if value else None)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            log.warning("unreadable title snapshot for %r", key[:64])

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_kwargs(),
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            await assign_all(consumer, self.settings.title_snapshots_topic)
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batches.values():
                    for r in records:
                        self.apply(r.key, r.value)
                TITLE_VIEW_TITLES.set(len(self.view.snapshots))
        finally:
            await consumer.stop()
