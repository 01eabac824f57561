"""``reelstream bench --sweep 400,10000,50000``: cost against catalog size, side by side.

For each catalog size, two measurements on the same synthetic traffic shape:

* the engine in a process of its own (:mod:`streams.tools.bench_engine`): CPU µs per
  event for ingest, refresh p50/p99 per user, and the cost of one catalog record
  (add, update, tombstone) until the title index holds it;
* the full pipeline on the local stack (:func:`streams.tools.bench.run_bench`, no
  two-worker phase): one worker's events/s beside the bare aiokafka decode rate of the
  same run, and freshness p50/p99 at half that worker's rate.

Issue 15's targets at 50,000 titles are printed beside the figures; nothing here
asserts them (benchmarks report, tests assert behaviour).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from streams.tools.bench import BenchConfig, Progress, run_bench, run_stoppable

TARGETS = {
    "ingest_cpu_us_per_event": 60.0,
    "refresh_ms_p99": 2.0,
    "catalog_change_ms_p99": 5.0,
    "events_per_s_vs_smallest": 0.7,  # within 30 % of the smallest catalog's rate
}


def parse_sizes(text: str) -> list[int]:
    """``"400,10k,50000"`` -> ``[400, 10000, 50000]``.

    >>> parse_sizes("400,10k,50000")
    [400, 10000, 50000]
    """
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        mult = 1000 if part.endswith("k") else 1
        digits = part.removesuffix("k")
        value = int(digits) * mult if digits.isdigit() else 0
        if value < 1:
            raise ValueError(f"--sweep wants positive catalog sizes, got {part!r}")
        out.append(value)
    return out


def engine_costs(titles: int, users: int, warmup: int, events: int) -> dict[str, Any]:
    """bench_engine in a fresh process, so one size's memory does not weigh on the next."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "engine.json"
        cmd = [
            *(sys.executable, "-m", "streams.tools.bench_engine"),
            *("--titles", str(titles), "--users", str(users)),
            *("--warmup", str(warmup), "--events", str(events), "--json", str(out)),
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def run_sweep(
    sizes: list[int], cfg: BenchConfig, say: Progress, warmup: int = 20_000, events: int = 20_000
) -> dict[str, Any]:
    rows = []
    for n in sizes:
        say(f"sweep: {n:,} titles, {cfg.users:,} users: the engine in its own process ...")
        row: dict[str, Any] = {"titles": n, "engine": engine_costs(n, cfg.users, warmup, events)}
        say(f"sweep: {n:,} titles: one worker on the local stack ...")
        one = dataclasses.replace(cfg, titles=n, scale=False)
        row["pipeline"] = run_stoppable(run_bench(one, say))
        rows.append(row)
    return {"sizes": rows, "targets": TARGETS, "config": dataclasses.asdict(cfg)}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_sweep(r: dict[str, Any]) -> str:
    """One line per catalog size, targets in the last line."""
    head = (
        "titles   ingest CPU us/ev  refresh p50/p99 (CPU p99) ms  catalog change p50/p99 ms  "
        "worker ev/s (vs first)  bare decode ev/s  freshness p50/p99 ms"
    )
    lines = [head]
    first = None
    for row in r["sizes"]:
        e, p = row["engine"], row["pipeline"]
        rate = p.get("one_worker", {}).get("events_per_s")
        first = first or rate
        f = p.get("freshness", {}).get("event_to_score_topic", {})
        lines.append(
            f"{row['titles']:>6,}   {_fmt(e['ingest_cpu_us_per_event'], '>16.1f')}"
            f"  {_fmt(e['refresh_ms_median'], '>8.2f')} / {_fmt(e['refresh_ms_p99'], '>6.2f')}"
            f" {'(' + _fmt(e.get('refresh_cpu_ms_p99'), '.2f') + ')':<9}"
            f"  {_fmt(e['catalog_change_ms_median'], '>12.2f')} / "
            f"{_fmt(e['catalog_change_ms_p99'], '<10.2f')}"
            f"  {_fmt(rate, '>10,.0f')} ({_fmt(rate / first if rate and first else None, '.2f')})"
            f"  {_fmt(p.get('bare_decode', {}).get('events_per_s'), '>16,.0f')}"
            f"  {_fmt(f.get('p50_ms'), '>8,.0f')} / {_fmt(f.get('p99_ms'), ',.0f')}"
            + (f"  STOPPED: {p['error'].splitlines()[0]}" if "error" in p else "")
        )
    t = r["targets"]
    lines.append(
        f"targets at the largest size: ingest <= {t['ingest_cpu_us_per_event']:.0f} us/event, "
        f"refresh p99 <= {t['refresh_ms_p99']} ms, catalog change <= "
        f"{t['catalog_change_ms_p99']} ms, worker >= {t['events_per_s_vs_smallest']:.0%} of "
        "the smallest size's rate, freshness p99 <= 250 ms"
    )
    return "\n".join(lines)


def main(
    sizes: list[int], cfg: BenchConfig, json_path: str | None = None, quiet: bool = False
) -> int:
    result = run_sweep(sizes, cfg, Progress(quiet))
    print(format_sweep(result))
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
        print(f"JSON written to {json_path}")
    return 1 if any("error" in row["pipeline"] for row in result["sizes"]) else 0
