"""Durable learning, the pure part: model state export/import, chunk framing, replay rules.

The worker (``streams/worker/checkpoints.py``) owns the Kafka I/O; everything here is
plain Python/numpy so it can be unit-tested and reused by ``reelstream replay``.

State is split in two (docs/models.md, "Durability"):

* **per-partition user state**: for every user of an events-topic partition, the
  models' :class:`~online_models.recommender.UserState`, the MF user vector and
  update count, and the user's feature profile as of the checkpoint (so a replay
  after a crash can rewind a profile that the Faust table already holds further
  ahead). Title references are stored as title ids, not catalog row numbers, so a
  worker whose catalog is numbered differently restores them correctly.
* **per-worker shared state**: MF title factors, co-watch, trending, popularity,
  ranker weights and its prequential counters, random generator states. Also keyed
  by title id.

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
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.user_profile import UserProfile
from online_models.checkpoint import MAX_BYTES, CheckpointError, OffsetLedger
from online_models.ranker import PrequentialStats
from online_models.recommender import Recommender, UserState

CHUNK_MAGIC = b"RSC1"
CHUNK_SIZE = 900_000  # below Kafka's default max.message.bytes (1 MB) with headroom
MANIFEST_FORMAT = "reelstream-checkpoint-manifest"
MANIFEST_VERSION = 1
STATS_TAIL = 10_000  # prequential predictions kept in a checkpoint (for rolling AUC)


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


def _ids(rec: Recommender, idxs: Any) -> list[str]:
    ids = rec.titles.ids
    return [ids[i] for i in idxs]


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


# --- per-user state ------------------------------------------------------------------


def export_user(rec: Recommender, uid: str, profile: UserProfile | None) -> dict:
    st = rec.users.get(uid)
    out: dict[str, Any] = {"profile": profile.to_dict() if profile is not None else None}
    if st is not None:
        out["st"] = {
            "recent": _ids(rec, st.recent),
            "sequence": _ids(rec, st.sequence),
            "positives": dict(zip(_ids(rec, st.positives), st.positives.values(), strict=True)),
            "counts": [st.plays, st.completes, st.abandons, st.pauses, st.skips, st.episode_plays],
            "watched_s": st.watched_s,
            "device": st.device,
            "imp_ids": _ids(rec, rec.impression_rows(st)),
            "imp_x": np.stack(list(rec.impression_rows(st).values()))
            if st.impressions
            else np.zeros((0, len(rec.ranker.features)), dtype=np.float32),
            "impression_ts": st.impression_ts,
            "play_ids": _ids(rec, st.playing),
            "play_x": np.stack(list(st.playing.values()))
            if st.playing
            else np.zeros((0, len(rec.ranker.features)), dtype=np.float32),
            "last_pos": dict(zip(_ids(rec, st.last_pos), st.last_pos.values(), strict=True)),
            "seen": dict(zip(_ids(rec, st.seen), st.seen.values(), strict=True)),
            "liked": st.liked,
            "disliked": st.disliked,
        }
    p = rec.mf.users.get(uid)
    if p is not None:
        out["mf"] = {"p": p, "n": rec.mf.user_n.get(uid, 0)}
    return out


def import_user(rec: Recommender, uid: str, d: dict) -> dict | None:
    """Load one user's model state; returns the checkpointed profile dict (or None)."""
    if not isinstance(d, dict):
        raise CheckpointError("user state must be an object")
    ix = rec.titles.index
    s = d.get("st")
    if s is not None:
        try:
            st = UserState()
            st.recent = [ix[t] for t in s["recent"] if t in ix]
            st.sequence = [ix[t] for t in s.get("sequence", []) if t in ix]
            st.positives = {ix[t]: int(v) for t, v in s["positives"].items() if t in ix}
            (
                st.plays,
                st.completes,
                st.abandons,
                st.pauses,
                st.skips,
                st.episode_plays,
            ) = (int(v) for v in s["counts"])
            st.watched_s = float(s["watched_s"])
            st.device = s["device"] if isinstance(s["device"], str) else None
            nf = len(rec.ranker.features)
            for ids_key, x_key, target in (
                ("imp_ids", "imp_x", st.impressions),
                ("play_ids", "play_x", st.playing),
            ):
                x = _check_array(s[x_key], x_key, 2)
                if x.shape != (len(s[ids_key]), nf):
                    raise CheckpointError(f"{x_key} shape {x.shape} does not match")
                for t, row in zip(s[ids_key], x.astype(np.float32), strict=True):
                    if t in ix:
                        target[ix[t]] = row
            st.impression_ts = int(s["impression_ts"])
            st.last_pos = {ix[t]: float(v) for t, v in s["last_pos"].items() if t in ix}
            st.seen = {ix[t]: int(v) for t, v in s["seen"].items() if t in ix}
            st.liked = {str(k): float(v) for k, v in s["liked"].items()}
            st.disliked = {str(k): float(v) for k, v in s["disliked"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"user {uid}: bad model state ({exc!r})") from None
        rec.users[uid] = st
    mf = d.get("mf")
    if mf is not None:
        p = _check_array(mf.get("p"), "mf user vector", 1)
        if p.shape != (rec.mf.k,):
            raise CheckpointError(f"user {uid}: MF vector of shape {p.shape}")
        rec.mf.users[uid] = p.astype(np.float32)
        rec.mf.user_n[uid] = int(mf.get("n", 0))
    prof = d.get("profile")
    if prof is not None and not isinstance(prof, dict):
        raise CheckpointError(f"user {uid}: profile must be an object")
    rec._ctx = None
    return prof


def forget_users(rec: Recommender, uids: set[str]) -> None:
    """Drop the model state of users this worker no longer owns."""
    for uid in uids:
        rec.users.pop(uid, None)
        rec.mf.users.pop(uid, None)
        rec.mf.user_n.pop(uid, None)
    rec._ctx = None


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
        stats[name] = {
            "n": s.n,
            "loss": s.loss,
            "preds": np.asarray(s.preds[-STATS_TAIL:], dtype=np.float64),
            "labels": np.asarray(s.labels[-STATS_TAIL:], dtype=bool),
        }
    return {
        "ids": list(rec.titles.ids),
        "mf": {**rec.mf.title_state(), "rng": _rng_state(rec.mf.rng)},
        "rng": _rng_state(rec.rng),
        "cowatch": rec.cowatch.state(),
        "sequence": rec.sequence.state(),
        "trending": rec.trending.state(),
        "popular": rec.popular.state(),
        "ranker": r.state(),
        "ranker_stats": stats,
        "learn_steps": rec.learn_steps,
        # The title-side exchange's bookkeeping (online_models/federation.py): this
        # worker's contribution and the peers' contributions the models include.
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
        q = _check_array(mf["q"], "mf q", 2)
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
        rec.ranker.load(st["ranker"])
        for name, s in st["ranker_stats"].items():
            ps = rec.ranker.stats[name] = PrequentialStats()
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
    """What a restore left behind for one partition until its replay range is passed."""

    offset: int  # the checkpoint's next offset: records below it are in the models
    end: int  # the partition's end offset at restore: the table cannot be ahead of it
    profiles: dict[str, dict | None] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set)


class ReplayGuard:
    """Decides, per record and per event, what is learned after a restore.

    * :meth:`admit`: False for a record the models already hold (below the
      checkpoint's offset, :class:`OffsetLedger`); such a record is skipped entirely
      (its profile update and dead letters happened before the checkpoint too).
    * :meth:`rewind`: at a user's first event after the restore, the profile to put
      back so that features and models re-learn the replayed events from the state
      the checkpoint holds: the checkpoint's copy of the profile; for a user new since
      the checkpoint whose stored row is already past this record (the Faust table
      committed it before the crash), an empty profile; otherwise None (keep the row).

    >>> g = ReplayGuard()
    >>> g.restored[0] = RestoredPartition(offset=10, end=15, profiles={"u": {"events": 3}})
    >>> g.ledger.offsets["ev:0"] = 10
    >>> g.admit("ev", 0, 9), g.admit("ev", 0, 10)
    (False, True)
    >>> g.rewind(0, "u", 10, lambda: 12), g.rewind(0, "u", 11, lambda: 12)
    ({'events': 3}, None)
    >>> g.rewind(0, "new", 11, lambda: 12), g.rewind(0, "old", 11, lambda: 4)
    ({}, None)
    """

    def __init__(self) -> None:
        self.ledger = OffsetLedger()
        self.users: dict[int, set[str]] = {}
        self.restored: dict[int, RestoredPartition] = {}
        self.events_since = 0

    def admit(self, topic: str, partition: int, offset: int) -> bool:
        if not self.ledger.take(topic, partition, offset):
            return False
        r = self.restored.get(partition)
        if r is not None and offset >= r.end:
            del self.restored[partition]  # past anything the table could hold: done
        return True

    def rewind(
        self, partition: int, uid: str, offset: int, stored_src: Callable[[], int | None]
    ) -> dict | None:
        r = self.restored.get(partition)
        if r is None or uid in r.settled:
            return None
        r.settled.add(uid)
        prof = r.profiles.pop(uid, None)
        if prof is not None:
            return prof
        src = stored_src()
        return {} if src is not None and src >= offset else None

    def note_user(self, partition: int, uid: str) -> None:
        users = self.users.get(partition)
        if users is None:
            users = self.users[partition] = set()
        users.add(uid)

    def drop_partition(self, topic: str, partition: int) -> set[str]:
        self.ledger.drop(OffsetLedger.key(topic, partition))
        self.restored.pop(partition, None)
        return self.users.pop(partition, set())


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


def profile_rows(
    rec: Recommender, profiles: MutableMapping[str, UserProfile], uids: set[str]
) -> dict[str, dict]:
    """Every user's exported state, for one partition checkpoint."""
    out = {}
    for uid in sorted(uids):
        prof = profiles.get(uid)
        out[uid] = export_user(rec, uid, prof)
    return out
