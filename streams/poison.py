"""Poison records: what cannot be read or processed, and how it is recognised and counted.

A batch that cannot be decompressed (a codec library missing) or fails its CRC
must not crash the consumer and must not be skipped silently either. The fetch
guard in :mod:`streams.adapters.kafka_internals` turns each offset of such a batch into
a stand-in record with no key, no value and one header naming the reason. The
stand-in flows through the normal path, so the agent or follower dead-letters
it with its coordinates and the offset is committed like any other.

Records framed by a schema registry (magic byte 0, a 4-byte schema id, then the
payload) are refused by the contract decoder with their own reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import orjson

from streams.contract import Rejection
from streams.metrics import DEAD_LETTERS

HEADER = "reelstream-undecodable"

# Dead-letter reasons of records that never reached the decoder.
UNSUPPORTED_CODEC = "unsupported_codec"
CORRUPT_BATCH = "corrupt_batch"
UNDECODABLE_BATCH = "undecodable_batch"
# A record whose handling raised: a bug or an input the validators did not foresee.
PROCESSING_ERROR = "processing_error"

# The reasons the ReelstreamPoisonRecords alert watches (deploy/prometheus/alerts.yml).
ALERTED_REASONS = (
    UNSUPPORTED_CODEC,
    CORRUPT_BATCH,
    UNDECODABLE_BATCH,
    PROCESSING_ERROR,
    "schema_registry_framed",
)

LOG_EVERY_S = 10.0
log = logging.getLogger("reelstream.poison")
_last_logged: dict[tuple[str, str], tuple[float, int]] = {}


def header(reason: str, detail: str) -> tuple[str, bytes]:
    return HEADER, orjson.dumps({"reason": reason, "detail": detail[:300]})


def rejection(headers: Iterable[tuple[str, bytes]] | dict[str, bytes] | None) -> Rejection | None:
    """The fetch guard's verdict on a record, or None for an ordinary record.

    Faust hands headers over as a list of pairs or a dict, aiokafka as a tuple of pairs.

    >>> rejection([header(CORRUPT_BATCH, "CRC mismatch")]).reason
    'corrupt_batch'
    >>> rejection([("traceparent", b"00-...")]) is None
    True
    """
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:
        if key == HEADER:
            info = orjson.loads(value)
            return Rejection(info["reason"], info["detail"])
    return None


def processing_error(exc: BaseException) -> Rejection:
    return Rejection(PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"[:300])


def init_series(topics: Iterable[str]) -> None:
    """Export the alerted series at 0 from the start: ``increase()`` needs a sample before
    the first poison record, or that record (a series born at 1) never fires the alert."""
    for topic in topics:
        for reason in ALERTED_REASONS:
            DEAD_LETTERS.labels(topic=topic, reason=reason)


def count(topic: str, partition: int, offset: int, rej: Rejection) -> None:
    """Count a dead-lettered record; log it at most once per topic and reason every 10 s.

    A corrupt batch of thousands of records, or a codec missing on every batch, would
    otherwise write a line per record into the operator's log pipeline.
    """
    DEAD_LETTERS.labels(topic=topic, reason=rej.reason).inc()
    now = time.monotonic()
    last, suppressed = _last_logged.get((topic, rej.reason), (-LOG_EVERY_S, 0))
    if now - last < LOG_EVERY_S:
        _last_logged[(topic, rej.reason)] = (last, suppressed + 1)
        return
    _last_logged[(topic, rej.reason)] = (now, 0)
    more = f" (and {suppressed} more since the last line)" if suppressed else ""
    log.warning(
        "%s[%d]@%d dead-lettered: %s: %s%s",
        topic,
        partition,
        offset,
        rej.reason,
        rej.detail,
        more,
    )
