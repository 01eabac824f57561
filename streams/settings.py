"""Runtime configuration, read once from ``REELSTREAM_*`` environment variables.

One frozen object so the worker, the CLI, the demo and the tests agree on names.
Secrets (SASL password, Redis password) come only from the environment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
COMPRESSION_TYPES = frozenset({"none", "gzip", "snappy", "lz4", "zstd"})


def _env(name: str, default: str) -> str:
    return os.environ.get(f"REELSTREAM_{name}", default)


@dataclass(frozen=True)
class Settings:
    """Every knob, with its default and its environment variable ``REELSTREAM_<NAME>``."""

    broker: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    app_id: str = "reelstream"
    events_topic: str = "playback-events"
    catalog_topic: str = "catalog"
    scores_topic: str = "recommendation-scores"
    dlq_topic: str = "playback-events.dlq"
    partitions: int = 4
    key_prefix: str = "rs"
    top_k: int = 20
    score_ttl_s: int = 7 * 24 * 3600
    data_dir: str = "./data"
    web_port: int = 6066
    # The API binds loopback unless told otherwise: a worker started by hand is not
    # reachable from the network. Deploy files set it explicitly (0.0.0.0 behind a
    # NetworkPolicy in Kubernetes; see docs/operations.md, "Exposure").
    web_host: str = "127.0.0.1"
    # `reelstream api`, the separate serving process (streams/api/serving.py): its own
    # address, loopback unless told otherwise like the worker's; deploy files set the host.
    api_host: str = "127.0.0.1"
    api_port: int = 6067
    # Debug pages (/debug/...) are served only when this is set, and answer only requests
    # presenting it as ``Authorization: Bearer <token>`` (streams/api/web_lockdown.py).
    debug_token: str = field(default="", repr=False)
    # Every topic this app creates, changelogs included: replicas and the in-sync replicas
    # an acks=all write needs. 1/1 for the single local broker; deploy files use 3/2.
    replication_factor: int = 1
    min_insync_replicas: int = 1
    # Kafka security: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    # Batching: at most this many events, or this long, per processing step. 20 ms, not
    # 50: freshness p99 at half load 306 -> 180 ms for 7 % more CPU per live event
    # (docs/performance.md, "Freshness at 10,000 and 50,000 titles").
    batch_max: int = 1000
    batch_within_s: float = 0.02
    # Longest wait of a fetch for more data (Faust's own is 1500 ms; see kafka_internals).
    fetch_max_wait_ms: int = 100
    log_level: str = "WARNING"
    # An events partition with records to read and none read for this long is a stall:
    # logged with diagnostics, and /healthz fails so the worker is restarted (0: off).
    stall_s: float = 60.0
    # Container allocations between young garbage collections (0: CPython's 700). 20,000
    # makes full collections (each a pause) rare and cut freshness p99 by a quarter, but
    # tripled memory growth in a soak: streams/worker/gc_pauses.py, docs/performance.md.
    gc_young_threshold: int = 0
    # Full (generation-2) collections on this period, not whenever CPython's promotion
    # rule asks (every few seconds under load, each a 0.1-0.3 s pause over the whole
    # heap that lands in the freshness tail). 0: CPython's rule.
    gc_full_every_s: float = 2.0
    # With the timer, what survives a timed collection is frozen (gc.freeze), so the
    # next one walks only what was promoted since: milliseconds, not a heap walk. Once
    # per this period the frozen heap is thawed and collected (one whole-heap pause) to
    # free cycles formed among frozen objects. 0: no freezing. streams/worker/gc_pauses.py.
    gc_thaw_every_s: float = 3600.0
    # An event loop held this long is logged once with the Python stack that holds it
    # (streams/worker/loop_watch.py). 0: off.
    loop_blocked_s: float = 1.0
    # Compression of every record this project produces (events, scores, dead letters,
    # internal topics): none, gzip, snappy, lz4 or zstd. snappy costs the least CPU on
    # the small batches of live traffic (aiokafka compresses lz4 at level 9, LZ4HC:
    # 3-8x snappy's CPU); zstd packs 2.7x tighter than snappy (README, Configuration).
    compression: str = "snappy"
    # Online features: TTL of an inactive user's Redis features hash; snapshot period.
    feature_ttl_s: int = 30 * 24 * 3600
    # Scores held per worker while Redis does not answer (latest per user; oldest users
    # dropped past this, still on the score topic): docs/operations.md, "Redis lost".
    redis_pending_max: int = 100_000
    title_publish_interval_s: float = 1.0
    # Bounded memory (docs/operations.md, "Memory"): user records (rows of the
    # user-profiles table) kept decoded in the worker's write-back cache, least recently
    # used evicted past this; per-user in-memory maps elsewhere (last top-K per viewer for
    # the hit rate, experiment arm labels) are held to the same size.
    user_cache: int = 20_000
    # A user's record is deleted (a tombstone in the table's changelog) once the user has
    # had no event for this long, in event time (0: never); the sweep reads at most
    # user_expiry_scan rows per second, so batches keep flowing, and rests
    # user_expiry_pause_s after each pass over the worker's partitions.
    user_ttl_s: int = 180 * 24 * 3600
    user_expiry_scan: int = 2000
    user_expiry_pause_s: float = 600.0
    # RocksDB memory per table partition this worker holds (docs/operations.md, "Memory"):
    # write buffers (two of this size) and the block cache. Faust's defaults are 3 x 64 MB
    # and 2 GB per partition: a worker's RSS would grow with the data read back.
    rocksdb_write_buffer_mb: int = 8
    rocksdb_block_cache_mb: int = 8
    # Model checkpoints (docs/models.md, "Durability"): every this many seconds or
    # learned records, whichever comes first; the worker id names its shared state
    # (default: host name and web port, stable for a StatefulSet pod).
    checkpoint_interval_s: float = 30.0
    checkpoint_events: int = 50_000
    # Seconds a checkpoint round's encode and write wait per second of their own work,
    # so batches keep their pace meanwhile (docs/performance.md, "The checkpoint off the
    # batch path"): 1 is at most half the event loop, 3 at most a quarter.
    checkpoint_pace: float = 1.0
    worker_id: str = ""
    # Title-side exchange between workers (docs/models.md, "Title factors across workers"):
    # publish this worker's contribution and merge its peers' every this many seconds
    # (0 turns the exchange off); merge rules for MF title factors and the ranker.
    exchange_interval_s: float = 5.0
    exchange_factors: str = "sum"
    exchange_ranker: str = "blend"
    # Artwork per viewer (docs/artwork-and-experiments.md): off, ts or ucb; uniform floor.
    artwork_policy: str = "off"
    artwork_floor: float = 0.03
    # Experiments config (TOML or YAML); empty: no experiments, experiment_arm stays null.
    experiments_file: str = ""
    # Catalog intelligence (docs/catalog-intelligence.md). A forecaster state written by
    # `reelstream forecast train` (empty: POST /forecast answers 503), and a synopsis
    # tagger written by `reelstream tags train` (empty: no tagging on catalog arrival).
    forecast_state: str = ""
    tagger_file: str = ""

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.key_prefix):
            raise ValueError(
                f"REELSTREAM_KEY_PREFIX={self.key_prefix!r}: use 1-32 of [A-Za-z0-9_.-]"
            )
        if self.partitions < 1:
            raise ValueError("REELSTREAM_PARTITIONS must be >= 1")
        if not 1 <= self.min_insync_replicas <= self.replication_factor:
            raise ValueError(
                "REELSTREAM_MIN_INSYNC_REPLICAS must be from 1 to REELSTREAM_REPLICATION_FACTOR"
            )
        if self.user_cache < 1:
            raise ValueError("REELSTREAM_USER_CACHE must be >= 1")
        if self.rocksdb_write_buffer_mb < 1 or self.rocksdb_block_cache_mb < 1:
            raise ValueError("REELSTREAM_ROCKSDB_WRITE_BUFFER_MB and _BLOCK_CACHE_MB must be >= 1")
        if self.user_ttl_s < 0 or self.user_expiry_scan < 1:
            raise ValueError("REELSTREAM_USER_TTL_S must be >= 0, REELSTREAM_USER_EXPIRY_SCAN >= 1")
        if self.checkpoint_pace < 0:
            raise ValueError("REELSTREAM_CHECKPOINT_PACE must be >= 0")
        if self.compression not in COMPRESSION_TYPES:
            raise ValueError(
                f"REELSTREAM_COMPRESSION={self.compression!r}: one of {sorted(COMPRESSION_TYPES)}"
            )
        for name in ("forecast_state", "tagger_file"):
            value = getattr(self, name)
            if "\x00" in value or len(value) > 4096:
                raise ValueError(f"REELSTREAM_{name.upper()}: not a usable file path")
        if self.security_protocol not in {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}:
            raise ValueError(f"unknown REELSTREAM_SECURITY_PROTOCOL {self.security_protocol!r}")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Defaults, overridden by the environment, overridden by ``overrides``."""
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(f"REELSTREAM_{f.name.upper()}")
            if raw is None:
                continue
            if f.type in ("int", int):
                values[f.name] = int(raw)
            elif f.type in ("float", float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def title_events_topic(self) -> str:
        """Title-keyed repartition topic of compact title-side records (docs/architecture.md)."""
        return f"{self.app_id}-title-events"

    @property
    def title_snapshots_topic(self) -> str:
        """Compacted topic of each title's latest statistics snapshot, read by every worker."""
        return f"{self.app_id}-title-snapshots"

    @property
    def artwork_decisions_topic(self) -> str:
        """Artwork decision log: context, variants offered, choice, propensity (per decision)."""
        return f"{self.app_id}-artwork-decisions"

    @property
    def title_results_topic(self) -> str:
        """Compacted topic of released titles' 28-day results, learned by every worker's
        greenlight forecaster (streams/adapters/results_follower.py)."""
        return f"{self.app_id}-title-results"

    @property
    def experiment_allocation_topic(self) -> str:
        """Compacted topic of bandit experiments' shares and kill switches, followed by every
        worker (streams/adapters/allocation_follower.py)."""
        return f"{self.app_id}-experiment-allocation"

    @property
    def resolved_worker_id(self) -> str:
        if self.worker_id:
            return self.worker_id
        import socket

        return f"{socket.gethostname()}-{self.web_port}"

    @property
    def checkpoint_topic(self) -> str:
        """Compacted topic of model checkpoints (streams/worker/checkpoints.py)."""
        return f"{self.app_id}-model-checkpoints"

    @property
    def title_contributions_topic(self) -> str:
        """Compacted topic of each worker's title-side contribution, one partition per title
        shard (streams/adapters/title_exchange.py)."""
        return f"{self.app_id}-title-contributions"

    @property
    def title_global_topic(self) -> str:
        """Compacted topic of each title shard's global snapshot, read whole by every worker
        (streams/adapters/title_exchange.py)."""
        return f"{self.app_id}-title-global"

    def isolated(self, name: str, **overrides: object) -> Settings:
        """A copy whose topics, consumer group and Redis prefix all carry ``name``.

        Tests and the benchmark share one broker and one Redis with everything else;
        this keeps a run's data apart and easy to delete.
        """
        values: dict[str, object] = {
            "app_id": name,
            "events_topic": f"{name}-events",
            "catalog_topic": f"{name}-catalog",
            "scores_topic": f"{name}-scores",
            "dlq_topic": f"{name}-events.dlq",
            "key_prefix": name.replace("-", ""),
        }
        values.update(overrides)
        return replace(self, **values)  # type: ignore[arg-type]

    def rocksdb_options(self) -> dict[str, int]:
        """Faust's RocksDB options for one table (a new dict each call: Faust pops from it)."""
        return {
            "write_buffer_size": self.rocksdb_write_buffer_mb << 20,
            "max_write_buffer_number": 2,
            "block_cache_size": self.rocksdb_block_cache_mb << 20,
            "block_cache_compressed_size": self.rocksdb_block_cache_mb << 20,
        }

    def topic_configs(self) -> dict[str, str]:
        """Topic configuration every topic of this app gets, whoever creates it."""
        return {"min.insync.replicas": str(self.min_insync_replicas)}

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def compression_type(self) -> str | None:
        """The producers' ``compression_type`` (None for no compression)."""
        return None if self.compression == "none" else self.compression

    def kafka_client_kwargs(self) -> dict[str, object]:
        """Connection options shared by every aiokafka client we create."""
        kwargs: dict[str, object] = {
            "bootstrap_servers": self.broker,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile or None,
                certfile=self.ssl_certfile or None,
                keyfile=self.ssl_keyfile or None,
            )
        if self.security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs


def stack_dir() -> Path:
    """Where the local stack keeps jars, data, logs and pid files (git-ignored)."""
    return Path(_env("STACK_DIR", ".stack")).resolve()
