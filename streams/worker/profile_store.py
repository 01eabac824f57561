"""User profiles in a Faust table, behind a write-back cache.

The agent processes records in batches; a profile touched several times in a
batch is decoded once and written (RocksDB + changelog) once, at the end of the
batch, to the partition of the record that last touched it. Events are keyed by
user, so that is the user's partition and the changelog stays co-partitioned.

Each row also records ``_src``, the source offset of the record that last wrote it,
so a replay after a crash can tell a profile that is already past a replayed record,
and ``_base``/``_base_gen``: the whole record as it was when the worker's checkpoint
round ``_base_gen`` was written, kept from the row's first change after that round.
A restore from that round puts the row back to it (:meth:`rewind`) and replays the
events since, so the record and the shared models learn them together, once each
(docs/models.md, "Durability"). The pre-image lives in the row itself: the row and the
state it rewinds to are one changelog record and cannot disagree.

A round is taken at one instant between batches and written to Kafka while the next
batches run, so a worker can die (or the write fail) after rows moved on to the new
round. A row first changed in that window also keeps ``_prior``/``_prior_gen``: its
state as of the last round that *was* written, the one a restore then falls back to.

The cache is a least-recently-used map of at most ``cache_max`` decoded records
(``REELSTREAM_USER_CACHE``): after each flush the records used longest ago are
dropped, with their ``_src`` and pre-image, which the row carries and the next read
loads again. Only clean records are dropped (a flush leaves none dirty), so an
eviction never loses a write. :meth:`expire` deletes a row (a tombstone in the
changelog) for the inactivity sweep (streams/worker/expiry.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson

from features.user_profile import UserProfile
from streams.adapters.kafka_internals import bind_event

DEFAULT_CACHE_MAX = 20_000


def _frozen(row: dict[str, Any]) -> str:
    """A record kept as JSON text: a snapshot (to_dict shares the live containers) that
    costs its size in memory, not a tree of Python objects."""
    return orjson.dumps(row).decode()


def _thawed(kept: str | dict[str, Any]) -> UserProfile:
    """A profile of its own from a kept record (from_dict keeps what it is given)."""
    return UserProfile.from_dict(
        orjson.loads(kept if isinstance(kept, str) else orjson.dumps(kept))
    )


class TableProfileStore(MutableMapping[str, UserProfile]):
    def __init__(self, table: Any, cache_max: int = DEFAULT_CACHE_MAX) -> None:
        self.table = table
        self.cache_max = cache_max
        self.cache: OrderedDict[str, UserProfile] = OrderedDict()  # least recently used first
        self.evicted = 0
        self.dirty: dict[str, Any] = {}  # user_id -> the Faust event that last touched it
        self.current_event: Any = None
        self.src: dict[str, int] = {}  # user_id -> offset of the record that last wrote the row
        # The worker's last checkpoint round (0: none yet) and each row's pre-image.
        self.gen = 0
        self.base: dict[str, tuple[int, str | None]] = {}  # user -> (round, JSON record)
        # The last round known to be on Kafka; below ``gen`` while ``gen`` is being written.
        self.landed = 0
        self.prior: dict[str, tuple[int, str | None]] = {}  # user -> (landed, JSON record)
        self.rewinds_refused = 0

    def bind(self, event: Any) -> None:
        """Make ``event`` current: reads and writes go to its partition's store."""
        self.current_event = event
        bind_event(event)

    def __getitem__(self, user_id: str) -> UserProfile:
        p = self.cache.get(user_id)
        if p is not None:
            self.cache.move_to_end(user_id)
        else:
            raw = self.table.get(user_id)
            if raw is None:
                raise KeyError(user_id)
            p = self.cache[user_id] = UserProfile.from_dict(raw)
            src = raw.get("_src") if isinstance(raw, dict) else None
            if isinstance(src, int):
                self.src[user_id] = src
            gen = raw.get("_base_gen") if isinstance(raw, dict) else None
            if isinstance(gen, int):
                self.base[user_id] = (gen, raw.get("_base"))
            prior = raw.get("_prior_gen") if isinstance(raw, dict) else None
            if isinstance(prior, int) and prior == self.landed:  # else superseded since
                self.prior[user_id] = (prior, raw.get("_prior"))
        return p

    @property
    def in_flight(self) -> bool:
        """A round is taken (rows keep their state as of it) but not yet on Kafka."""
        return 0 < self.landed < self.gen

    def round_taken(self, gen: int) -> None:
        """Rows changed from now on keep their state as of round ``gen``."""
        self.gen = gen

    def round_landed(self, gen: int) -> None:
        """Round ``gen`` is on Kafka: the state as of the round before is no longer needed."""
        self.landed = max(self.landed, gen)
        if not self.in_flight:
            self.prior.clear()

    def restored(self, gen: int) -> None:
        """A restore adopted round ``gen``: the rows rewind to it."""
        self.gen = self.landed = gen
        self.prior.clear()

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

    def capture(self, user_id: str) -> None:
        """Before an event changes the row: keep its state as of the last checkpoint
        round, if this is the row's first change since that round."""
        if self.gen == 0:
            return  # no round to rewind to: whatever pre-image the row has stays
        p = self.get(user_id)  # first: reading the row loads the pre-image it holds
        held = self.base.get(user_id)
        if held is not None and held[0] == self.gen:
            return
        # A copy: to_dict shares the live containers, which the event is about to change.
        now = _frozen(p.to_dict()) if p is not None else None
        if self.in_flight:
            # The row's state as of the landed round: its pre-image of that round, else
            # (unchanged since that round, or new) what it is now.
            self.prior[user_id] = (
                held if held is not None and held[0] == self.landed else (self.landed, now)
            )
        self.base[user_id] = (self.gen, now)

    def rewind(self, user_id: str, gen: int) -> bool:
        """Put the row back to its state as of checkpoint round ``gen``; False when it
        is unchanged since (nothing to do) or holds a later round (cannot)."""
        self.get(user_id)  # loads the row's pre-images
        held = self.base.get(user_id)
        if held is None or held[0] < gen:
            return False
        if held[0] > gen:
            prior = self.prior.get(user_id)
            if prior is None or prior[0] != gen:
                self.rewinds_refused += 1
                return False
            # Round ``held[0]`` never landed: the state as of ``gen`` is the prior one.
            held = self.base[user_id] = prior
            del self.prior[user_id]
        before = held[1]
        # from_dict keeps the containers it is given: the kept pre-image must not change.
        self[user_id] = _thawed(before) if before is not None else UserProfile()
        self.src[user_id] = -1
        return True

    def __setitem__(self, user_id: str, profile: UserProfile) -> None:
        self.cache[user_id] = profile
        self.cache.move_to_end(user_id)
        self.dirty[user_id] = self.current_event

    def __delitem__(self, user_id: str) -> None:
        self._drop(user_id)
        self.dirty.pop(user_id, None)
        del self.table[user_id]

    def expire(self, user_id: str) -> None:
        """Delete the user's row (the bound event names its partition) and everything
        cached of it; the caller checked the row is idle, between batches."""
        if user_id in self.dirty:
            raise RuntimeError(f"expiring {user_id!r} with an unflushed change")
        del self[user_id]

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
            held = self.base.get(user_id)
            if held is not None:
                row["_base_gen"], row["_base"] = held
            prior = self.prior.get(user_id)
            if prior is not None:
                row["_prior_gen"], row["_prior"] = prior
            self.table[user_id] = row
        self.dirty.clear()
        self.evict()
        return n

    def evict(self) -> int:
        """Drop the least recently used clean records past ``cache_max``; how many."""
        n = 0
        while len(self.cache) > self.cache_max:
            user_id = next(iter(self.cache))
            if user_id in self.dirty:  # not reached after a flush; never lose a write
                break
            self._drop(user_id)
            n += 1
        self.evicted += n
        return n

    def _drop(self, user_id: str) -> None:
        self.cache.pop(user_id, None)
        self.src.pop(user_id, None)
        self.base.pop(user_id, None)
        self.prior.pop(user_id, None)

    def forget(self) -> None:
        """Drop cached profiles (after a rebalance the partitions may belong to others)."""
        self.cache.clear()
        self.dirty.clear()
        self.src.clear()
        self.base.clear()
        self.prior.clear()
