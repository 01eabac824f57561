"""Writes score messages to Redis: one pipelined round trip per batch of refreshed users.

Redis is a serving copy, so a failed write is not lost: the sink holds the latest
unwritten score blob per user (bounded by ``max_pending``, oldest users dropped
first and counted) and retries with exponential backoff, from the next batch or
from :meth:`ScoreSink.flush` called by a timer when no traffic comes. A Redis that
comes back *empty* is streams/adapters/redis_recovery.py's part.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from streams import metrics as m
from streams.adapters.redis_keys import recs_key

log = logging.getLogger("reelstream.redis")

CHUNK = 5000  # SETs per round trip when catching up


def connect(url: str) -> aioredis.Redis:
    """``redis://`` or ``rediss://`` (TLS); AUTH comes from the URL's user and password."""
    return aioredis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
    )


class Backoff:
    """Exponential retry delays: ``first`` doubling up to ``cap`` seconds; reset on success.

    >>> b = Backoff(first=0.25, cap=1.0)
    >>> [b.fail() for _ in range(4)]
    [0.25, 0.5, 1.0, 1.0]
    >>> b.reset(); b.fail()
    0.25
    """

    def __init__(self, first: float = 0.25, cap: float = 2.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = 0.0

    def fail(self) -> float:
        self.delay = self.first if self.delay <= 0 else min(self.cap, self.delay * 2)
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0


class ScoreSink:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        ttl_s: int,
        max_pending: int = 100_000,
        backoff: Backoff | None = None,
        clock=time.monotonic,  # type: ignore[no-untyped-def]
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.max_pending = max(1, max_pending)
        self.backoff = backoff or Backoff()
        self.clock = clock
        # user -> latest score blob not yet in Redis; insertion order = oldest first.
        self.pending: OrderedDict[str, bytes] = OrderedDict()
        self.down_since: float | None = None  # monotonic time of the first failure
        self.next_try = 0.0
        self.dropped = 0
        self._lock = asyncio.Lock()

    @property
    def caught_up(self) -> bool:
        """Every score this sink was given is in Redis (as far as it knows)."""
        return not self.pending and self.down_since is None

    def hold(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        """Keep each user's latest blob until written; drop the oldest users past the bound."""
        for user_id, blob in blobs:
            self.pending.pop(user_id, None)
            self.pending[user_id] = blob
        over = len(self.pending) - self.max_pending
        for _ in range(max(0, over)):
            self.pending.popitem(last=False)
        if over > 0:
            self.dropped += over
            m.REDIS_PENDING_DROPPED.inc(over)
        m.REDIS_PENDING_SCORES.set(len(self.pending))

    async def write(self, blobs: Sequence[tuple[str, bytes]]) -> bool:
        """SET each (user_id, score JSON) with the TTL, after any held ones; False while Redis
        fails (the blobs are held, and :meth:`flush` retries them with backoff)."""
        if blobs:
            self.hold(blobs)
        if self.down_since is not None:
            return False  # retried by the timer's flush: a dead Redis never stalls the batch loop
        return await self.flush()

    async def flush(self) -> bool:
        """Write what is held, unless the backoff says not yet; True when nothing is left."""
        if not self.pending:
            return True
        if self.clock() < self.next_try:
            return False
        async with self._lock:
            while self.pending:
                chunk = list(self.pending.items())[:CHUNK]
                pipe = self.client.pipeline(transaction=False)
                for user_id, blob in chunk:
                    pipe.set(recs_key(self.prefix, user_id), blob, ex=self.ttl_s)
                try:
                    await pipe.execute()
                except (RedisError, OSError) as exc:
                    self._failed(exc)
                    return False
                for user_id, blob in chunk:
                    if self.pending.get(user_id) is blob:  # not replaced meanwhile
                        del self.pending[user_id]
            m.REDIS_PENDING_SCORES.set(0)
            self._recovered()
            return True

    def _failed(self, exc: BaseException) -> None:
        now = self.clock()
        m.REDIS_ERRORS.labels(op="write_scores").inc()
        m.REDIS_UP.set(0)
        if self.down_since is None:
            self.down_since = now
        delay = self.backoff.fail()
        self.next_try = now + delay
        log.warning(
            "Redis score writes fail (%s): holding the latest scores of %d users, "
            "retrying in %.2fs",
            exc,
            len(self.pending),
            delay,
        )

    def _recovered(self) -> None:
        if self.down_since is not None:
            log.warning(
                "Redis score writes work again after %.1fs; held scores written",
                self.clock() - self.down_since,
            )
        self.down_since = None
        self.next_try = 0.0
        self.backoff.reset()
        m.REDIS_UP.set(1)
