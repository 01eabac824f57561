"""Model checkpoints: a safe binary codec and the source offsets a checkpoint covers.

A checkpoint is one JSON document (orjson) whose numpy arrays are stored as
``{"__nd__": [dtype, shape, base64 bytes]}`` with the dtype from a short allow
list; an array of at least 1,024 items of which at most a quarter are non-zero as
``{"__sp__": [dtype, shape, base64 int64 flat indices, base64 values]}`` (version 2:
per-title counts are mostly zero, and at 50,000 titles they were over half of a
worker's 13-15 MB). Decoding never executes anything: no pickle, no ``eval``, no
object arrays; ``np.frombuffer`` with an explicit dtype, and the byte length must
equal the product of the shape times the item size (sparse: indices strictly rising
inside the shape, one value each). Anything else is a :class:`CheckpointError`.
Version 1 documents (dense only) still decode.

>>> blob = encode({"w": np.arange(3, dtype=np.float32), "n": 2}, offsets={"ev:0": 10})
>>> ck = decode(blob)
>>> ck.state["w"].tolist(), ck.state["n"], ck.offsets
([0.0, 1.0, 2.0], 2, {'ev:0': 10})
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

FORMAT = "reelstream-model-checkpoint"
VERSION = 2
READS = frozenset({1, 2})  # versions decode accepts
SPARSE_MIN = 1024  # arrays this long or longer ...
SPARSE_SHARE = 0.25  # ... with at most this share of non-zero items are stored sparse
DTYPES = frozenset({"float32", "float64", "int64", "int32", "bool"})
MAX_BYTES = 512 * 1024 * 1024
MAX_DEPTH = 32


class CheckpointError(ValueError):
    """A checkpoint that is not in the expected, safe format."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    state: dict[str, Any]
    offsets: dict[str, int]  # "topic:partition" -> next offset to process
    model_version: str
    created_ts: int


_PLAIN = frozenset({str, int, float, bool, type(None)})  # JSON values as they are


def _key(k: object) -> str:
    if not isinstance(k, str) or k in ("__nd__", "__sp__"):
        raise CheckpointError(f"keys must be strings (not {type(k).__name__})")
    return k


def _walk(obj: Any, array: Callable[[np.ndarray], Any], depth: int = 0) -> Any:
    """A checked copy of a state in which each array becomes ``array(it)``: the one walk
    behind :func:`snapshot` (arrays copied) and the encode (arrays as base64)."""
    if depth > MAX_DEPTH:
        raise CheckpointError("state nested too deeply")
    if isinstance(obj, np.ndarray):
        if obj.dtype.name not in DTYPES:
            raise CheckpointError(f"dtype {obj.dtype.name} is not allowed in checkpoints")
        return array(obj)
    if isinstance(obj, dict):
        return {_key(k): _walk(v, array, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        # Plain values need no conversion: one pass instead of a call per item (the
        # catalog's 50,000 ids took 21 ms of a checkpoint on the batch path).
        if all(type(v) in _PLAIN for v in obj):
            return list(obj)
        return [_walk(v, array, depth + 1) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    raise CheckpointError(f"cannot checkpoint a {type(obj).__name__}")


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def _nd(a: np.ndarray) -> dict[str, Any]:
    if a.size >= SPARSE_MIN:
        flat = a.reshape(-1)
        idx = np.flatnonzero(flat)
        if len(idx) <= SPARSE_SHARE * a.size:
            return {
                "__sp__": [a.dtype.name, list(a.shape), _b64(idx.astype("<i8")), _b64(flat[idx])]
            }
    return {"__nd__": [a.dtype.name, list(a.shape), _b64(a)]}


def _raw(data: Any) -> bytes:
    if not isinstance(data, str):
        raise CheckpointError("array data must be base64 text")
    try:
        return base64.b64decode(data, validate=True)
    except ValueError as exc:
        raise CheckpointError(f"array data is not base64: {exc}") from None


def _head(spec: Any, n: int) -> tuple[np.dtype, list[int]]:
    """The checked dtype and shape of an array spec of ``n`` items."""
    if not isinstance(spec, list) or len(spec) != n:
        raise CheckpointError("malformed array")
    dtype, shape = spec[0], spec[1]
    if dtype not in DTYPES:
        raise CheckpointError(f"dtype {dtype!r} is not allowed")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise CheckpointError("array shape must be a list of non-negative integers")
    return np.dtype(dtype), shape


def _dense(spec: Any) -> np.ndarray:
    dt, shape = _head(spec, 3)
    raw = _raw(spec[2])
    if len(raw) != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
        raise CheckpointError("array byte length does not match its shape and dtype")
    return np.frombuffer(raw, dtype=dt).reshape(shape).copy()


def _sparse(spec: Any) -> np.ndarray:
    dt, shape = _head(spec, 4)
    size = int(np.prod(shape, dtype=np.int64))
    idx_raw, val_raw = _raw(spec[2]), _raw(spec[3])
    if len(idx_raw) % 8 or len(val_raw) != len(idx_raw) // 8 * dt.itemsize:
        raise CheckpointError("sparse array: one value per index")
    idx = np.frombuffer(idx_raw, dtype="<i8")
    if len(idx) and (idx[0] < 0 or idx[-1] >= size or np.any(np.diff(idx) <= 0)):
        raise CheckpointError("sparse array: indices must rise strictly inside the shape")
    out = np.zeros(size, dtype=dt)
    out[idx] = np.frombuffer(val_raw, dtype=dt)
    return out.reshape(shape)


def _enc(obj: Any, depth: int = 0) -> Any:
    return _walk(obj, _nd, depth)


def _dec(obj: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise CheckpointError("state nested too deeply")
    if isinstance(obj, dict):
        for tag, build in (("__nd__", _dense), ("__sp__", _sparse)):
            if tag in obj:
                if len(obj) != 1:
                    raise CheckpointError("malformed array")
                return build(obj[tag])
        return {k: _dec(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_dec(v, depth + 1) for v in obj]
    return obj


def snapshot(obj: Any) -> Any:
    """A copy of a state that shares no array or container with it: cheap (arrays are
    copied whole, plain values kept), so a worker takes it at one instant between batches
    and encodes it later, while the models go on learning. Checked as the encode checks."""
    return _walk(obj, lambda a: np.array(a, copy=True, order="C"))


def encode_pieces(
    state: dict[str, Any],
    offsets: dict[str, int],
    model_version: str = "",
    created_ts: int = 0,
    split_depth: int = 2,
) -> Iterator[bytes]:
    """The checkpoint as consecutive pieces of one JSON document, one per entry of the
    state down to ``split_depth`` levels: a caller can let other work run between them
    (the whole encode of a 50,000-title state is 25-30 ms of CPU in one go)."""
    head = {
        "format": FORMAT,
        "v": VERSION,
        "model_version": model_version,
        "created_ts": created_ts,
        "offsets": {str(k): int(v) for k, v in offsets.items()},
    }
    yield orjson.dumps(head)[:-1] + b',"state":'
    yield from _pieces(state, split_depth, 0)
    yield b"}"


def _pieces(obj: Any, split: int, depth: int) -> Iterator[bytes]:
    if split <= 0 or not isinstance(obj, dict) or not obj:
        yield orjson.dumps(_enc(obj, depth))
        return
    sep = b"{"
    for k, v in obj.items():
        yield sep + orjson.dumps(_key(k)) + b":"
        yield from _pieces(v, split - 1, depth + 1)
        sep = b","
    yield b"}"


def encode(
    state: dict[str, Any],
    offsets: dict[str, int],
    model_version: str = "",
    created_ts: int = 0,
) -> bytes:
    return b"".join(encode_pieces(state, offsets, model_version, created_ts))


def decode(raw: bytes) -> Checkpoint:
    if not isinstance(raw, bytes | bytearray | memoryview) or len(raw) > MAX_BYTES:
        raise CheckpointError("checkpoint must be bytes below the size limit")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError("not a reelstream model checkpoint")
    if doc.get("v") not in READS:
        raise CheckpointError(f"unsupported checkpoint version {doc.get('v')!r}")
    offsets = doc.get("offsets")
    if not isinstance(offsets, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in offsets.values()
    ):
        raise CheckpointError("offsets must map 'topic:partition' to non-negative integers")
    state = doc.get("state")
    if not isinstance(state, dict):
        raise CheckpointError("state must be an object")
    return Checkpoint(
        state=_dec(state),
        offsets=dict(offsets),
        model_version=str(doc.get("model_version", "")),
        created_ts=int(doc.get("created_ts") or 0),
    )


class OffsetLedger:
    """Which source offsets per ``topic:partition`` the models have learned.

    ``offsets[k]`` is the first offset not yet learned (everything below it is); ``ahead[k]``
    lists the ``[start, end)`` ranges learned above it. Ranges ahead exist because offsets
    can be missing below a record (a transaction's markers, compaction) and because a
    consumer may hand a record over after higher ones (Faust did after a seek back, until
    streams/adapters/kafka_internals.py, ``ReadOffsets``); a plain high-water mark would
    skip such a late record as already learned and lose it.

    After a restore the ledger holds the checkpoint's offsets and ranges, and :meth:`take`
    answers False for any record already learned, so every event is learned exactly once.

    >>> led = OffsetLedger({"ev:0": 5})
    >>> led.take("ev", 0, 4), led.take("ev", 0, 5), led.take("ev", 0, 5), led.offsets
    (False, True, False, {'ev:0': 6})
    >>> led.take("ev", 0, 9), led.take("ev", 0, 9), led.ahead, led.holes()
    (True, False, {'ev:0': [[9, 10]]}, {'ev:0': (6, 9)})
    >>> [led.take("ev", 0, o) for o in (6, 7, 8, 10)], led.offsets, led.ahead
    ([True, True, True, True], {'ev:0': 11}, {})
    """

    #: Records learned above a hole before the hole is given up as offsets that will never
    #: arrive (e.g. transaction markers); see :attr:`abandoned`.
    MAX_AHEAD = 50_000

    def __init__(
        self, offsets: dict[str, int] | None = None, ahead: dict[str, list] | None = None
    ) -> None:
        self.offsets: dict[str, int] = dict(offsets or {})
        self.ahead: dict[str, list[list[int]]] = {
            k: [[int(a), int(b)] for a, b in v] for k, v in (ahead or {}).items() if v
        }
        self.abandoned: list[tuple[str, int, int]] = []  # (key, start, end) given up
        #: Whether the record last taken came after a higher offset of its partition: the
        #: consumer reordered it, so its event time says nothing about producer lateness.
        self.last_reordered = False

    @staticmethod
    def key(topic: str, partition: int) -> str:
        return f"{topic}:{partition}"

    def take(self, topic: str, partition: int, offset: int) -> bool:
        """True if the record at ``offset`` is new to the models (and mark it learned)."""
        k = self.key(topic, partition)
        nxt = self.offsets.get(k)
        ranges = self.ahead.get(k)
        highest = ranges[-1][1] - 1 if ranges else (nxt - 1 if nxt is not None else -1)
        self.last_reordered = offset < highest
        if nxt is None:  # no checkpoint: whatever this worker has not learned yet is new
            return _add_offset(self.ahead.setdefault(k, []), offset)
        if offset < nxt:
            return False
        if offset == nxt:
            nxt += 1
            if ranges and ranges[0][0] == nxt:
                nxt = ranges.pop(0)[1]
                if not ranges:
                    del self.ahead[k]
            self.offsets[k] = nxt
            return True
        if ranges is None:
            ranges = self.ahead[k] = []
        if not _add_offset(ranges, offset):
            return False
        if k in self.offsets and sum(b - a for a, b in ranges) > self.MAX_AHEAD:
            start, end = nxt, ranges[0][0]
            self.abandoned.append((k, start, end))
            self.offsets[k] = ranges.pop(0)[1]
            if not ranges:
                del self.ahead[k]
        return True

    def holes(self) -> dict[str, tuple[int, int]]:
        """The lowest missing range ``[start, end)`` of each partition that has one."""
        return {
            k: (self.offsets[k], r[0][0]) for k, r in self.ahead.items() if r and k in self.offsets
        }

    def known(self, key: str) -> bool:
        """True once any record of the partition was learned or a checkpoint set its offset."""
        return key in self.offsets or bool(self.ahead.get(key))

    def covered(self, key: str) -> tuple[int, list[list[int]]]:
        """(offset, ranges ahead) for a checkpoint. Without a restored offset, the end of the
        first learned range: records below it that this worker never saw were learned by a
        previous owner whose models are gone (their profile rows hold them either way)."""
        ranges = self.ahead.get(key, [])
        if key in self.offsets:
            return self.offsets[key], [list(r) for r in ranges]
        return ranges[0][1], [list(r) for r in ranges[1:]]

    def drop(self, key: str) -> None:
        self.offsets.pop(key, None)
        self.ahead.pop(key, None)

    def seek_positions(self) -> dict[tuple[str, int], int]:
        out = {}
        for k, v in self.offsets.items():
            topic, _, part = k.rpartition(":")
            out[(topic, int(part))] = v
        return out


def _add_offset(ranges: list[list[int]], offset: int) -> bool:
    """Add ``offset`` to sorted disjoint ``[start, end)`` ranges; False if already there."""
    for i, (a, b) in enumerate(ranges):
        if a <= offset < b:
            return False
        if offset == b:
            ranges[i][1] = b + 1
            if i + 1 < len(ranges) and ranges[i + 1][0] == b + 1:
                ranges[i][1] = ranges.pop(i + 1)[1]
            return True
        if offset == a - 1:
            ranges[i][0] = offset
            return True
        if offset < a:
            ranges.insert(i, [offset, offset + 1])
            return True
    ranges.append([offset, offset + 1])
    return True
