"""``reelstream rebuild-redis``: restore the serving copy (``recs`` keys) from the score topic.

The score topic is compacted and keyed by user, so reading it from the beginning
up to the end offsets seen at start gives every user's latest score message.
Each is written back with the TTL it has left (messages older than
``REELSTREAM_SCORE_TTL_S`` are skipped). A key that Redis already holds with a
newer ``generated_at`` (a running worker refreshed it meanwhile) is left alone,
so the rebuild is safe to run while workers are live: the comparison and the write
are one Lua script (``SET_IF_NOT_OLDER``), so a worker's write between them cannot be
overwritten by the older message; tombstones delete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from streams.adapters.kafka_admin import assign_all, earliest_reader
from streams.adapters.redis_keys import recs_key
from streams.adapters.redis_sink import connect
from streams.contract import is_valid_id
from streams.settings import Settings

CHUNK = 1000

# KEYS[1] recs key; ARGV: blob, its generated_at, TTL in ms. 1 = written, 0 = Redis holds a
# newer blob. Atomic in Redis: nothing lands between the comparison and the SET.
SET_IF_NOT_OLDER = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, doc = pcall(cjson.decode, cur)
  if ok and type(doc) == 'table' then
    local held = tonumber(doc['generated_at'])
    if held and held > tonumber(ARGV[2]) then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""


@dataclass
class RebuildReport:
    records: int = 0
    users: int = 0
    written: int = 0
    kept_newer: int = 0
    expired: int = 0
    deleted: int = 0
    invalid: int = 0

    def __str__(self) -> str:
        return (
            f"read {self.records:,} score records for {self.users:,} users: "
            f"wrote {self.written:,}, kept {self.kept_newer:,} newer, "
            f"skipped {self.expired:,} expired and {self.invalid:,} invalid, "
            f"deleted {self.deleted:,}"
        )


async def latest_scores(settings: Settings) -> tuple[int, dict[str, bytes | None]]:
    """(records read, user -> latest score blob or None for a tombstone) up to today's end."""
    consumer = earliest_reader(settings)
    await consumer.start()
    latest: dict[str, bytes | None] = {}
    n = 0
    try:
        tps = await assign_all(consumer, settings.scores_topic)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000, max_records=10_000)
            for tp, records in batch.items():
                for r in records:
                    if r.offset >= end[tp]:
                        continue
                    n += 1
                    if r.key is not None:
                        latest[r.key.decode("utf-8", "replace")] = r.value
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return n, latest


def _generated_at(blob: bytes | None) -> int:
    if not blob:
        return -1
    try:
        return int(orjson.loads(blob).get("generated_at") or 0)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return -1


async def rebuild_redis(settings: Settings, now_ms: int | None = None) -> RebuildReport:
    report = RebuildReport()
    report.records, latest = await latest_scores(settings)
    report.users = len(latest)
    now_ms = now_ms or int(time.time() * 1000)
    client = connect(settings.redis_url)
    try:
        sha = await client.script_load(SET_IF_NOT_OLDER)
        items = list(latest.items())
        for start in range(0, len(items), CHUNK):
            pipe = client.pipeline(transaction=False)
            is_set: list[bool] = []  # per queued command: a conditional SET (else a DELETE)
            for uid, blob in items[start : start + CHUNK]:
                if not is_valid_id(uid):
                    report.invalid += 1
                    continue
                key = recs_key(settings.key_prefix, uid)
                if blob is None:
                    pipe.delete(key)
                    is_set.append(False)
                    report.deleted += 1
                    continue
                generated = _generated_at(blob)
                if generated < 0:
                    report.invalid += 1
                    continue
                ttl_ms = settings.score_ttl_s * 1000 - max(0, now_ms - generated)
                if ttl_ms <= 0:
                    report.expired += 1
                    continue
                pipe.evalsha(sha, 1, key, blob, generated, ttl_ms)
                is_set.append(True)
            results = await pipe.execute() if is_set else []
            for was_set, result in zip(is_set, results, strict=True):
                if was_set:
                    report.written += result == 1
                    report.kept_newer += result != 1
    finally:
        await client.aclose()
    return report
