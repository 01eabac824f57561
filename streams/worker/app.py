"""The Faust application: topics, the profile table, the agents and the web views.

Agents stay thin: decode, call the pure core (:class:`online_models.engine.Engine`),
emit. Settings are read from the environment when this module is imported.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from features.title_view import GlobalTitleView
from features.user_profile import UserProfile
from online_models import hooks
from online_models.engine import Engine
from online_models.health import ModelHealth
from streams import metrics as m
from streams import poison
from streams.adapters import kafka_internals
from streams.adapters.allocation_follower import AllocationFollower
from streams.adapters.catalog_follower import CatalogFollower
from streams.adapters.feature_sink import FeatureSink
from streams.adapters.kafka_admin import ensure_topics_async
from streams.adapters.producer_drain import drain
from streams.adapters.redis_keys import features_key, recs_key
from streams.adapters.redis_recovery import RedisRecovery
from streams.adapters.redis_sink import ScoreSink, connect
from streams.adapters.results_follower import ResultsFollower
from streams.adapters.title_exchange import TitleFactorExchange
from streams.adapters.title_view_follower import TitleViewFollower
from streams.api import web as web_api
from streams.api import web_lockdown
from streams.contract import TRACEPARENT_HEADER, Rejection, dead_letter
from streams.settings import Settings
from streams.worker import diagnostics, experiment_metrics, gc_pauses, loop_watch, monitor
from streams.worker.allocation import allocate
from streams.worker.batch_core import BatchOutput, process_batch
from streams.worker.checkpoints import ModelDurability
from streams.worker.expiry import ExpirySweep
from streams.worker.offset_order import PartitionOrder, of_assigned
from streams.worker.profile_store import TableProfileStore
from streams.worker.title_store import TableTitleStore

settings = Settings.from_env()
log = logging.getLogger("reelstream.worker")


def _credentials(s: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust's form of the SASL/SSL options in :class:`Settings`."""
    if s.security_protocol == "PLAINTEXT":
        return None
    ssl_context = s.kafka_client_kwargs().get("ssl_context")
    if s.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=s.sasl_username,
            password=s.sasl_password,
            mechanism=s.sasl_mechanism,
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)


app = kafka_internals.App(
    settings.app_id,
    broker=kafka_internals.install(settings.fetch_max_wait_ms) + settings.broker,
    broker_credentials=_credentials(settings),
    store="rocksdb://",
    datadir=settings.data_dir,
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    consumer_auto_offset_reset="earliest",
    web_host=settings.web_host,
    web_bind=settings.web_host,  # Faust binds web_bind (default 0.0.0.0), not web_host
    web_port=settings.web_port,
    web_in_thread=False,
    **web_lockdown.FAUST_PAGES_OFF,
    producer_linger_ms=5,
    producer_compression_type=settings.compression_type,
    stream_wait_empty=False,
    broker_commit_every=1000,
    broker_commit_interval=1.0,
    table_standby_replicas=0,
    # A single broker in development: shorter session and rebalance timers make
    # joins and restarts take seconds rather than half a minute.
    broker_session_timeout=10.0,
    broker_heartbeat_interval=1.0,
    broker_rebalance_timeout=20.0,
)


def _raw_topic(name: str, **kwargs: object) -> faust.TopicT:
    """A topic of bytes in and out: the agents decode with orjson themselves."""
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        config=settings.topic_configs(),
        **kwargs,
    )


events_topic = _raw_topic(settings.events_topic)
profiles_table = app.Table(
    "user-profiles",
    schema=faust.Schema(
        key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw"
    ),
    partitions=settings.partitions,
    extra_topic_configs=settings.topic_configs(),
    options=settings.rocksdb_options(),  # bounded RocksDB memory per partition
)

# Title side (docs/architecture.md, "Title-side state across workers"): compact records
# keyed by title, one owner per title, snapshots of changed titles to every worker.
title_events_topic = _raw_topic(settings.title_events_topic, internal=True)
titles_table = app.Table(
    "title-stats",
    schema=faust.Schema(
        key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw"
    ),
    partitions=settings.partitions,
    extra_topic_configs=settings.topic_configs(),
    options=settings.rocksdb_options(),  # bounded RocksDB memory per partition
)

store = TableProfileStore(profiles_table, settings.user_cache)
title_store = TableTitleStore(titles_table)
order = PartitionOrder()  # each partition's records reach the agents in offset order
progress = monitor.Progress()  # last offset processed per partition, for the stall watch
title_view = GlobalTitleView()
engine = Engine(profiles=store, top_k=settings.top_k, popularity=title_view)
# Artwork per viewer and experiments, as the settings ask (off by default); decision
# records collect in engine.artwork.log and go to their topic after each batch.
hooks.install(engine, settings)
if engine.artwork is not None or engine.experiments is not None:
    experiment_metrics.register(engine)
follower = CatalogFollower(settings, engine.catalog)
view_follower = TitleViewFollower(settings, title_view)
# Bandit experiments (docs/artwork-and-experiments.md, section 4): every worker follows the
# shares in force and the kill switches; the owner of events partition 0 allocates.
allocation_follower = (
    AllocationFollower(settings, engine.experiments)
    if engine.experiments is not None and engine.experiments.allocations
    else None
)
health = ModelHealth(served_max=settings.user_cache)
# Idle users' rows leave the table (streams/worker/expiry.py), a slice per second.
expiry = ExpirySweep(
    settings.user_ttl_s * 1000, settings.user_expiry_scan, settings.user_expiry_pause_s
)
_sink: ScoreSink | None = None
_features: FeatureSink | None = None
_recovery: RedisRecovery | None = None  # Redis catch-up after outages (redis_recovery.py)


async def _commit_offsets(offsets: dict[int, int]) -> None:
    await kafka_internals.commit_offsets(app, settings.events_topic, offsets)


# Durable learning (docs/models.md, "Durability"): checkpoints, restore, replay rules.
durable = ModelDurability(settings, engine, store, _commit_offsets, lambda: drain(app.producer))


async def _send(
    topic: str,
    key: bytes | None,
    value: bytes,
    headers: list[tuple[str, bytes]] | None = None,
    partition: int | None = None,
) -> None:
    try:
        await app.producer.send(topic, key, value, partition, None, headers)
    except Exception:
        m.KAFKA_SEND_ERRORS.labels(topic=topic).inc()
        raise


async def _reject(key: bytes | None, record: bytes) -> None:
    await _send(settings.dlq_topic, key, record)


follower.reject = _reject
view_follower.reject = _reject
if allocation_follower is not None:
    allocation_follower.reject = _reject
poison.init_series(
    [
        settings.events_topic,
        settings.catalog_topic,
        settings.title_events_topic,
        settings.title_results_topic,
        *([settings.experiment_allocation_topic] if allocation_follower is not None else []),
    ]
)


# Title-side state across workers (docs/models.md, "Title factors across workers"): each
# worker's contribution, cut by title shard; the holder of title-events partition s
# aggregates shard s; every worker merges the shards' global snapshots between batches.
async def _send_exchange(
    topic: str, key: bytes | None, value: bytes, partition: int | None
) -> None:
    await _send(topic, key, value, partition=partition)


title_exchange = (
    TitleFactorExchange(settings, engine, _send_exchange)
    if settings.exchange_interval_s > 0
    else None
)


@app.task
async def follow_title_snapshots() -> None:
    if title_exchange is not None:
        await ensure_topics_async(settings)
        await title_exchange.snapshots.run()


@app.task
async def aggregate_title_shards() -> None:
    if title_exchange is not None:
        await ensure_topics_async(settings)
        await title_exchange.contributions.run()


@app.timer(max(settings.exchange_interval_s, 0.1))
async def exchange_title_state() -> None:
    # After the catalog and any restored checkpoint are loaded (durable imports them at
    # the first record), so a contribution is never published from empty models.
    if title_exchange is None or not follower.ready.is_set() or durable.to_import:
        return
    owned = None  # mid-rebalance the assignment is in flux: keep the aggregated shards
    if not app.rebalancing:
        owned = {
            tp.partition
            for tp in app.consumer.assignment()
            if tp.topic == settings.title_events_topic
        }
    async with durable.lock:
        title_exchange.take_in(owned)
    await asyncio.sleep(0)  # a batch waiting for the lock runs between the halves
    async with durable.lock:
        await title_exchange.send_out()


@app.task
async def follow_catalog() -> None:
    await follower.run()


@app.task
async def follow_title_view() -> None:
    await ensure_topics_async(settings)
    await view_follower.run()


@app.task
async def follow_allocation() -> None:
    if allocation_follower is not None:
        await ensure_topics_async(settings)
        await allocation_follower.run()


@app.timer(1.0)
async def allocate_bandit_traffic() -> None:
    """The owner of events partition 0 publishes due batches and kill switches."""
    if allocation_follower is None or _sink is None or not allocation_follower.ready.is_set():
        return
    if faust.types.TP(settings.events_topic, 0) not in app.consumer.assignment():
        return
    assert engine.experiments is not None
    await allocate(
        engine.experiments,
        _sink.client,
        settings.key_prefix,
        settings.experiment_allocation_topic,
        _send,
        int(time.time() * 1000),
    )


# Partitions whose revocation has begun, until the next assignment: their records still in
# a batch wait for it (offset_order.of_assigned; the final checkpoint covers what came before).
revoking: set = set()


@app.on_partitions_revoked.connect
async def _on_revoked(app: faust.App, revoked: set, **kwargs: object) -> None:
    revoking.update(revoked)  # first: a batch that takes the lock after this leaves them
    await durable.on_revoked()
    store.forget()
    title_store.forget()
    progress.forget()
    order.forget()


@app.on_partitions_assigned.connect
async def _on_assigned_models(app: faust.App, assigned: set, **kwargs: object) -> None:
    revoking.clear()  # from here the assignment says what this worker holds
    owned = {tp.partition for tp in assigned if tp.topic == settings.events_topic}
    durable.on_assigned(owned)
    expiry.keep_partitions(owned)
    if engine.experiment_fold is not None:
        # Partitions that moved away: their new owner publishes their sums (eager rebalances
        # revoke everything first, so this waits for the assignment to know what stays).
        engine.experiment_fold.drop_partitions(set(engine.experiment_fold.sums) - owned)


@app.on_rebalance_complete.connect
async def _on_rebalance_complete(app: faust.App, **kwargs: object) -> None:
    # Sent after table recovery and before Faust seeks to the committed offsets:
    # restoring here (which commits each checkpoint's offset) makes that seek land
    # exactly where the models' checkpoint ends.
    await durable.restore()
    # A title whose last update was flushed but not yet published (by a worker that
    # crashed or lost the partition) must still reach the snapshot topic and Redis. Not
    # at assignment: Faust recovers the tables after that signal, and the 1 s publish
    # timer took the flag while the table was still being restored (a title missing its
    # last plays in Redis after a SIGKILL, tests/integration/test_fault_kills.py).
    title_store.republish_all = True


_resync_task: asyncio.Task | None = None


def _resync_serving_copy(why: str) -> None:
    """Rewrite this worker's title and user feature hashes (RedisRecovery's ``on_resync``):
    they are not in the score topic, and an emptied Redis or dropped writes lost them."""
    global _resync_task
    title_store.republish_all = True
    if _resync_task is None or _resync_task.done():
        _resync_task = asyncio.create_task(_rewrite_user_features(why))


def tables_settled() -> bool:
    """No rebalance or table recovery in progress: a row read now is the row's last
    version, not one that Faust's changelog replay is about to overwrite."""
    return not (app.rebalancing or app.in_recovery)


async def _rewrite_user_features(why: str) -> None:
    started, n, chunk = time.perf_counter(), 0, []
    if _features is None:
        return
    while not tables_settled():
        await asyncio.sleep(0.5)
    for user_id, row in profiles_table.items():  # the partitions this worker owns
        chunk.append((user_id, UserProfile.from_dict(row)))
        if len(chunk) >= 500:
            await _features.resync_users(chunk)
            n, chunk = n + len(chunk), []
            await asyncio.sleep(0)  # a chunk at a time: batches and the API keep running
    if chunk:
        await _features.resync_users(chunk)
        n += len(chunk)
    log.warning(
        "rewrote %d users' feature hashes after %s in %.1f s", n, why, time.perf_counter() - started
    )


@app.timer(1.0)
async def redis_catch_up() -> None:
    if _recovery is not None:
        await _recovery.tick()


@app.timer(1.0)
async def checkpoint_idle() -> None:
    await durable.tick()


@app.timer(1.0)
async def expire_idle_users() -> None:
    """One slice of the expiry sweep, between two batches (the rows are all flushed)."""
    if not expiry.enabled or _sink is None or not tables_settled():
        return  # (mid-recovery, a row's older version could look idle)
    async with durable.lock:
        passes = expiry.passes
        idle = expiry.tick(
            lambda p, after, n: kafka_internals.table_slice(profiles_table, p, after, n),
            time.monotonic(),
        )
        for p, user_id in idle:
            stand_in = kafka_internals.PartitionEvent(settings.events_topic, p)
            store.bind(stand_in)  # the delete goes to the row's partition and changelog
            store.expire(user_id)
            health.forget(user_id)
            if engine.experiment_fold is not None:
                engine.experiment_fold.forget(user_id)
        store.current_event = None  # no later write may take the stand-in for a record
        m.USER_EXPIRY_PASSES.inc(expiry.passes - passes)
        if idle:
            m.USERS_EXPIRED.inc(len(idle))
            m.TABLE_ENTRIES.labels(table="user-profiles").set(len(store.cache))
            # The serving copy goes with the record (its keys expire by their TTLs anyway);
            # under the lock, so a returning user's next scores are not deleted.
            pipe = _sink.client.pipeline(transaction=False)
            for _, user_id in idle:
                pipe.delete(recs_key(settings.key_prefix, user_id))
                pipe.delete(features_key(settings.key_prefix, user_id))
            try:
                await pipe.execute()
            except RedisError:  # Redis down: the keys expire by their TTLs
                m.REDIS_ERRORS.labels(op="expire_users").inc()


@app.timer(10.0)
async def model_health() -> None:
    auc, loss = health.ranker(engine.models.ranker)
    m.RANKER_AUC.set(auc)
    m.RANKER_LOG_LOSS.set(loss)
    m.PREQUENTIAL_HIT_RATE.set(health.hit_rate())


@app.agent(events_topic)
async def process_events(stream: faust.StreamT) -> None:
    global _sink, _features, _recovery
    _sink = ScoreSink(
        connect(settings.redis_url),
        settings.key_prefix,
        settings.score_ttl_s,
        settings.redis_pending_max,
    )
    _recovery = RedisRecovery(settings, _sink, on_resync=_resync_serving_copy)
    _features = FeatureSink(_sink.client, settings.key_prefix, settings.feature_ttl_s)
    await follower.ready.wait()
    if allocation_follower is not None:  # never assign with shares older than the topic's
        await allocation_follower.ready.wait()
    async for batch in stream.take_events(settings.batch_max, within=settings.batch_within_s):
        # Faust acks a batch's offsets when the generator moves on *or is closed*: a
        # worker stopped mid-batch would commit offsets whose profiles were never
        # written. An extra reference per message, released only once the batch is
        # persisted, keeps such offsets uncommitted; the next owner replays them and
        # the per-user event-id gate drops what was already counted.
        for event in batch:
            event.message.incref()
        async with durable.lock:  # checkpoints happen between batches only
            # Under the lock: a batch that waited for it through a revocation's final
            # checkpoint must not fold in records of the revoked partitions after it.
            batch = _in_order(batch)
            await handle_batch(batch)
            await durable.after_batch()
        for event in batch:
            event.message.decref()
        progress.note(batch)


def _in_order(batch: list) -> list:
    """The batch's events of partitions this worker holds (not being revoked) that follow
    their partition's last one (offset_order.py). The others are held: they keep the extra
    reference taken above, so they are never acked; a partition with a hole is read again
    from its first missing record, one being revoked from its commit by whoever holds it
    after the rebalance."""
    consumer = app.consumer
    batch, gone = of_assigned(batch, consumer.assignment() - revoking)
    if gone:
        tps = sorted({f"{e.message.topic}-{e.message.partition}" for e in gone})
        log.info(
            "%d records of %s reached the agent after their partitions' revocation began: "
            "left to whoever holds them after the rebalance (read again from its commit)",
            len(gone),
            ", ".join(tps),
        )
    order.seeked(kafka_internals.take_seeks(consumer))
    order.floor(kafka_internals.committed_offsets(consumer))
    gap = functools.partial(kafka_internals.gap_reported, consumer)
    ready, held, again = order.split(batch, gap, time.monotonic())
    if again:
        consumer.read_again_from(again, "never reached the agent, which got later ones")
    for event in (*held, *gone):
        m.RECORDS_HELD.labels(topic=event.message.topic).inc()
    return ready


async def _dead_letter(
    topic: str, partition: int, offset: int, key: bytes | None, raw: bytes | None, rej: Rejection
) -> None:
    """Send one dead letter with the record's coordinates; count it by topic and reason."""
    poison.count(topic, partition, offset, rej)
    now_ms = int(time.time() * 1000)
    await _send(
        settings.dlq_topic,
        key,
        dead_letter(raw, rej, topic=topic, partition=partition, offset=offset, now_ms=now_ms),
    )


class _WorkerHooks:
    """The durability layer and the profile table, as the batch core sees them."""

    admit = staticmethod(durable.admit)
    bind = staticmethod(store.bind)
    before_event = staticmethod(durable.before_event)

    @staticmethod
    def reordered(msg: Any, user_id: str) -> bool:
        # This process's ledger, or the row: a row written by a later record of the
        # partition (by a worker that was then killed or lost the partition) means the
        # consumer reordered this one, across the restart.
        return durable.reordered(msg) or store.written_after(user_id, msg.offset)


async def handle_batch(batch: list) -> None:
    """Run the batch core (worker/batch_core.py), then publish what it produced, in order."""
    started = time.perf_counter()
    out = process_batch(batch, engine, _WorkerHooks, health, int(time.time() * 1000))
    for dl in out.dead_letters:
        await _dead_letter(dl.topic, dl.partition, dl.offset, dl.key, dl.raw, dl.rejection)
    for key, record in out.title_records:
        await _send(settings.title_events_topic, key, record)
    if engine.artwork is not None and engine.artwork.log:
        decisions, engine.artwork.log[:] = list(engine.artwork.log), []
        for rec in decisions:
            await _send(settings.artwork_decisions_topic, None, orjson.dumps(rec))
    if _sink is not None:
        await _sink.write([(s.user_id, s.blob) for s in out.scores])
    written_ms = time.time() * 1000
    for s in out.scores:
        headers = [(TRACEPARENT_HEADER, s.trace.encode())] if s.trace is not None else None
        await _send(settings.scores_topic, s.user_id.encode(), s.blob, headers)
        m.FRESHNESS_SECONDS.observe(max(0.0, (written_ms - s.event_ts) / 1000))
    if _features is not None and out.touched:
        await _features.write_users((u, store[u]) for u in out.touched)
    if _features is not None and engine.experiment_fold is not None and engine.experiments:
        # Per-arm sums of the partitions this batch changed: what GET /experiments/{id} reads.
        await _features.write_experiments(
            engine.experiment_fold, engine.experiments.experiments, int(time.time() * 1000)
        )
    # Title records must be on the broker before the profiles that remember their event ids
    # are written: a crash in between replays them, and the title side skips the replay.
    await drain(app.producer)
    evicted = store.evicted
    store.flush()
    # And the rows' changelog records must be on the broker before the batch's offsets can
    # be committed (the messages are released when this returns): Faust commits without
    # waiting for table writes, and a partition handed over in between was recovered by
    # its next owner without them while the commit said they were done.
    await drain(app.producer)
    expiry.observe(out.event_time)
    m.USER_CACHE_EVICTIONS.inc(store.evicted - evicted)
    _count(out, len(batch), time.perf_counter() - started)


def _count(out: BatchOutput, records: int, elapsed: float) -> None:
    m.TITLE_RECORDS_FORWARDED.inc(len(out.title_records))
    m.SCORE_REFRESHES.inc(len(out.scores))
    m.REFRESHES_DEBOUNCED.inc(out.debounced)
    m.DUPLICATES_DROPPED.inc(out.duplicates)
    m.TABLE_ENTRIES.labels(table="user-profiles").set(len(store.cache))
    # Per batch: a labelled inc per event costs ~1.5 %.
    for reason, n in out.rejected.items():
        m.EVENTS_REJECTED.labels(reason=reason).inc(n)
    for reason, n in out.time_rejects.items():
        m.EVENT_TIME_REJECTS.labels(reason=reason).inc(n)
    for etype, n in out.consumed.items():
        m.EVENTS_CONSUMED.labels(event_type=etype).inc(n)
    for etype, n in out.updated.items():
        m.FEATURE_UPDATES.labels(event_type=etype).inc(n)
    n_events = out.consumed.total()
    if n_events:
        m.FEATURE_UPDATE_SECONDS.observe(out.feature_s / n_events)
        m.EVENT_SECONDS.observe(elapsed / n_events)
    m.BATCH_SECONDS.observe(elapsed)
    # Counted last, so a reader that sees N records consumed sees all their effects too.
    m.RECORDS_CONSUMED.inc(records)


@app.agent(title_events_topic)
async def process_title_events(stream: faust.StreamT) -> None:
    """The title owner: fold compact records into the ``title-stats`` table, exactly once."""
    async for batch in stream.take_events(settings.batch_max, within=settings.batch_within_s):
        # As in process_events: offsets are released only once the batch's stats rows are
        # written and their changelog records are on the broker. Without it a rebalance that
        # closed the stream mid-batch committed offsets whose records were never folded in,
        # and the next owner skipped them (plays missing from title statistics after
        # join/leave churn, tests/integration/test_fault_join_leave.py).
        for event in batch:
            event.message.incref()
        batch = _in_order(batch)  # the per-source high-water mark below needs the order
        await _fold_title_records(batch)
        for event in batch:
            event.message.decref()
        progress.note(batch)


async def _fold_title_records(batch: list) -> None:
    """Fold one batch of title records into the stats table (idempotent by source)."""
    applied = replayed = 0
    for event in batch:
        msg = event.message
        rej = poison.rejection(msg.headers)
        if rej is None:
            try:
                title_store.bind(event)
                rec = orjson.loads(event.value)
                src = rec.pop("src", None)
                stats = title_store.get(rec["t"], event)
                if stats.update(rec, tuple(src) if src else None):
                    applied += 1
                else:
                    replayed += 1
            except Exception as exc:  # one bad record must not stop the title owner
                rej = poison.processing_error(exc)
        if rej is not None:
            await _dead_letter(msg.topic, msg.partition, msg.offset, msg.key, event.value, rej)
    title_store.flush()
    await drain(app.producer)
    m.TITLE_RECORDS_APPLIED.labels(outcome="applied").inc(applied)
    m.TITLE_RECORDS_APPLIED.labels(outcome="replayed").inc(replayed)
    m.TABLE_ENTRIES.labels(table="title-stats").set(len(title_store.cache))


TITLE_PUBLISH_CHUNK = 500  # titles per block of the publisher (about 20 ms at 40 µs each)


@app.timer(settings.title_publish_interval_s)
async def publish_titles() -> None:
    """Snapshots of changed titles to the compacted topic and Redis; trending from one worker.

    In chunks, yielding to the event loop between them: at 50,000 titles a second of live
    traffic changes a few thousand titles (about 40 µs each), and a republish after a
    rebalance all of them; in one block that stalled the batches behind it."""
    if title_store.republish_all and tables_settled():
        title_store.republish_all = False
        title_store.changed.update(titles_table.keys())
    todo = len(title_store.changed)  # what changes meanwhile waits for the next tick
    while todo > 0:
        changed = title_store.take_changed(min(todo, TITLE_PUBLISH_CHUNK))
        todo -= TITLE_PUBLISH_CHUNK
        for title_id, stats in changed:
            snap = orjson.dumps(stats.snapshot())
            await _send(settings.title_snapshots_topic, title_id.encode(), snap)
        if _features is not None and changed:
            await _features.write_titles(changed)
            m.TITLE_SNAPSHOTS_PUBLISHED.inc(len(changed))
        await asyncio.sleep(0)  # a batch waiting for the loop runs between chunks
    if _features is None:
        return
    tp0 = faust.types.TP(settings.title_events_topic, 0)
    if tp0 in app.consumer.assignment() and title_view.snapshots:
        as_of = title_view.high_water
        await _features.write_trending((c, w, as_of, top) for c, w, top in title_view.lists(20))


@web_lockdown.debug_page(app, settings.debug_token, "/debug/title-exchange")
async def title_exchange_view(web, request):  # type: ignore[no-untyped-def]
    """What this worker's title-side models hold from which peer (docs/models.md)."""
    body = {"enabled": False}
    if title_exchange is not None:
        body = title_exchange.debug(detail=request.query.get("detail") == "1")
    return web.bytes(orjson.dumps(body), content_type="application/json")


@app.page("/metrics")
async def metrics_view(web, request):  # type: ignore[no-untyped-def]
    return web.bytes(generate_latest(m.REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0])


# The HTTP API (/recommendations, /users, /titles, /trending, /healthz, /readyz) and the
# periodic lag and table-size gauges: streams/api/web.py, streams/worker/monitor.py.
api = web_api.Api(
    app, settings, engine, store, follower.ready, web_api.connect_api(settings.redis_url)
)
api.serving = lambda: _recovery.status() if _recovery is not None else None
web_api.register(app, api)
# Released titles' results, learned online by the forecaster behind POST /forecast
# (docs/catalog-intelligence.md, "Greenlight forecasts in the running system").
results_follower = ResultsFollower(settings, api.forecast, _reject)


@app.task
async def follow_title_results() -> None:
    await ensure_topics_async(settings)
    await results_follower.run()


def _describe_stall(partitions: set[str]) -> str:
    """What the stall report adds: flow control, the assignment, every task's stack."""
    assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
    return (
        f"flow control active: {app.flow_control.is_active()}; rebalancing: "
        f"{app.rebalancing}; table recovery: {app.in_recovery}; assigned: {assigned}; "
        f"asyncio tasks:\n{diagnostics.task_stacks()}"
    )


worker_monitor = monitor.register(
    app,
    settings.events_topic,
    {"user-profiles": profiles_table, "title-stats": titles_table},
    settings.stall_s,
    _describe_stall,
    watched_topics=(settings.title_events_topic,),
    progress=progress,
)
api.stalled = lambda: worker_monitor.stalled


@app.task
async def _signal_dump() -> None:
    diagnostics.install_signal_dump()  # kill -USR2 <pid>: task stacks to the log


if settings.loop_blocked_s > 0:

    @app.task
    async def _watch_the_loop() -> None:
        await loop_watch.LoopWatch(settings.loop_blocked_s).run()


# Pauses timed; young generation sized; full collections on a timer, survivors frozen.
gc_pauses.install(settings.gc_young_threshold, scheduled_full=settings.gc_full_every_s > 0)
if settings.gc_full_every_s > 0:
    gc_sweeps = gc_pauses.TimedCollections(settings.gc_thaw_every_s)

    @app.timer(settings.gc_full_every_s)
    async def collect_full_garbage() -> None:
        gc_sweeps.tick()
