"""Every worker follows the compacted title-snapshot topic into its :class:`GlobalTitleView`.

A (re)started worker rebuilds the global view from the latest snapshot of each
title, then keeps following (:mod:`streams.topic_follower`).
"""

from __future__ import annotations

import logging

import orjson
from aiokafka import ConsumerRecord

from features.title_view import GlobalTitleView
from streams.metrics import TITLE_VIEW_TITLES
from streams.settings import Settings
from streams.topic_follower import CompactedTopicFollower

log = logging.getLogger(__name__)


class TitleViewFollower(CompactedTopicFollower):
    def __init__(self, settings: Settings, view: GlobalTitleView) -> None:
        super().__init__(settings, settings.title_snapshots_topic)
        self.view = view

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if not key:
            return
        try:
            self.view.apply(key.decode(), orjson.loads(value) if value else None)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            log.warning("unreadable title snapshot for %r", key[:64])

    async def on_record(self, record: ConsumerRecord) -> None:
        self.apply(record.key, record.value)

    def after_batch(self) -> None:
        TITLE_VIEW_TITLES.set(len(self.view.snapshots))
