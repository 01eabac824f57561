"""The serving copy catches up by itself after a Redis outage (docs/operations.md).

Two failures, two remedies:

* **Redis unreachable for a while** (network, restart with persistence): the score
  sink (streams/adapters/redis_sink.py) holds each user's latest unwritten scores and
  retries with backoff; :meth:`RedisRecovery.tick` retries even when no event comes.
* **Redis came back empty** (restart without persistence, failover to an empty
  replica, ``FLUSHALL``): every worker checks, once per tick while Redis answers,
  that the epoch key (``<prefix>:epoch``) is there. The key is set only once the
  serving copy is complete, so its absence means the data is gone (or was never
  built: a new Redis). One worker, the one that takes the rebuild lock
  (``SET NX`` with a TTL), rebuilds every user's scores from the compacted score
  topic with the same code as ``reelstream rebuild-redis`` (streams/adapters/rebuild.py),
  then sets the epoch key; the others keep writing new scores meanwhile (the
  rebuild never overwrites a newer blob). A rebuild that fails releases the lock
  and is tried again after a backoff; a worker that dies mid-rebuild leaves the
  lock to expire (``lock_ttl_s``) and another worker takes over.

Feature and title hashes are not in the score topic: each worker rewrites the ones
it owns from its tables (``on_resync``) when the epoch key changes (a rebuild
happened, by any worker) and when Redis answers again after failed writes or
checks (writes dropped during the outage). So every hash catches up, including
those of viewers and titles that see no new event.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from streams import metrics as m
from streams.adapters.redis_keys import epoch_key, rebuild_lock_key
from streams.adapters.redis_sink import Backoff, ScoreSink
from streams.settings import Settings

log = logging.getLogger("reelstream.redis")

Rebuild = Callable[[Settings], Awaitable[Any]]


async def _rebuild_from_topic(settings: Settings) -> Any:
    from streams.adapters.rebuild import rebuild_redis

    return await rebuild_redis(settings)


class RedisRecovery:
    """Retries held scores and rebuilds a Redis that lost its data; call :meth:`tick` often."""

    def __init__(
        self,
        settings: Settings,
        sink: ScoreSink,
        *,
        rebuild: Rebuild = _rebuild_from_topic,
        on_resync: Callable[[str], None] | None = None,
        lock_ttl_s: int = 120,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.client = sink.client
        self.rebuild = rebuild
        self.on_resync = on_resync
        self.lock_ttl_s = lock_ttl_s
        self.clock = clock
        self.worker_id = settings.resolved_worker_id
        self.epoch = epoch_key(settings.key_prefix)
        self.lock = rebuild_lock_key(settings.key_prefix)
        self.epoch_ok = False  # the epoch key was there at the last check
        self.epoch_seen: bytes | None = None  # its value at the last check that found it
        self.checked = False
        self.reachable = True  # the last check got an answer
        self.rebuilds = 0
        self.task: asyncio.Task | None = None
        self._backoff = Backoff()
        self._next_check = 0.0

    @property
    def rebuilding(self) -> bool:
        return self.task is not None and not self.task.done()

    def status(self) -> dict[str, Any]:
        """What /readyz shows under ``serving_copy``."""
        return {
            "writes_ok": self.sink.down_since is None and self.reachable,
            "pending_scores": len(self.sink.pending),
            "complete": self.epoch_ok and not self.rebuilding,
            "rebuilding": self.rebuilding,
        }

    async def tick(self) -> None:
        was_down = self.sink.down_since is not None
        await self.sink.flush()
        if self.sink.down_since is None:
            if was_down:
                self._resync("score writes work again")
            await self.check()

    def _resync(self, why: str) -> None:
        if self.on_resync is not None:
            self.on_resync(why)

    async def check(self) -> None:
        """Is the epoch key there? If not, take the lock and start a rebuild."""
        if self.rebuilding or self.clock() < self._next_check:
            return
        try:
            value = await self.client.get(self.epoch)
            present = value is not None
            took = False
            if not present:
                took = bool(
                    await self.client.set(self.lock, self.worker_id, nx=True, ex=self.lock_ttl_s)
                )
        except (RedisError, OSError) as exc:
            self._unreachable(exc)
            return
        if not self.reachable:
            log.warning("Redis answers again")
            self._resync("Redis answers again")
        if present and self.checked and value != self.epoch_seen:
            self._resync("a new serving-copy epoch")
        if present:
            self.epoch_seen = value
        self.checked = True
        self.reachable = True
        self._backoff.reset()
        if not self.sink.pending:
            m.REDIS_UP.set(1)
        self.epoch_ok = bool(present)
        if took:
            self.task = asyncio.create_task(self._rebuild())

    def _unreachable(self, exc: BaseException) -> None:
        m.REDIS_ERRORS.labels(op="epoch_check").inc()
        m.REDIS_UP.set(0)
        delay = self._backoff.fail()
        self._next_check = self.clock() + delay
        if self.reachable:
            log.warning("Redis does not answer (%s); checking again with backoff", exc)
        self.reachable = False

    async def _rebuild(self) -> None:
        started = time.monotonic()
        m.REDIS_REBUILDING.set(1)
        log.warning(
            "Redis has no %s key (restarted empty, flushed or new): rebuilding the serving "
            "copy from %s",
            self.epoch,
            self.settings.scores_topic,
        )
        try:
            # Bounded like the lock: past it another worker may take over anyway.
            report = await asyncio.wait_for(self.rebuild(self.settings), self.lock_ttl_s)
            # Unique per rebuild: the other workers tell a new epoch by its value.
            stamp = f"{self.worker_id} {int(time.time() * 1000)} {uuid.uuid4().hex[:8]}"
            await self.client.set(self.epoch, stamp)
        except Exception as exc:
            m.REDIS_REBUILDS.labels(outcome="failed").inc()
            self._next_check = self.clock() + self._backoff.fail()
            log.warning("rebuilding the serving copy failed (%s); trying again", exc)
        else:
            self.rebuilds += 1
            self.epoch_ok = True
            m.REDIS_REBUILDS.labels(outcome="done").inc()
            log.warning("serving copy rebuilt in %.1fs: %s", time.monotonic() - started, report)
        finally:
            m.REDIS_REBUILDING.set(0)
            try:
                if await self.client.get(self.lock) == self.worker_id.encode():
                    await self.client.delete(self.lock)
            except (RedisError, OSError):
                pass  # it expires
