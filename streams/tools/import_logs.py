"""``reelstream import``: read a public log's files, convert (streams/tools/importers.py), write.

Writes the events and the catalog as JSON lines that ``reelstream replay`` reads,
prints progress on stderr and a summary with the bad rows counted by reason.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson

from streams.adapters.jsonl import write_jsonl
from streams.tools import importers


def _rows(path: Path, delimiter: str = ",") -> Iterator[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh, delimiter=delimiter)


def _need(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    return path


def run(
    kind: str,
    source: str,
    events_out: str,
    catalog_out: str,
    overlap: bool = False,
    json_out: str | None = None,
    err: TextIO | None = None,
) -> dict[str, Any]:
    """Import ``source`` (MovieLens folder or KuaiRand interactions file); returns the report."""
    err = err or sys.stderr
    report = importers.ImportReport()

    def progress(n: int) -> None:
        print(f"\rread {n:,} rows", end="", file=err, flush=True)

    src = Path(source)
    if kind == "movielens":
        catalog = importers.movielens_catalog(
            _rows(_need(src / "movies.csv")),
            _rows(src / "tags.csv") if (src / "tags.csv").is_file() else [],
            report,
        )
        known = frozenset(t["title_id"] for t in catalog)
        events = importers.movielens_events(
            _rows(_need(src / "ratings.csv")), known, report, overlap, progress
        )
    elif kind == "kuairand":
        events, catalog = importers.kuairand_import(
            _rows(_need(src), delimiter="\t"), report, overlap, progress
        )
    else:
        raise ValueError(f"unknown log kind {kind!r}")
    print(file=err)
    write_jsonl(events_out, events)
    write_jsonl(catalog_out, catalog)
    doc = {"kind": kind, "source": str(src), "overlap": overlap, **report.as_dict()}
    mode = "overlapping" if overlap else "sequential"
    print(
        f"{kind}: {report.rows:,} rows -> {report.viewings:,} {mode} viewings, "
        f"{report.events:,} events to {events_out}, {report.titles:,} titles to {catalog_out}",
        file=err,
    )
    bad = doc["bad_rows"]
    print(
        f"bad rows: {bad:,}" + (f" {doc['bad_by_reason']}" if bad else " (none)"),
        file=err,
    )
    if json_out:
        Path(json_out).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return doc
