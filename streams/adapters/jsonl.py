"""JSON-lines files: the format of event logs, catalogs and replay inputs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson


class JsonlError(ValueError):
    pass


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Objects of a JSON-lines file; blank lines are skipped, a bad line names its number."""
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise JsonlError(f"{path}:{lineno}: invalid JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise JsonlError(f"{path}:{lineno}: expected a JSON object")
            yield obj


def read_raw_lines(path: str | Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield line


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    with open(path, "wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row))
            fh.write(b"\n")
            n += 1
    return n
