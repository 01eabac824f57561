"""Structured logging: one JSON object per line (default) or plain text, quiet by default.

``REELSTREAM_LOG_FORMAT=json|text`` and ``REELSTREAM_LOG_LEVEL`` choose. The same
configuration is handed to Faust's worker so its own records come out alike.
"""

from __future__ import annotations

import logging
import os
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
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default"}},
        "root": {"level": level, "handlers": ["stderr"]},
        # Faust warns on every changelog back-pressure wait; it is flow control, not a fault.
        "loggers": {"faust.transport.producer": {"level": "ERROR"}},
    }


def setup(level: str | None = None) -> None:
    import logging.config

    logging.config.dictConfig(logging_config(level))
