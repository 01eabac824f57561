"""Event contract v1: decoding and validation of playback and UI events.

Pure and import-light (orjson only) so the worker, the replay tool and the tests
validate with the same code. A Kafka record holds either one event object or an
envelope ``{"v": 1, "events": [...]}`` of one user's events. Every rejection
carries a machine-readable reason; see docs/event-contract.md.

>>> events, rejects = decode_record(b'{"event_id":"e1","user_id":"u1","title_id":"t1",'
...     b'"event_type":"play","ts":1767225600000,"position_s":0}')
>>> events[0]["event_type"], rejects
('play', [])
>>> decode_record(b'{"event_id":"e2"}')[1][0].reason
'missing_field'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from features.ids import ID_RE, is_valid_id

CONTRACT_VERSION = 1
MAX_RECORD_BYTES = 256 * 1024
MAX_EVENTS_PER_ENVELOPE = 500

COUNTRY_RE = re.compile(r"^[A-Z]{2}$")

PLAYBACK_TYPES = frozenset(
    {"play", "pause", "resume", "seek", "intro_skip", "progress", "stop", "complete"}
)
UI_TYPES = frozenset({"impression", "click", "thumbs"})
EVENT_TYPES = PLAYBACK_TYPES | UI_TYPES
# Types whose meaning depends on where in the title the viewer is.
POSITION_REQUIRED = frozenset({"pause", "seek", "progress", "stop", "complete", "intro_skip"})

# W3C Trace Context: version-traceid-parentid-flags, lower-case hex; all-zero ids are invalid.
TRACEPARENT_HEADER = "traceparent"
TRACEPARENT_RE = re.compile(
    r"^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$"
)
# Confluent's schema-registry wire format: magic byte 0, then a big-endian 4-byte schema id.
SCHEMA_REGISTRY_MAGIC = 0

MIN_TS_MS = 946_684_800_000  # 2000-01-01: anything earlier is a unit mistake (seconds?)
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01
MAX_POSITION_S = 48 * 3600.0
DEVICES_MAX_LEN = 32

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event (or a whole record) was refused; ``index`` is its place in an envelope."""

    reason: str
    detail: str
    index: int | None = None


class ContractError(ValueError):
    """Raised by :func:`validate_event` for callers that prefer exceptions (producers)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _number(ev: Event, name: str, lo: float, hi: float) -> float | None:
    value = ev.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContractError("bad_type", f"{name} must be a number")
    if not lo <= value <= hi:
        raise ContractError("out_of_range", f"{name}={value} outside [{lo}, {hi}]")
    return float(value)


def validate_event(ev: object) -> Event:
    """Check one decoded event in place and return it; raises :class:`ContractError`."""
    if not isinstance(ev, dict):
        raise ContractError("not_an_object", "an event must be a JSON object")
    for name in ("event_id", "user_id", "title_id", "event_type", "ts"):
        if name not in ev:
            raise ContractError("missing_field", f"{name} is required")
    for name in ("event_id", "user_id", "title_id"):
        if not is_valid_id(ev[name]):
            raise ContractError("bad_id", f"{name} must match {ID_RE.pattern}")
    etype = ev["event_type"]
    if etype not in EVENT_TYPES:
        raise ContractError("unknown_event_type", f"event_type {str(etype)[:40]!r}")
    ts = ev["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise ContractError("bad_type", "ts must be an integer (epoch milliseconds)")
    if not MIN_TS_MS <= ts <= MAX_TS_MS:
        raise ContractError("bad_timestamp", f"ts={ts} is not epoch milliseconds in 2000-2100")
    position = _number(ev, "position_s", 0.0, MAX_POSITION_S)
    if position is None and etype in POSITION_REQUIRED:
        raise ContractError("missing_field", f"position_s is required for {etype}")
    duration = _number(ev, "duration_s", 1.0, MAX_POSITION_S)
    if position is not None and duration is not None and position > duration * 1.05 + 5:
        raise ContractError("out_of_range", f"position_s={position} beyond duration_s={duration}")
    if etype == "thumbs" and ev.get("value") not in (-1, 0, 1):
        raise ContractError("bad_value", "thumbs needs value -1, 0 or 1")
    country = ev.get("country")
    if country is not None and (not isinstance(country, str) or not COUNTRY_RE.match(country)):
        raise ContractError("bad_country", "country must be ISO 3166 alpha-2, upper case")
    device = ev.get("device")
    if device is not None and (not isinstance(device, str) or len(device) > DEVICES_MAX_LEN):
        raise ContractError("bad_type", f"device must be a string of at most {DEVICES_MAX_LEN}")
    for name in ("session_id", "artwork_id", "request_id"):
        value = ev.get(name)
        if value is not None and not is_valid_id(value):
            raise ContractError("bad_id", f"{name} must match {ID_RE.pattern}")
    version = ev.get("v", CONTRACT_VERSION)
    if version != CONTRACT_VERSION:
        raise ContractError("unsupported_version", f"v={version!r}; this worker reads v1")
    return ev


def decode_record(raw: bytes | None) -> tuple[list[Event], list[Rejection]]:
    """Decode one Kafka record into valid events and rejections; never raises."""
    if raw is None or len(raw) == 0:
        return [], [Rejection("empty_record", "record value is empty")]
    if len(raw) > MAX_RECORD_BYTES:
        return [], [Rejection("too_large", f"{len(raw)} bytes > {MAX_RECORD_BYTES}")]
    if raw[0] == SCHEMA_REGISTRY_MAGIC and len(raw) >= 5:
        schema_id = int.from_bytes(raw[1:5], "big")
        detail = f"schema id {schema_id}: Avro/Protobuf/JSON-Schema framing; send plain JSON v1"
        return [], [Rejection("schema_registry_framed", detail)]
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return [], [Rejection("invalid_json", str(exc)[:200])]
    if isinstance(doc, dict) and "events" in doc and "event_type" not in doc:
        items = doc["events"]
        if not isinstance(items, list) or not items:
            return [], [Rejection("bad_envelope", "events must be a non-empty list")]
        if len(items) > MAX_EVENTS_PER_ENVELOPE:
            return [], [Rejection("bad_envelope", f"more than {MAX_EVENTS_PER_ENVELOPE} events")]
        if doc.get("v", CONTRACT_VERSION) != CONTRACT_VERSION:
            return [], [Rejection("unsupported_version", f"envelope v={doc.get('v')!r}")]
        events: list[Event] = []
        rejects: list[Rejection] = []
        for i, item in enumerate(items):
            try:
                events.append(validate_event(item))
            except ContractError as exc:
                rejects.append(Rejection(exc.reason, exc.detail, i))
        return events, rejects
    try:
        return [validate_event(doc)], []
    except ContractError as exc:
        return [], [Rejection(exc.reason, exc.detail)]


def traceparent(headers: object) -> str | None:
    """A valid W3C ``traceparent`` among a record's headers (pairs or a dict), else None.

    >>> traceparent([("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")])
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    >>> traceparent([("traceparent", b"not-a-trace")]) is None
    True
    """
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:  # type: ignore[attr-defined]
        if key == TRACEPARENT_HEADER and isinstance(value, bytes | str):
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            return text if TRACEPARENT_RE.match(text) else None
    return None


def dead_letter(
    raw: bytes | None, rejection: Rejection, *, topic: str, partition: int, offset: int, now_ms: int
) -> bytes:
    """The DLQ record: original bytes (as text when UTF-8, else base64), reason, time, origin."""
    original: str | None
    encoding = "utf-8"
    try:
        original = raw.decode("utf-8") if raw is not None else None
    except UnicodeDecodeError:
        import base64

        original, encoding = base64.b64encode(raw or b"").decode(), "base64"
    return orjson.dumps(
        {
            "v": CONTRACT_VERSION,
            "reason": rejection.reason,
            "detail": rejection.detail,
            "index": rejection.index,
            "rejected_at": now_ms,
            "source": {"topic": topic, "partition": partition, "offset": offset},
            "original": original,
            "original_encoding": encoding,
        }
    )
