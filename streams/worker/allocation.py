"""The allocating worker's step: new bandit batches and kill switches onto the allocation topic.

One worker allocates, the owner of events partition 0 (chosen by the consumer group,
so exactly one in a settled group; docs/artwork-and-experiments.md, section 4). Once
a second it reads each bandit experiment's per-partition batch sums from Redis (the
shards every worker writes after each batch, ``feature_sink.read_experiment``), merges
them, and asks the pure :func:`online_models.bandit_live.next_allocation` whether a
record is due: the kill switch or its release (at once), or a new batch (interval and
units reached). The record goes to the topic; every worker, this one included,
applies it when its follower reads it back, so all of them switch on the same record.
Two workers briefly both allocating during a rebalance publish the same shares for the
same sums (the posterior draws are seeded by experiment and batch).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.exceptions import RedisError

from online_models.bandit_live import Allocation, merge_batches, next_allocation, record_key
from online_models.experiments import Assigner
from streams.adapters.feature_sink import read_experiment
from streams.metrics import REDIS_ERRORS

log = logging.getLogger("reelstream.allocation")
Send = Callable[[str, bytes | None, bytes], Awaitable[None]]


async def allocate(
    assigner: Assigner, redis: Any, prefix: str, topic: str, send: Send, now_ms: int
) -> list[Allocation]:
    """Publish the records due now; returns them (an experiment whose sums cannot be read
    keeps its shares until the next tick)."""
    published = []
    for eid, current in sorted(assigner.allocations.items()):
        exp = assigner.experiments[eid]
        try:
            shards, _ = await read_experiment(redis, prefix, eid)
        except RedisError as exc:
            REDIS_ERRORS.labels(op="read_experiment").inc()
            log.warning("%s: batch sums unreadable, shares unchanged: %s", eid, exc)
            continue
        batches = merge_batches(sh.batches for sh in shards)
        rec = next_allocation(exp, current, bool(assigner.switches.get(eid)), batches, now_ms)
        if rec is None:
            continue
        await send(topic, record_key("allocation", eid).encode(), orjson.dumps(rec.as_dict()))
        log.info("%s: batch %d shares %s killed %s", eid, rec.batch, rec.shares, rec.killed)
        published.append(rec)
    return published
