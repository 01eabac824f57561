"""The Faust application: topics, the profile table, the agents and the web views.

Agents stay thin: decode, call the pure core (:class:`online_models.engine.Engine`),
emit. Settings are read from the environment when this module is imported.
"""

from __future__ import annotations

import logging
import time

import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from online_models.engine import Engine
from streams import metrics as m
from streams import monitor
from streams import web as web_api
from streams.catalog_follower import CatalogFollower
from streams.contract import dead_letter, decode_record
from streams.profile_store import TableProfileStore
from streams.redis_sink import ScoreSink, connect
from streams.settings import Settings

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


app = faust.App(
    settings.app_id,
    broker=f"kafka://{settings.broker}",
    broker_credentials=_credentials(settings),
    store="rocksdb://",
    datadir=settings.data_dir,
    topic_partitions=settings.partitions,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    web_host=settings.web_host,
    web_port=settings.web_port,
    web_in_thread=False,
    producer_linger_ms=5,
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
events_topic = app.topic(
    settings.events_topic,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
)
profiles_table = app.Table(
    "user-profiles",
    schema=faust.Schema(
        key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw"
    ),
    partitions=settings.partitions,
)

store = TableProfileStore(profiles_table)
engine = Engine(profiles=store, top_k=settings.top_k)
follower = CatalogFollower(settings, engine.catalog)
_sink: ScoreSink | None = None


async def _send(topic: str, key: bytes | None, value: bytes) -> None:
    try:
        await app.producer.send(topic, key, value, None, None, None)
    except Exception:
        m.KAFKA_SEND_ERRORS.labels(topic=topic).inc()
        raise


async def _reject_catalog(record: bytes) -> None:
    await _send(settings.dlq_topic, None, record)


follower.reject = _reject_catalog


@app.task
async def follow_catalog() -> None:
    await follower.run()


@app.on_partitions_revoked.connect
async def _on_revoked(app: faust.App, revoked: set, **kwargs: object) -> None:
    store.forget()


@app.agent(events_topic)
async def process_events(stream: faust.StreamT) -> None:
    global _sink
    _sink = ScoreSink(connect(settings.redis_url), settings.key_prefix, settings.score_ttl_s)
    await follower.ready.wait()
    async for batch in stream.take_events(settings.batch_max, within=settings.batch_within_s):
        await handle_batch(batch)


async def handle_batch(batch: list) -> None:
    """Validate, dead-letter, fold into the core, refresh each touched user once, publish."""
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    refresh: dict[str, int] = {}
    n_events = 0
    debounced = 0
    for event in batch:
        msg = event.message
        m.RECORDS_CONSUMED.inc()
        events, rejects = decode_record(event.value)
        for rej in rejects:
            m.EVENTS_REJECTED.labels(reason=rej.reason).inc()
            await _send(
                settings.dlq_topic,
                msg.key,
                dead_letter(
                    event.value,
                    rej,
                    topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                    now_ms=now_ms,
                ),
            )
        store.bind(event)
        for ev in events:
            n_events += 1
            m.EVENTS_CONSUMED.labels(event_type=ev["event_type"]).inc()
            if engine.apply(ev):
                uid = ev["user_id"]
                if uid in refresh:
                    debounced += 1
                refresh[uid] = max(ev["ts"], refresh.get(uid, 0))
    blobs = []
    for uid, ev_ts in refresh.items():
        blobs.append((uid, orjson.dumps(engine.score_message(uid, ev_ts, now_ms))))
    if _sink is not None:
        await _sink.write(blobs)
    written_ms = time.time() * 1000
    for uid, blob in blobs:
        await _send(settings.scores_topic, uid.encode(), blob)
        m.FRESHNESS_SECONDS.observe(max(0.0, (written_ms - refresh[uid]) / 1000))
    store.flush()
    m.SCORE_REFRESHES.inc(len(blobs))
    m.REFRESHES_DEBOUNCED.inc(debounced)
    m.PROFILES_CACHED.set(len(store.cache))
    elapsed = time.perf_counter() - started
    m.BATCH_SECONDS.observe(elapsed)
    if n_events:
        m.EVENT_SECONDS.observe(elapsed / n_events)


@app.page("/metrics")
async def metrics_view(web, request):  # type: ignore[no-untyped-def]
    return web.bytes(generate_latest(m.REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0])


# The HTTP API (/recommendations, /users, /titles, /trending, /healthz, /readyz) and the
# periodic lag and table-size gauges: streams/web.py, streams/monitor.py.
api = web_api.Api(
    app, settings, engine, store, follower.ready, web_api.connect_api(settings.redis_url)
)
web_api.register(app, api)
monitor.register(app, settings.events_topic, {"user-profiles": profiles_table})
