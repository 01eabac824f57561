"""Title statistics in the ``title-stats`` Faust table, behind a write-back cache.

The title agent consumes the title-keyed repartition topic, so every title has
exactly one owner at a time and this cache holds only titles of the owner's
partitions (it is dropped on every rebalance). Like the profile store, a title
touched many times in a batch is decoded once and written (RocksDB + changelog)
once, to the partition of the record that last touched it. ``changed`` collects
the titles written since the last snapshot, for the publisher.
"""

from __future__ import annotations

from typing import Any

from features.title_stats import TitleStats
from streams.adapters.kafka_internals import bind_event


class TableTitleStore:
    def __init__(self, table: Any) -> None:
        self.table = table
        self.cache: dict[str, TitleStats] = {}
        self.dirty: dict[str, Any] = {}  # title_id -> the Faust event that last touched it
        self.changed: set[str] = set()
        self.republish_all = False  # set after a rebalance: publish every owned title once

    @staticmethod
    def bind(event: Any) -> None:
        bind_event(event)

    def get(self, title_id: str, event: Any) -> TitleStats:
        """The title's stats (new if unseen), marked dirty under ``event``'s partition."""
        s = self.cache.get(title_id)
        if s is None:
            raw = self.table.get(title_id)
            s = self.cache[title_id] = TitleStats.from_dict(raw)
        self.dirty[title_id] = event
        return s

    def flush(self) -> int:
        n = len(self.dirty)
        for title_id, event in self.dirty.items():
            bind_event(event)
            self.table[title_id] = self.cache[title_id].to_dict()
        self.changed.update(self.dirty)
        self.dirty.clear()
        return n

    def take_changed(self, limit: int | None = None) -> list[tuple[str, TitleStats]]:
        """Up to ``limit`` (all by default) changed titles with their stats; the rest stay."""
        out = []
        take = self.changed
        if limit is not None and limit < len(self.changed):
            take = {self.changed.pop() for _ in range(limit)}
        for t in take:
            s = self.cache.get(t)
            if s is None:
                raw = self.table.get(t)
                if raw is None:
                    continue
                s = self.cache[t] = TitleStats.from_dict(raw)
            out.append((t, s))
        if take is self.changed:
            self.changed.clear()
        return out

    def forget(self) -> None:
        self.cache.clear()
        self.dirty.clear()
        self.changed.clear()
