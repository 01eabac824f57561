"""Structured logging: one JSON object per line (default) or plain text, quiet by default.

``REELSTREAM_LOG_FORMAT=json|text`` and ``REELSTREAM_LOG_LEVEL`` choose. The same
configuration is handed to Faust's worker so its own records come out alike.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import orjson

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """Time, level, logger, message, and any ``extra=`` fields, as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class RepeatFilter(logging.Filter):
    """At most ``burst`` lines per logger and message template every ``window_s`` seconds.

    With the broker down, aiokafka logs "Unable connect to node" and "Unable to update
    metadata" on every reconnect attempt of every client: about 100,000 lines in 20 s
    measured here, enough to flood an operator's log pipeline. The first lines of each
    kind still say what is wrong; the next one through says how many were held back.
    """

    def __init__(self, burst: int = 3, window_s: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, n, held]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.window_s:
            held = int(state[2]) if state is not None else 0
            self._seen[key] = [now, 1, 0]
            if len(self._seen) > 10_000:  # bounded: templates, not values, are keys
                self._seen.clear()
            if held:
                record.suppressed = held  # a field in JSON lines
                record.msg = f"{record.msg} ({held} similar lines held back)"
            return True
        if state[1] < self.burst:
            state[1] += 1
            return True
        state[2] += 1
        return False


def logging_config(level: str | None = None, fmt: str | None = None) -> dict[str, Any]:
    level = (level or os.environ.get("REELSTREAM_LOG_LEVEL", "WARNING")).upper()
    fmt = fmt or os.environ.get("REELSTREAM_LOG_FORMAT", "json")
    formatter = (
        {"()": JsonFormatter}
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"repeats": {"()": RepeatFilter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["repeats"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        # Faust warns on every changelog back-pressure wait; it is flow control, not a fault.
        "loggers": {"faust.transport.producer": {"level": "ERROR"}},
    }


def setup(level: str | None = None) -> None:
    import logging.config

    logging.config.dictConfig(logging_config(level))
