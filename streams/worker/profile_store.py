"""User profiles in a Faust table, behind a write-back cache.

The agent processes records in batches; a profile touched several times in a
batch is decoded once and written (RocksDB + changelog) once, at the end of the
batch, to the partition of the record that last touched it. Events are keyed by
user, so that is the user's partition and the changelog stays co-partitioned.

Each row also records ``_src``, the source offset of the record that last wrote it,
so a replay after a crash can tell a profile that is already past a replayed record
(see ``online_models/durable.py``, ``ReplayGuard``).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from features.user_profile import UserProfile
from streams.adapters.kafka_internals import bind_event

CACHE_MAX = 200_000


class TableProfileStore(MutableMapping[str, UserProfile]):
    def __init__(self, table: Any) -> None:
        self.table = table
        self.cache: dict[str, UserProfile] = {}
        self.dirty: dict[str, Any] = {}  # user_id -> the Faust event that last touched it
        self.current_event: Any = None
        self.src: dict[str, int] = {}  # user_id -> offset of the record that last wrote the row

    def bind(self, event: Any) -> None:
        """Make ``event`` current: reads and writes go to its partition's store."""
        self.current_event = event
        bind_event(event)

    def __getitem__(self, user_id: str) -> UserProfile:
        p = self.cache.get(user_id)
        if p is None:
            raw = self.table.get(user_id)
            if raw is None:
                raise KeyError(user_id)
            p = self.cache[user_id] = UserProfile.from_dict(raw)
            src = raw.get("_src") if isinstance(raw, dict) else None
            if isinstance(src, int):
                self.src[user_id] = src
        return p

    def stored_src(self, user_id: str) -> int | None:
        """Offset of the source record that last wrote the user's row (None if unknown)."""
        if user_id not in self.cache and self.get(user_id) is None:
            return None
        return self.src.get(user_id)

    def written_after(self, user_id: str, offset: int) -> bool:
        """Whether the user's row already folds a record of a later ``offset`` (the consumer
        handed this one over late: a handover or a restart replays a range out of order)."""
        src = self.stored_src(user_id)
        return src is not None and src > offset

    def replace(self, user_id: str, profile: UserProfile) -> None:
        """Put a profile back (a rewind after a restore); the row is rewritten at flush."""
        self[user_id] = profile
        self.src[user_id] = -1

    def __setitem__(self, user_id: str, profile: UserProfile) -> None:
        self.cache[user_id] = profile
        self.dirty[user_id] = self.current_event

    def __delitem__(self, user_id: str) -> None:
        self.cache.pop(user_id, None)
        del self.table[user_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.keys())

    def __len__(self) -> int:
        return len(self.cache)

    def flush(self) -> int:
        """Persist every profile changed since the last flush; returns how many."""
        n = len(self.dirty)
        for user_id, event in self.dirty.items():
            bind_event(event)
            row = self.cache[user_id].to_dict()
            if event is not None:
                row["_src"] = self.src[user_id] = event.message.offset
            self.table[user_id] = row
        self.dirty.clear()
        if len(self.cache) > CACHE_MAX:
            self.cache.clear()
            self.src.clear()
        return n

    def forget(self) -> None:
        """Drop cached profiles (after a rebalance the partitions may belong to others)."""
        self.cache.clear()
        self.dirty.clear()
        self.src.clear()
