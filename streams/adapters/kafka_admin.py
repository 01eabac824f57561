"""Topic layout and its creation: one place that knows partitions and cleanup policies."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from streams.settings import Settings


def kafka_partition(key: str, partitions: int) -> int:
    """The partition the producers' default partitioner gives ``key`` (aiokafka's
    ``DefaultPartitioner``, like the Java client's: murmur2 of the key bytes, positive,
    modulo the partition count). The replay's multi-worker simulation routes users with it.

    >>> kafka_partition("u1", 4) == kafka_partition("u1", 4), 0 <= kafka_partition("u9", 3) < 3
    (True, True)
    """
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def topic_specs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """name -> (partitions, config). Scores and events are keyed by user, catalog by title."""
    n = settings.partitions
    return {
        settings.events_topic: (n, {"retention.ms": str(7 * 24 * 3600 * 1000)}),
        settings.dlq_topic: (1, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
        settings.scores_topic: (n, {"cleanup.policy": "compact"}),
        settings.catalog_topic: (1, {"cleanup.policy": "compact"}),
        # Title side (docs/architecture.md): same partition count as the events topic.
        settings.title_events_topic: (n, {"retention.ms": str(7 * 24 * 3600 * 1000)}),
        settings.title_snapshots_topic: (n, {"cleanup.policy": "compact"}),
        # Model checkpoints: partition p holds events partition p's checkpoints (chunks of
        # up to 0.9 MB); compaction keeps the latest record per key (docs/models.md).
        settings.checkpoint_topic: (n, {"cleanup.policy": "compact", "segment.ms": "600000"}),
        # The title-side exchange (streams/adapters/title_exchange.py), one partition per title
        # shard (= title-events partition): each worker's cumulative contribution to shard s
        # (chunks + manifest keyed by worker) in partition s, read by the shard's aggregator;
        # each shard's global snapshot (keyed by shard) in partition s, read whole by every
        # worker. A key's chunks and manifest share a partition, in order.
        settings.title_contributions_topic: (
            n,
            {"cleanup.policy": "compact", "segment.ms": "600000"},
        ),
        settings.title_global_topic: (n, {"cleanup.policy": "compact", "segment.ms": "600000"}),
        # Released titles' first-28-day results, keyed by title, read whole by every worker's
        # forecaster. One partition: every worker learns them in the same order.
        settings.title_results_topic: (1, {"cleanup.policy": "compact"}),
        # Bandit experiments' shares per batch and kill switches (allocation/<id>, switch/<id>),
        # read whole by every worker. One partition: one order for every reader.
        settings.experiment_allocation_topic: (1, {"cleanup.policy": "compact"}),
        # Artwork decisions (context, offered, choice, propensity) for off-policy evaluation.
        settings.artwork_decisions_topic: (n, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
    }


async def ensure_topics_async(settings: Settings, timeout: float = 60.0) -> list[str]:
    """Create missing topics; retries while a just-started broker finishes booting."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(
                    name=name,
                    num_partitions=parts,
                    replication_factor=settings.replication_factor,
                    topic_configs={**settings.topic_configs(), **cfg},
                )
                for name, (parts, cfg) in topic_specs(settings).items()
                if name not in existing
            ]
            if missing:
                await admin.create_topics(missing)
            return [t.name for t in missing]
        except KafkaError as exc:
            last = exc
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    raise RuntimeError(f"could not create topics on {settings.broker}: {last}")


async def delete_topics_async(settings: Settings, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


def ensure_topics(settings: Settings) -> list[str]:
    return asyncio.run(ensure_topics_async(settings))


def earliest_reader(settings: Settings, **kwargs: object) -> AIOKafkaConsumer:
    """A consumer outside any group (nothing committed) that starts at the earliest
    offset: how a topic is read whole (compacted followers, rebuilds, checkpoints)."""
    from streams.adapters import kafka_internals

    kafka_internals.install_client_guards()
    return AIOKafkaConsumer(
        **settings.kafka_client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kwargs,
    )


async def assign_all(
    consumer: AIOKafkaConsumer, topic: str, timeout: float = 30.0
) -> list[TopicPartition]:
    """Give a group-less consumer every partition of ``topic``, positioned at the beginning."""
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {topic!r} has no partitions on the broker")
        await asyncio.sleep(0.05)
    tps = sorted(consumer.assignment())
    await consumer.seek_to_beginning(*tps)
    return tps
