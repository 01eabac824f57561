"""Writes score messages to Redis: one pipelined round trip per batch of refreshed users."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from streams.adapters.redis_keys import recs_key
from streams.metrics import REDIS_ERRORS


def connect(url: str) -> aioredis.Redis:
    """``redis://`` or ``rediss://`` (TLS); AUTH comes from the URL's user and password."""
    return aioredis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
    )


class ScoreSink:
    def __init__(self, client: aioredis.Redis, prefix: str, ttl_s: int) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    async def write(self, blobs: Sequence[tuple[str, bytes]]) -> bool:
        """SET each (user_id, score JSON) with the TTL; False (and counted) on Redis errors."""
        if not blobs:
            return True
        pipe = self.client.pipeline(transaction=False)
        for user_id, blob in blobs:
            pipe.set(recs_key(self.prefix, user_id), blob, ex=self.ttl_s)
        try:
            await pipe.execute()
        except RedisError:
            REDIS_ERRORS.labels(op="write_scores").inc()
            return False
        return True
