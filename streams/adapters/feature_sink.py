"""The Redis serving copy of the online features: one pipelined round trip per call.

* user features: HASH ``features_key(prefix, user)``, refreshed for every user
  touched in a batch, expiring after ``feature_ttl_s`` without activity;
* title statistics: HASH ``title_key(prefix, title)``, written by the title's owner
  when it publishes a snapshot;
* experiment sums: HASH ``experiment_key(prefix, experiment)``, one field per
  events-topic partition, rewritten whole by the partition's owner after each batch
  that changed it (absolute values, so a retry or a replay never double-counts),
  with bandit experiments' per-batch units (``read_experiment`` reads them back for
  the API and the allocating worker);
* trending lists: JSON blob ``trending_key(prefix, country, window)``, written by
  one worker (the owner of partition 0 of the title topic) from its global view.

The sink takes domain objects, not field dicts, and encodes them through
streams/adapters/redis_values.py, the module the API decodes with: nothing else can be written.
Redis is rebuildable from the tables; errors are counted, never fatal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from features.title_stats import TitleStats
from features.user_profile import UserProfile
from online_models.experiment_live import ArmTotals, LiveFold
from streams.adapters.redis_keys import experiment_key, features_key, title_key, trending_key
from streams.adapters.redis_values import (
    ExperimentShard,
    TrendingList,
    title_stats_fields,
    user_features_fields,
)
from streams.metrics import REDIS_ERRORS

# Rewrites a user's feature hash only if it holds nothing newer (by the last event time):
# a resync from the table must never overwrite what a batch wrote meanwhile.
WRITE_IF_NOT_NEWER = """
local cur = redis.call('HGET', KEYS[1], 'last_ts')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

log = logging.getLogger("reelstream.feature_sink")


class FeatureSink:
    def __init__(self, client: aioredis.Redis, prefix: str, feature_ttl_s: int) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = feature_ttl_s

    async def _run(self, pipe: aioredis.client.Pipeline, op: str) -> bool:
        try:
            await pipe.execute()
        except RedisError:
            REDIS_ERRORS.labels(op=op).inc()
            return False
        return True

    async def write_users(self, rows: Iterable[tuple[str, UserProfile]]) -> bool:
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for user_id, profile in rows:
            key = features_key(self.prefix, user_id)
            pipe.hset(key, mapping=user_features_fields(profile))  # type: ignore[arg-type]
            pipe.expire(key, self.ttl_s)
            n += 1
        return await self._run(pipe, "write_features") if n else True

    async def resync_users(self, rows: Iterable[tuple[str, UserProfile]]) -> bool:
        """Like :meth:`write_users`, but never over a hash with a later ``last_ts``."""
        try:
            sha = await self.client.script_load(WRITE_IF_NOT_NEWER)
        except RedisError:
            REDIS_ERRORS.labels(op="write_features").inc()
            return False
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for user_id, profile in rows:
            fields = user_features_fields(profile)
            flat = [x for kv in fields.items() for x in kv]
            key = features_key(self.prefix, user_id)
            pipe.evalsha(sha, 1, key, fields["last_ts"], self.ttl_s, *flat)
            n += 1
        return await self._run(pipe, "write_features") if n else True

    async def write_titles(self, rows: Iterable[tuple[str, TitleStats]]) -> bool:
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for title_id, stats in rows:
            fields = title_stats_fields(stats)
            pipe.hset(title_key(self.prefix, title_id), mapping=fields)  # type: ignore[arg-type]
            n += 1
        return await self._run(pipe, "write_titles") if n else True

    async def write_trending(
        self, lists: Iterable[tuple[str, str, int, list[tuple[str, int]]]]
    ) -> bool:
        """(country, window, as_of event time, [(title, plays)]) per list."""
        pipe = self.client.pipeline(transaction=False)
        n = 0
        now_ms = int(time.time() * 1000)
        for country, window, as_of, items in lists:
            blob = TrendingList(country, window, as_of, now_ms, tuple(items)).encode()
            pipe.set(trending_key(self.prefix, country, window), blob)
            n += 1
        return await self._run(pipe, "write_trending") if n else True

    async def write_experiments(
        self, fold: LiveFold, experiment_ids: Iterable[str], now_ms: int
    ) -> bool:
        """Each changed partition's per-arm sums; on failure the partitions stay dirty."""
        parts = fold.take_dirty()
        if not parts:
            return True
        pipe = self.client.pipeline(transaction=False)
        ids = list(experiment_ids)
        for p in sorted(parts):
            snap = fold.snapshot(p)
            batches = fold.batch_snapshot(p)
            since = fold.since.get(p, now_ms)
            for eid in ids:
                arms = {a: ArmTotals.from_dict(d) for a, d in snap.get(eid, {}).items()}
                shard = ExperimentShard(p, since, now_ms, arms, dict(batches.get(eid, {})))
                pipe.hset(experiment_key(self.prefix, eid), shard.field(p), shard.encode())
        if await self._run(pipe, "write_experiments"):
            return True
        fold.dirty |= parts
        return False


async def read_experiment(
    client: aioredis.Redis, prefix: str, experiment_id: str
) -> tuple[list[ExperimentShard], list[str]]:
    """Every partition's shard of one experiment, and the fields that could not be decoded
    (skipped; the API lists them, the allocating worker ignores them). Raises RedisError."""
    raw = await client.hgetall(experiment_key(prefix, experiment_id))
    shards, unreadable = [], []
    for fld, blob in sorted(raw.items()):
        try:
            shards.append(ExperimentShard.decode(blob))
        except ValueError as exc:
            unreadable.append(fld.decode("utf-8", "replace")[:20])
            log.warning("%s field %s: %s", experiment_id, fld[:20], exc)
    return shards, unreadable
