"""Every worker follows the compacted title-snapshot topic into its :class:`GlobalTitleView`.

A (re)started worker rebuilds the global view from the latest snapshot of each
title, then keeps following (:mod:`streams.adapters.topic_follower`).
"""

from __future__ import annotations

import orjson
from aiokafka import ConsumerRecord

from features.title_view import GlobalTitleView
from streams.adapters.topic_follower import CompactedTopicFollower, Reject
from streams.contract import Rejection
from streams.metrics import TITLE_VIEW_TITLES
from streams.settings import Settings


class TitleViewFollower(CompactedTopicFollower):
    def __init__(
        self, settings: Settings, view: GlobalTitleView, reject: Reject | None = None
    ) -> None:
        super().__init__(settings, settings.title_snapshots_topic, reject)
        self.view = view

    def apply(self, key: bytes | None, value: bytes | None) -> Rejection | None:
        if not key:
            return Rejection("missing_key", "a title snapshot needs its title id as key")
        try:
            self.view.apply(key.decode(), orjson.loads(value) if value else None)
        except (orjson.JSONDecodeError, TypeError, ValueError, KeyError) as exc:
            return Rejection("bad_title_snapshot", f"{type(exc).__name__}: {exc}"[:200])
        return None

    def on_record(self, record: ConsumerRecord) -> Rejection | None:
        return self.apply(record.key, record.value)

    def after_batch(self) -> None:
        TITLE_VIEW_TITLES.set(len(self.view.snapshots))
