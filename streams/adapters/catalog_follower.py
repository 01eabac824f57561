"""Every worker reads the whole compacted ``catalog`` topic: titles are needed on all of them.

``ready`` (see :mod:`streams.adapters.topic_follower`) is set once it has caught up, so
the events agent never scores against an empty catalog.

Tagging on arrival (docs/catalog-intelligence.md): with ``REELSTREAM_TAGGER_FILE``, a
tagger written by ``reelstream tags train`` is loaded (in a thread) before the first
record, and each record's synopsis fills the tag dimensions its editors left empty
(:func:`online_models.tagger.tag_title`), so a title added while the worker runs
carries derived tags in content similarity at once. A tagger that fails on a record,
or a file that cannot be loaded, never stops the follower: the record keeps its
editorial tags, ``reelstream_catalog_tagging_total{outcome="failed"}`` counts it and
the log says why.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from aiokafka import ConsumerRecord

from features.catalog import Catalog, CatalogError, Title, parse_title
from online_models.tagger import MAX_TAGGER_BYTES, SynopsisTagger, tag_title
from streams.adapters.model_files import ModelFileUnusable, read_model_file
from streams.adapters.topic_follower import CompactedTopicFollower, Reject
from streams.contract import Rejection
from streams.metrics import (
    CATALOG_TAGGED,
    CATALOG_TAGGING_SECONDS,
    CATALOG_TITLES,
    EVENTS_REJECTED,
    TAGGER_LOADED,
)
from streams.settings import Settings

log = logging.getLogger("reelstream.catalog")
FAILURES_LOGGED = 20  # the first failures each get a line; then one per thousand


class CatalogFollower(CompactedTopicFollower):
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        reject: Reject | None = None,
        tagger: SynopsisTagger | None = None,
    ) -> None:
        super().__init__(settings, settings.catalog_topic, reject)
        self.catalog = catalog
        self.tagger = tagger
        self.tag_failures = 0

    def load_tagger(self) -> None:
        """The tagger of ``REELSTREAM_TAGGER_FILE``, if set (blocking: run it in a thread).

        An unusable file is logged and leaves tagging off; it does not stop the worker.
        """
        path = self.settings.tagger_file
        if not path:
            return
        try:
            self.tagger = SynopsisTagger.from_bytes(read_model_file(path, MAX_TAGGER_BYTES))
        except (ModelFileUnusable, ValueError) as exc:
            TAGGER_LOADED.set(0)
            log.error("REELSTREAM_TAGGER_FILE unusable, catalog records are not tagged: %s", exc)
            return
        TAGGER_LOADED.set(1)
        log.info("synopsis tagger loaded: dimensions %s", ", ".join(self.tagger.heads))

    async def run(self) -> None:
        if self.tagger is None:
            await asyncio.to_thread(self.load_tagger)
        await super().run()

    def tag(self, title: Title) -> Title:
        """Derived tags for ``title``; on any failure, the title as it came."""
        if self.tagger is None:
            return title
        started = time.perf_counter()
        try:
            tagged, outcome = tag_title(title, self.tagger)
        except Exception as exc:  # a tagger failure must not cost the record or the follower
            CATALOG_TAGGED.labels(outcome="failed").inc()
            self.tag_failures += 1
            if self.tag_failures <= FAILURES_LOGGED or self.tag_failures % 1000 == 0:
                log.warning(
                    "tagging %s failed (%d so far), kept its editorial tags: %s: %s",
                    title.title_id,
                    self.tag_failures,
                    type(exc).__name__,
                    str(exc)[:200],
                )
            return title
        if outcome in ("tagged", "unsure"):
            CATALOG_TAGGING_SECONDS.observe(time.perf_counter() - started)
        CATALOG_TAGGED.labels(outcome=outcome).inc()
        return tagged

    def apply(self, key: bytes | None, value: bytes | None) -> Rejection | None:
        """Fold one record in; returns why it was refused, if it was."""
        if value is None:  # tombstone: the title left the catalog
            if key:
                self.catalog.remove(key.decode("utf-8", "replace"))
            return None
        try:
            title = parse_title(orjson.loads(value))
        except orjson.JSONDecodeError as exc:
            return Rejection("invalid_json", str(exc)[:200])
        except CatalogError as exc:
            return Rejection("bad_title", str(exc)[:200])
        self.catalog.upsert(self.tag(title))
        return None

    def on_record(self, record: ConsumerRecord) -> Rejection | None:
        rejection = self.apply(record.key, record.value)
        if rejection is not None:
            EVENTS_REJECTED.labels(reason=f"catalog_{rejection.reason}").inc()
        return rejection

    def after_batch(self) -> None:
        CATALOG_TITLES.set(len(self.catalog))
