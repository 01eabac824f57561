"""Durable learning, the pure part: model state export/import, chunk framing, replay rules.

The worker (``streams/worker/checkpoints.py``) owns the Kafka I/O; everything here is
plain Python/numpy so it can be unit-tested and reused by ``reelstream replay``.

Everything keyed by user (features, gate, and the models' per-user state,
online_models/user_state.py) is one record in the profile table, made durable by
the table's changelog; nothing of it is in a checkpoint. Checkpoints hold the
**per-worker shared state** -- MF title factors, co-watch, sequence, trending,
popularity, ranker weights and its prequential counters, random generator states,
keyed by title id so a worker whose catalog is numbered differently restores them --
and, per events partition, the offset it covers (docs/models.md, "Durability").

A checkpoint blob is the :mod:`online_models.checkpoint` codec (orjson + typed numpy
arrays, never pickle); it is cut into chunks below Kafka's default 1 MB record
limit and reassembled only if every chunk is present, carries the expected
generation and the whole blob's SHA-256 matches the manifest.

>>> blob = bytes(range(256)) * 10
>>> man, chunks = split_blob(blob, gen=3, chunk_size=1000)
>>> len(chunks), man["chunks"], man["size"]
(3, 3, 2560)
>>> assemble(man, [parse_chunk(c) for c in chunks]) == blob
True
"""

from __future__ import annotations

import hashlib
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from online_models.checkpoint import MAX_BYTES, CheckpointError, OffsetLedger
from online_models.ranker import STATS_WINDOW, PrequentialStats
from online_models.recommender import Recommender

CHUNK_MAGIC = b"RSC1"
CHUNK_SIZE = 900_000  # below Kafka's default max.message.bytes (1 MB) with headroom
MANIFEST_FORMAT = "reelstream-checkpoint-manifest"
MANIFEST_VERSION = 1
STATS_TAIL = STATS_WINDOW  # prequential predictions kept in a checkpoint (for rolling AUC)


# --- chunk framing -------------------------------------------------------------------


def split_blob(blob: bytes, gen: int, chunk_size: int = CHUNK_SIZE) -> tuple[dict, list[bytes]]:
    """(manifest fields, chunk records) for one blob; a chunk is magic, header, data."""
    if len(blob) > MAX_BYTES:
        raise CheckpointError(f"checkpoint of {len(blob)} bytes is above {MAX_BYTES}")
    n = max(1, -(-len(blob) // chunk_size))
    chunks = []
    for i in range(n):
        part = blob[i * chunk_size : (i + 1) * chunk_size]
        header = struct.pack(">QII", gen, i, n)
        chunks.append(CHUNK_MAGIC + header + part)
    manifest = {
        "gen": gen,
        "chunks": n,
        "size": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    return manifest, chunks


def parse_chunk(raw: bytes | None) -> tuple[int, int, int, bytes]:
    """(generation, index, count, data) of one chunk record."""
    if not isinstance(raw, bytes | bytearray) or len(raw) < 20 or raw[:4] != CHUNK_MAGIC:
        raise CheckpointError("not a checkpoint chunk")
    gen, i, n = struct.unpack(">QII", raw[4:20])
    if n == 0 or i >= n:
        raise CheckpointError("chunk index out of range")
    return gen, i, n, bytes(raw[20:])


def assemble(manifest: dict, chunks: list[tuple[int, int, int, bytes]]) -> bytes:
    """The blob a manifest describes, from its chunks; any mismatch is a CheckpointError."""
    n, size, gen = manifest.get("chunks"), manifest.get("size"), manifest.get("gen")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (n, size, gen)):
        raise CheckpointError("manifest needs integer gen, chunks and size")
    if size < 0 or size > MAX_BYTES or n < 1 or n > max(1, size):
        raise CheckpointError("manifest size or chunk count out of range")
    parts: dict[int, bytes] = {}
    for cgen, i, cn, data in chunks:
        if cgen == gen and cn == n:
            parts[i] = data
    if len(parts) != n:
        raise CheckpointError(f"{n - len(parts)} of {n} chunks of generation {gen} missing")
    blob = b"".join(parts[i] for i in range(n))
    if len(blob) != size or hashlib.sha256(blob).hexdigest() != manifest.get("sha256"):
        raise CheckpointError("checkpoint chunks do not match the manifest's size and SHA-256")
    return blob


def validate_manifest(doc: Any) -> dict:
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise CheckpointError("not a checkpoint manifest")
    if doc.get("v") != MANIFEST_VERSION:
        raise CheckpointError(f"unsupported manifest version {doc.get('v')!r}")
    for k in ("gen", "chunks", "size", "created_ms"):
        v = doc.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise CheckpointError(f"manifest field {k} must be a non-negative integer")
    if not isinstance(doc.get("sha256"), str):
        raise CheckpointError("manifest sha256 must be text")
    shared = doc.get("shared")
    if shared is not None and not (
        isinstance(shared, dict)
        and isinstance(shared.get("worker"), str)
        and isinstance(shared.get("gen"), int)
        and shared.get("slot") in (0, 1)
    ):
        raise CheckpointError("manifest shared reference is malformed")
    return doc


# --- helpers -------------------------------------------------------------------------


def _rng_state(rng: np.random.Generator) -> dict:
    st = rng.bit_generator.state
    if st.get("bit_generator") != "PCG64":
        raise CheckpointError("only PCG64 generators are checkpointed")
    return {
        "state": str(st["state"]["state"]),
        "inc": str(st["state"]["inc"]),
        "has_uint32": int(st["has_uint32"]),
        "uinteger": int(st["uinteger"]),
    }


def _load_rng(rng: np.random.Generator, st: dict) -> None:
    try:
        state = {
            "bit_generator": "PCG64",
            "state": {"state": int(str(st["state"])), "inc": int(str(st["inc"]))},
            "has_uint32": int(st["has_uint32"]),
            "uinteger": int(st["uinteger"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"bad generator state: {exc}") from None
    rng.bit_generator.state = state


def _remap(rec: Recommender, ids: list[str]) -> np.ndarray:
    """Current row of each checkpointed title id (-1 when the catalog no longer has it)."""
    index = rec.titles.index
    return np.array([index.get(t, -1) for t in ids], dtype=np.int64)


def _place(arr: np.ndarray, m: np.ndarray, n: int) -> np.ndarray:
    """Checkpoint rows ``arr`` placed at the current rows ``m`` of an ``n``-row array."""
    out = np.zeros((n, *arr.shape[1:]), dtype=arr.dtype)
    ok = m >= 0
    out[m[ok]] = arr[: len(m)][ok]
    return out


def _check_array(x: Any, name: str, ndim: int) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != ndim:
        raise CheckpointError(f"{name} must be a {ndim}-d array")
    return x


# --- per-worker shared state ---------------------------------------------------------


def _pair_rows(st: dict, m: np.ndarray, name: str) -> dict[int, dict[int, float]]:
    """Title-pair rows stored as flat arrays, renumbered to this catalog (``m``)."""
    keys = m[_check_array(st["row_keys"], f"{name} keys", 1)]
    cols = m[_check_array(st["cols"], f"{name} cols", 1)]
    lens = _check_array(st["row_lens"], f"{name} lens", 1)
    if int(lens.sum()) != len(cols) or len(lens) != len(keys):
        raise CheckpointError(f"{name} rows do not add up")
    row_of = np.repeat(keys, lens)
    keep = (row_of >= 0) & (cols >= 0)
    rows: dict[int, dict[int, float]] = {}
    for a, b, v in zip(
        row_of[keep].tolist(), cols[keep].tolist(), st["vals"][keep].tolist(), strict=True
    ):
        rows.setdefault(a, {})[b] = v
    return rows


def export_shared(rec: Recommender) -> dict:
    rec.titles.sync()
    r = rec.ranker
    stats = {}
    for name, s in r.stats.items():
        preds, labels = s.tail(STATS_TAIL)
        stats[name] = {
            "n": s.n,
            "loss": s.loss,
            "preds": np.asarray(preds, dtype=np.float64),
            "labels": np.asarray(labels, dtype=bool),
        }
    return {
        "ids": list(rec.titles.ids),
        "mf": {**rec.mf.title_state(), "rng": _rng_state(rec.mf.rng)},
        "rng": _rng_state(rec.rng),
        "cowatch": rec.cowatch.state(),
        "sequence": rec.sequence.state(),
        "trending": rec.trending.state(),
        "popular": rec.popular.state(),
        "exposure": rec.exposure.state(),
        "ranker": r.state(),
        "ranker_stats": stats,
        "learn_steps": rec.learn_steps,
        # The title-side exchange's bookkeeping (online_models/federation.py): this
        # worker's contribution and what the models hold from the other workers.
        "exchange": rec.exchange.state() if rec.exchange is not None else None,
    }


def import_shared(rec: Recommender, st: dict) -> None:
    """Replace the shared model state with a checkpointed one (rows remapped by title id)."""
    try:
        rec.titles.sync()
        n = rec.titles.n
        ids = st["ids"]
        if not isinstance(ids, list) or not all(isinstance(t, str) for t in ids):
            raise CheckpointError("shared state ids must be a list of title ids")
        m = _remap(rec, ids)
        mf = st["mf"]
        q = rec.mf.full_q(mf)
        if q.shape != (len(ids), rec.mf.k):
            raise CheckpointError(f"MF title factors of shape {q.shape}")
        rec.mf.resize(n)
        ok = m >= 0
        rec.mf.q[m[ok]] = q[ok]
        rec.mf.bias[m[ok]] = _check_array(mf["bias"], "mf bias", 1)[ok]
        rec.mf.updates[m[ok]] = _check_array(mf["updates"], "mf updates", 1)[ok]
        rec.mf.changed(m[ok])
        _load_rng(rec.mf.rng, mf["rng"])
        _load_rng(rec.rng, st["rng"])
        cw = dict(st["cowatch"])
        rec.cowatch.clock.ref_ts = cw["ref_ts"]
        rec.cowatch.rows = _pair_rows(cw, m, "co-watch")
        rec.cowatch.counts = _place(_check_array(cw["counts"], "cowatch counts", 1), m, n)
        rec.cowatch.n = n
        sq = st.get("sequence")  # absent in checkpoints from before the sequence model
        if sq is not None:
            ref = sq.get("ref_ts")  # absent or None: from before the half-life, or unused
            if ref is not None and (isinstance(ref, bool) or not isinstance(ref, int)):
                raise CheckpointError("sequence ref_ts must be an integer")
            if rec.sequence.clock is not None:
                rec.sequence.clock.ref_ts = ref
            rec.sequence.rows = _pair_rows(dict(sq), m, "sequence")
            rec.sequence.counts = _place(_check_array(sq["counts"], "sequence counts", 1), m, n)
            rec.sequence.n = n
        for name in ("trending", "popular"):
            tr = st[name]
            getattr(rec, name).load(
                {
                    "ref_ts": tr["ref_ts"],
                    "counts": {
                        str(c): _place(_check_array(a, f"{name} counts", 1), m, n)
                        for c, a in tr["counts"].items()
                    },
                }
            )
        ex = st.get("exposure")  # absent in checkpoints from before exposure-aware rows
        if ex is not None:
            rec.exposure.load(
                {
                    "shown": _place(_check_array(ex["shown"], "exposure shown", 1), m, n),
                    "demand": _place(_check_array(ex["demand"], "exposure demand", 1), m, n),
                    "total": float(ex["total"]),
                    "demand_total": float(ex["demand_total"]),
                }
            )
        rec.ranker.load(st["ranker"])
        for name, s in st["ranker_stats"].items():
            ps = rec.ranker.stats[name] = PrequentialStats(rec.ranker.stats_window)
            # The kept tail is re-added (River's metrics have no state to restore), so
            # after a restart the prequential metrics cover the last STATS_TAIL examples.
            for p, y in zip(s["preds"].tolist(), s["labels"].tolist(), strict=True):
                ps.add(float(p), bool(y))
        rec.learn_steps = int(st["learn_steps"])
        if rec.exchange is not None:
            if st.get("exchange") is not None:
                rec.exchange.load(st["exchange"])
            else:  # a checkpoint from before the exchange: all of it is this worker's own
                rec.exchange.adopt_all()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise CheckpointError(f"bad shared model state ({exc!r})") from None
    rec._ctx = None


# --- the worker's replay rules -------------------------------------------------------


@dataclass
class RestoredPartition:
    """A partition replayed from a checkpoint, until its replay range is passed."""

    offset: int  # the checkpoint's next offset: records below it are in the models
    end: int  # the partition's end offset at restore: no row can be ahead of it
    gen: int  # the checkpoint round: rows changed since hold their state as of it
    settled: set[str] = field(default_factory=set)  # users already put back


class ReplayGuard:
    """Decides, per record and per user, what is learned after a restore.

    * :meth:`admit`: False for a record the models already hold (below the
      checkpoint's offset, :class:`OffsetLedger`); such a record is skipped entirely.
    * :meth:`first_touch`: True at a user's first event in a replayed partition: the
      worker then puts the user's row back to its state as of the checkpoint round
      (the row keeps that state, ``TableProfileStore.rewind``), so features and models
      re-learn the replayed events together, each once.

    >>> g = ReplayGuard()
    >>> g.restored[0] = RestoredPartition(offset=10, end=15, gen=7)
    >>> g.ledger.offsets["ev:0"] = 10
    >>> g.admit("ev", 0, 9), g.admit("ev", 0, 10)
    (False, True)
    >>> g.first_touch(0, "u"), g.first_touch(0, "u"), g.first_touch(1, "u")
    (7, None, None)
    """

    def __init__(self) -> None:
        self.ledger = OffsetLedger()
        self.restored: dict[int, RestoredPartition] = {}
        self.events_since = 0

    def admit(self, topic: str, partition: int, offset: int) -> bool:
        if not self.ledger.take(topic, partition, offset):
            return False
        r = self.restored.get(partition)
        if r is not None and offset >= r.end:
            del self.restored[partition]  # past anything a row could hold: done
        return True

    def first_touch(self, partition: int, uid: str) -> int | None:
        """The checkpoint round to put ``uid``'s row back to, once per user (else None)."""
        r = self.restored.get(partition)
        if r is None or uid in r.settled:
            return None
        r.settled.add(uid)
        return r.gen

    def drop_partition(self, topic: str, partition: int) -> None:
        self.ledger.drop(OffsetLedger.key(topic, partition))
        self.restored.pop(partition, None)


@dataclass
class CheckpointPolicy:
    """A checkpoint is due every ``every_s`` seconds or ``every_events`` events, if any
    event was learned since the last one.

    >>> p = CheckpointPolicy(every_s=60, every_events=100, last=0.0)
    >>> p.due(10, now=1.0), p.due(100, now=1.0), p.due(1, now=61.0), p.due(0, now=999.0)
    (False, True, True, False)
    """

    every_s: float = 30.0
    every_events: int = 50_000
    last: float = field(default_factory=time.monotonic)

    def due(self, events_since: int, now: float | None = None) -> bool:
        if events_since <= 0:
            return False
        now = time.monotonic() if now is None else now
        return events_since >= self.every_events or now - self.last >= self.every_s
