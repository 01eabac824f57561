"""Prometheus metrics the worker exports on /metrics (docs/metrics.md lists them).

Label values are bounded sets (event types, rejection reasons, topics): never ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_CONSUMED = Counter(
    "reelstream_events_consumed_total",
    "Valid events processed, by event type.",
    ["event_type"],
    registry=REGISTRY,
)
EVENTS_REJECTED = Counter(
    "reelstream_events_rejected_total",
    "Events sent to the dead-letter topic, by reason.",
    ["reason"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "reelstream_dead_letters_total",
    "Records of any topic a worker reads sent to the dead-letter topic, by source topic and "
    "reason (docs/event-contract.md lists the reasons).",
    ["topic", "reason"],
    registry=REGISTRY,
)
RECORDS_CONSUMED = Counter(
    "reelstream_records_consumed_total",
    "Kafka records of the events topic fully processed (counted after their batch).",
    registry=REGISTRY,
)
RECORDS_HELD = Counter(
    "reelstream_records_held_total",
    "Records an agent held back because earlier records of their partition had not reached "
    "it (the partition is read again from the first missing one), or because their partition "
    "was revoked while they waited in a batch (streams/worker/offset_order.py).",
    ["topic"],
    registry=REGISTRY,
)
SCORE_REFRESHES = Counter(
    "reelstream_score_refreshes_total", "Top-K lists recomputed and published.", registry=REGISTRY
)
REFRESHES_DEBOUNCED = Counter(
    "reelstream_refreshes_debounced_total",
    "Refresh requests folded into another refresh of the same user in one batch.",
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "reelstream_batch_processing_seconds",
    "Wall time to process one batch of records.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
EVENT_SECONDS = Histogram(
    "reelstream_event_processing_seconds",
    "Processing time per event (batch time divided by its events).",
    buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2),
    registry=REGISTRY,
)
FRESHNESS_SECONDS = Histogram(
    "reelstream_score_freshness_seconds",
    "From the triggering event's timestamp to its refreshed scores being written.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
GC_PAUSE_SECONDS = Histogram(
    "reelstream_gc_pause_seconds",
    "Pause of one garbage collection, by generation (2: full; no event is processed meanwhile).",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
    registry=REGISTRY,
)
EVENT_LOOP_LAG = Histogram(
    "reelstream_event_loop_lag_seconds",
    "How late a 100 ms beat on the worker's event loop ran (time the loop was held).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
EVENT_LOOP_BLOCKED = Counter(
    "reelstream_event_loop_blocked_total",
    "Times the event loop was held past REELSTREAM_LOOP_BLOCKED_S (each logged with a stack).",
    registry=REGISTRY,
)
GC_FROZEN_OBJECTS = Gauge(
    "reelstream_gc_frozen_objects",
    "Objects frozen by the timed full collections (walked again only at a thaw); once a minute.",
    registry=REGISTRY,
)
REDIS_ERRORS = Counter(
    "reelstream_redis_errors_total", "Failed Redis writes or reads.", ["op"], registry=REGISTRY
)
KAFKA_SEND_ERRORS = Counter(
    "reelstream_kafka_send_errors_total",
    "Failed Kafka sends, by topic role.",
    ["topic"],
    registry=REGISTRY,
)
CATALOG_TITLES = Gauge(
    "reelstream_catalog_titles", "Titles in this worker's catalog view.", registry=REGISTRY
)
# --- Catalog intelligence (issue 13; docs/catalog-intelligence.md) ---
CATALOG_TAGGED = Counter(
    "reelstream_catalog_tagging_total",
    "Catalog records through the synopsis tagger on arrival, by outcome: tagged (derived "
    "tags added), complete (editors tagged every dimension), unsure (no tag confident "
    "enough), no_synopsis, failed (the record kept its editorial tags; the worker log "
    "says why).",
    ["outcome"],
    registry=REGISTRY,
)
CATALOG_TAGGING_SECONDS = Histogram(
    "reelstream_catalog_tagging_seconds",
    "Time to derive one catalog record's tags from its synopsis (records that needed it).",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
    registry=REGISTRY,
)
TAGGER_LOADED = Gauge(
    "reelstream_catalog_tagger_loaded",
    "1 when the synopsis tagger of REELSTREAM_TAGGER_FILE is loaded, 0 otherwise.",
    registry=REGISTRY,
)
FORECAST_RESULTS = Counter(
    "reelstream_forecast_results_total",
    "Released titles' results read from the title-results topic, by outcome: learned, "
    "known (already in the state or learned), regions (refused: other regions than the "
    "model's), failed (the configured state file is unusable).",
    ["outcome"],
    registry=REGISTRY,
)
FORECASTER_TITLES = Gauge(
    "reelstream_forecaster_titles",
    "Released titles the greenlight forecaster has learned (0: no forecaster loaded).",
    registry=REGISTRY,
)

# --- Operations (issue 5): lag, tables, HTTP, model health. Label values stay bounded. ---
CONSUMER_STALLED = Gauge(
    "reelstream_consumer_stalled_partitions",
    "Events and title-events partitions of this worker with records to read and none "
    "read for REELSTREAM_STALL_S seconds (/healthz fails while above 0).",
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "reelstream_consumer_lag_records",
    "Records in an events-topic partition after the last one this worker read "
    "(only partitions assigned to this worker).",
    ["partition"],
    registry=REGISTRY,
)
TABLE_KEYS = Gauge(
    "reelstream_table_keys",
    "Keys in this worker's active partitions of a Faust table.",
    ["table"],
    registry=REGISTRY,
)
ROCKSDB_MEMORY = Gauge(
    "reelstream_rocksdb_memory_bytes",
    "RocksDB memory of this worker's active partitions of a Faust table, by kind: "
    "memtables (write buffers), table_readers (index and filter blocks), block_cache.",
    ["table", "kind"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "reelstream_http_request_duration_seconds",
    "HTTP API latency, by route template (never the raw path), method and status code.",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
READY = Gauge(
    "reelstream_ready",
    "1 when the last /readyz check passed (broker, Redis, table recovery, catalog).",
    registry=REGISTRY,
)
RANKER_AUC = Gauge(
    "reelstream_model_ranker_auc_ratio",
    "Rolling ROC AUC of the ranker on its most recent labelled impressions (0..1).",
    registry=REGISTRY,
)
RANKER_LOG_LOSS = Gauge(
    "reelstream_model_ranker_log_loss",
    "Rolling log loss of the ranker on its most recent labelled impressions.",
    registry=REGISTRY,
)
PREQUENTIAL_HIT_RATE = Gauge(
    "reelstream_model_prequential_hit_rate_ratio",
    "Rolling share of plays whose title was in the user's top-K just before (test-then-train).",
    registry=REGISTRY,
)
KAFKA_ERRORS = Counter(
    "reelstream_kafka_errors_total",
    "Failed Kafka requests other than sends (end offsets, metadata), by operation.",
    ["op"],
    registry=REGISTRY,
)
# --- Durable learning (docs/models.md, "Durability") ---
CHECKPOINTS_WRITTEN = Counter(
    "reelstream_checkpoints_written_total",
    "Model checkpoint rounds written (shared state and every owned partition).",
    registry=REGISTRY,
)
CHECKPOINTS_SKIPPED_EARLY = Counter(
    "reelstream_checkpoints_skipped_early_total",
    "Partition checkpoints not restored because the partition's records arrived first.",
    registry=REGISTRY,
)
CHECKPOINTS_RESTORED = Counter(
    "reelstream_checkpoints_restored_total",
    "Partition checkpoints restored on assignment.",
    registry=REGISTRY,
)
CHECKPOINTS_REJECTED = Counter(
    "reelstream_checkpoints_rejected_total",
    "Checkpoints refused on load (format, version, sizes, hash, missing chunks).",
    registry=REGISTRY,
)
CHECKPOINT_FAILURES = Counter(
    "reelstream_checkpoint_write_failures_total",
    "Checkpoint rounds whose write to Kafka failed (the round is written again when next due).",
    registry=REGISTRY,
)
CHECKPOINT_BYTES = Gauge(
    "reelstream_checkpoint_bytes",
    "Size of the last checkpoint round this worker wrote.",
    registry=REGISTRY,
)
CHECKPOINT_SECONDS = Histogram(
    "reelstream_checkpoint_duration_seconds",
    "Checkpoint time by operation: take (between batches), write (alongside them), restore.",
    ["op"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
REPLAY_RECORDS_SKIPPED = Counter(
    "reelstream_replay_records_skipped_total",
    "Records delivered again that the restored models already hold (not learned twice).",
    registry=REGISTRY,
)
PROFILES_REWOUND = Counter(
    "reelstream_profiles_rewound_total",
    "User profiles put back to their checkpointed state before a replay.",
    registry=REGISTRY,
)
# --- title-side exchange between workers (docs/models.md, "Title factors across workers")
TITLE_EXCHANGE_PUBLISHED = Counter(
    "reelstream_title_exchange_published_total",
    "Contributions (one record per title shard) this worker published.",
    registry=REGISTRY,
)
TITLE_EXCHANGE_MERGED = Counter(
    "reelstream_title_exchange_merged_total",
    "Title shards' global snapshots read by this worker, by outcome (merged, skipped: "
    "holds a part of this worker it does not know, rejected).",
    ["outcome"],
    registry=REGISTRY,
)
TITLE_EXCHANGE_BYTES = Gauge(
    "reelstream_title_exchange_bytes",
    "Size of this worker's last contribution, all shards' records.",
    registry=REGISTRY,
)
TITLE_EXCHANGE_SNAPSHOTS = Counter(
    "reelstream_title_exchange_snapshots_total",
    "Global snapshots of the title shards this worker aggregates, published.",
    registry=REGISTRY,
)
TITLE_EXCHANGE_PEERS = Gauge(
    "reelstream_title_exchange_peers",
    "Other workers whose contributions this worker's title-side models include.",
    registry=REGISTRY,
)

# NaN until the models report, so an alert on "AUC below x" cannot fire on a missing model.
for _g in (RANKER_AUC, RANKER_LOG_LOSS, PREQUENTIAL_HIT_RATE):
    _g.set(float("nan"))

# --- online features (issue 3; docs/features.md) ---------------------------------------
FEATURE_UPDATES = Counter(
    "reelstream_feature_updates_total",
    "Events folded into the online features, by event type.",
    ["event_type"],
    registry=REGISTRY,
)
FEATURE_UPDATE_SECONDS = Histogram(
    "reelstream_feature_update_seconds",
    "Time to admit and fold one event into the features (batch mean per event).",
    buckets=(2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3),
    registry=REGISTRY,
)
DUPLICATES_DROPPED = Counter(
    "reelstream_duplicates_dropped_total",
    "Events dropped because their event_id was already applied for the user (not dead letters).",
    registry=REGISTRY,
)
EVENT_TIME_REJECTS = Counter(
    "reelstream_event_time_rejects_total",
    "Events dead-lettered for their event time: too_late or from_future.",
    ["reason"],
    registry=REGISTRY,
)
TABLE_ENTRIES = Gauge(
    "reelstream_table_entries",
    "Entries of a state table held in this worker's write-back cache (memory).",
    ["table"],
    registry=REGISTRY,
)
USER_CACHE_EVICTIONS = Counter(
    "reelstream_user_cache_evictions_total",
    "User records dropped from the worker's cache, least recently used first "
    "(REELSTREAM_USER_CACHE); the next event of the user reads the row again.",
    registry=REGISTRY,
)
USERS_EXPIRED = Counter(
    "reelstream_users_expired_total",
    "User records deleted (tombstoned) after REELSTREAM_USER_TTL_S without an event.",
    registry=REGISTRY,
)
USER_EXPIRY_PASSES = Counter(
    "reelstream_user_expiry_passes_total",
    "Full passes of the expiry sweep over this worker's user-profiles partitions.",
    registry=REGISTRY,
)
TITLE_RECORDS_FORWARDED = Counter(
    "reelstream_title_records_forwarded_total",
    "Compact title-side records sent to the title-keyed repartition topic.",
    registry=REGISTRY,
)
TITLE_RECORDS_APPLIED = Counter(
    "reelstream_title_records_applied_total",
    "Title-side records folded into the title-stats table, by outcome (applied, replayed).",
    ["outcome"],
    registry=REGISTRY,
)
TITLE_SNAPSHOTS_PUBLISHED = Counter(
    "reelstream_title_snapshots_published_total",
    "Changed titles' snapshots published to the snapshot topic and Redis.",
    registry=REGISTRY,
)
TITLE_VIEW_TITLES = Gauge(
    "reelstream_title_view_titles",
    "Titles in this worker's global title view (from the snapshot topic).",
    registry=REGISTRY,
)

# --- Redis outages and catch-up (issue 11; docs/operations.md, "Redis lost or flushed") ---
REDIS_UP = Gauge(
    "reelstream_redis_up",
    "1 while this worker's Redis writes and checks succeed, 0 from a failure until one works.",
    registry=REGISTRY,
)
REDIS_UP.set(1)
REDIS_PENDING_SCORES = Gauge(
    "reelstream_redis_pending_scores",
    "Users whose latest scores are held for Redis, written when it answers again.",
    registry=REGISTRY,
)
REDIS_PENDING_DROPPED = Counter(
    "reelstream_redis_pending_dropped_total",
    "Held scores dropped because more users than REELSTREAM_REDIS_PENDING_MAX waited "
    "(they are still on the score topic; a rebuild restores them).",
    registry=REGISTRY,
)
REDIS_REBUILDS = Counter(
    "reelstream_redis_rebuilds_total",
    "Automatic rebuilds of the serving copy from the score topic after Redis lost its data "
    "(or started empty), by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
REDIS_REBUILDING = Gauge(
    "reelstream_redis_rebuilding",
    "1 while this worker rebuilds the serving copy from the score topic.",
    registry=REGISTRY,
)
