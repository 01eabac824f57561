"""Every worker reads the whole compacted ``catalog`` topic: titles are needed on all of them.

``ready`` (see :mod:`streams.adapters.topic_follower`) is set once it has caught up, so
the events agent never scores against an empty catalog.
"""

from __future__ import annotations

import orjson
from aiokafka import ConsumerRecord

from features.catalog import Catalog, CatalogError, parse_title
from streams.adapters.topic_follower import CompactedTopicFollower, Reject
from streams.contract import Rejection
from streams.metrics import CATALOG_TITLES, EVENTS_REJECTED
from streams.settings import Settings


class CatalogFollower(CompactedTopicFollower):
    def __init__(self, settings: Settings, catalog: Catalog, reject: Reject | None = None) -> None:
        super().__init__(settings, settings.catalog_topic, reject)
        self.catalog = catalog

    def apply(self, key: bytes | None, value: bytes | None) -> Rejection | None:
        """Fold one record in; returns why it was refused, if it was."""
        if value is None:  # tombstone: the title left the catalog
            if key:
                self.catalog.remove(key.decode("utf-8", "replace"))
            return None
        try:
            self.catalog.upsert(parse_title(orjson.loads(value)))
            return None
        except orjson.JSONDecodeError as exc:
            return Rejection("invalid_json", str(exc)[:200])
        except CatalogError as exc:
            return Rejection("bad_title", str(exc)[:200])

    def on_record(self, record: ConsumerRecord) -> Rejection | None:
        rejection = self.apply(record.key, record.value)
        if rejection is not None:
            EVENTS_REJECTED.labels(reason=f"catalog_{rejection.reason}").inc()
        return rejection

    def after_batch(self) -> None:
        CATALOG_TITLES.set(len(self.catalog))
