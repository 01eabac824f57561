"""``reelstream replay``: file input, validation, ordering, progress and the report table.

The evaluation itself is pure and lives in :mod:`online_models.evaluation`; each event
is folded in by the worker's per-batch core (streams/worker/batch_core.py,
:class:`BatchCoreIngest`), so the replay and the worker run the same code.
Events are JSON lines in the event contract v1 (docs/event-contract.md); each
line is validated with the worker's own validator, invalid lines are counted by
reason and skipped. The whole log is loaded and sorted by event time (``ts``,
ties in file order), so out-of-order logs replay in event-time order.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import orjson

from features.catalog import Catalog, CatalogError, parse_title
from online_models.engine import Engine
from online_models.evaluation import replay, strongest
from streams.adapters.jsonl import read_raw_lines
from streams.adapters.kafka_admin import kafka_partition
from streams.contract import ContractError, validate_event
from streams.settings import Settings
from streams.worker.batch_core import process_batch


def _parse_lines(
    path: str | Path, parse: Callable[[Any], Any], reason: Callable[[Exception], str | None]
) -> tuple[list[Any], Counter[str]]:
    """Parsed objects of a JSON-lines file, and the refused lines counted by reason."""
    items: list[Any] = []
    bad: Counter[str] = Counter()
    for line in read_raw_lines(path):
        try:
            items.append(parse(orjson.loads(line)))
        except orjson.JSONDecodeError:
            bad["invalid_json"] += 1
        except (ContractError, CatalogError) as exc:
            bad[reason(exc) or "invalid"] += 1
    return items, bad


def load_catalog(path: str | Path) -> tuple[Catalog, Counter[str]]:
    catalog = Catalog()
    titles, bad = _parse_lines(path, parse_title, lambda exc: "bad_title")
    for title in titles:
        catalog.upsert(title)
    return catalog, bad


def load_events(path: str | Path) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Valid events of a JSON-lines log in event-time order, and invalid lines by reason."""
    events, bad = _parse_lines(path, validate_event, lambda exc: getattr(exc, "reason", None))
    events.sort(key=lambda ev: ev["ts"])  # stable: ties keep file order
    return events, bad


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


BASELINE_LABELS = {
    "most-popular": "popular",
    "decayed-popularity": "decayed",
    "co-occurrence": "co-occur",
}


def format_table(rep: dict[str, Any]) -> str:
    """The report: model beside every baseline on the same requests, for the whole log and
    each half; the ratio is the model against the strongest baseline on that figure."""
    k = rep["k"]
    m, bases = rep["model"], rep["baselines"]
    names = list(bases)
    w = 44
    lines = [
        f"events {rep['events']:,} (invalid skipped: {rep.get('invalid_events', 0):,}), "
        f"users {rep['users']:,}, titles {rep['catalog_titles']:,}, "
        f"top-{k} requests {rep['requests']:,}",
        f"{rep['seconds']:.1f} s, {rep['events_per_s']:,.0f} events/s",
        "",
        f"{'':{w}}{'model':>12}"
        + "".join(f"{BASELINE_LABELS.get(n, n)[:10]:>11}" for n in names)
        + f"{'vs best':>9}",
        f"{'':{w}}{m['version']:>12}",
    ]
    parts = [(None, "whole log"), ("first_half", "first half"), ("second_half", "second half")]
    for part, title in parts:
        mp = m[part] if part else m
        if not mp["all"]["positives"]:
            continue
        lines.append(f"{title}:")
        for seg, label in (
            ("all", "all positives"),
            ("history", f"users with >= {rep['min_history']} previous positives"),
        ):
            lines.append(f"  {label} (n={mp[seg]['positives']:,})")
            for metric in (f"recall@{k}", f"ndcg@{k}"):
                a = mp[seg][metric]
                row = f"    {metric:{w - 4}}{_fmt(a):>12}"
                for n in names:
                    row += f"{_fmt((bases[n][part] if part else bases[n])[seg][metric]):>11}"
                best, v = strongest(bases, part, seg, metric)
                row += f"{_ratio(a, v):>9}"
                if best:
                    row += f" ({BASELINE_LABELS.get(best, best)})"
                lines.append(row)
        row = f"  {'catalog coverage':{w - 2}}{_fmt(mp['coverage']):>12}"
        for n in names:
            row += f"{_fmt((bases[n][part] if part else bases[n])['coverage']):>11}"
        lines.append(row)
    lines.append("")
    lines.append(
        f"{'ranker (prequential)':28}{'examples':>10}{'positives':>10}{'AUC':>8}{'logloss':>9}"
    )
    for head, label in (
        ("click", "impression -> play"),
        ("watch", "play -> completion"),
        ("all", "both heads pooled"),
    ):
        r = rep["ranker"][head]
        note = "  abstains: one class" if r.get("abstains") else ""
        lines.append(
            f"  {label:26}{r['examples']:>10,}{r['positives']:>10,}"
            f"{_fmt(r['auc']):>8}{_fmt(r['log_loss']):>9}{note}"
        )
    return "\n".join(lines)


def _label(rep: dict[str, Any]) -> str:
    w = rep.get("workers", 1)
    if w == 1:
        return "1 worker"
    x = rep["exchange"]
    if not x["every_events"]:
        return f"{w} workers, no exchange"
    return f"{w} workers, exchange every {x['every_events']:,} ({x['factors']}/{x['ranker']})"


def format_workers(runs: list[dict[str, Any]]) -> str:
    """Quality with several simulated workers beside one worker and the baseline."""
    first = runs[0]
    k, seg = first["k"], "history"
    r, nd = f"recall@{k}", f"ndcg@{k}"
    one = first["model"][seg][r]
    lines = [
        f"workers (users with >= {first['min_history']} previous positives, "
        f"n={first['model'][seg]['positives']:,}; partitions {runs[-1]['partitions']})",
        f"{'':48}{r:>10}{nd:>9}{'vs 1':>7}{'all ' + r:>14}{'AUC':>7}{'events/s':>10}",
    ]
    for rep in runs:
        m = rep["model"]
        rel = m[seg][r] / one if one else None
        lines.append(
            f"  {_label(rep):46}{_fmt(m[seg][r]):>10}{_fmt(m[seg][nd]):>9}"
            f"{_fmt(rel, 3):>7}{_fmt(m['all'][r]):>14}{_fmt(rep['ranker']['all']['auc'], 3):>7}"
            f"{rep['events_per_s']:>10,.0f}"
        )
    b = first["baseline"]
    lines.append(
        f"  {'popularity baseline':46}{_fmt(b[seg][r]):>10}{_fmt(b[seg][nd]):>9}"
        f"{_fmt(b[seg][r] / one if one else None, 3):>7}{_fmt(b['all'][r]):>14}"
    )
    return "\n".join(lines)


class _Message:
    """The coordinates the batch core reads of a record."""

    __slots__ = ("headers", "key", "offset", "partition", "topic")

    def __init__(self, offset: int, key: bytes) -> None:
        self.topic, self.partition, self.offset = "replay", 0, offset
        self.key, self.headers = key, []


class _Record:
    __slots__ = ("message", "value")

    def __init__(self, offset: int, ev: dict[str, Any]) -> None:
        self.message = _Message(offset, ev["user_id"].encode())
        self.value = orjson.dumps(ev)


class _ReplayHooks:
    """A log replayed once, in order: every record is new, none reordered."""

    @staticmethod
    def admit(msg: Any) -> bool:
        return True

    @staticmethod
    def bind(event: Any) -> None:
        pass

    @staticmethod
    def before_event(msg: Any, user_id: str) -> None:
        pass

    @staticmethod
    def reordered(msg: Any, user_id: str) -> bool:
        return False


class _NoHealth:
    @staticmethod
    def play(user_id: str, title_id: str) -> None:
        pass

    @staticmethod
    def served(user_id: str, title_ids: list[str]) -> None:
        pass


class BatchCoreIngest:
    """Feeds the replay's events through the worker's per-batch core (one record per
    batch, judged by event time, no score messages): the same decoding, gate and folding
    as the worker. Counts what the core refused, by reason."""

    def __init__(self) -> None:
        self.offset = 0
        self.refused: Counter[str] = Counter()

    def __call__(self, engine: Engine, ev: dict[str, Any]) -> bool:
        self.offset += 1
        out = process_batch(
            [_Record(self.offset, ev)], engine, _ReplayHooks, _NoHealth, None, score=False
        )
        self.refused.update(out.rejected)
        return out.updated.total() > 0


def run(
    events_path: str,
    catalog_path: str,
    json_out: str | None = None,
    min_history: int = 5,
    k: int = 10,
    out: TextIO | None = None,
    err: TextIO | None = None,
    progress: bool = True,
    workers: int = 1,
    exchange_every: int | None = None,
    partitions: int | None = None,
    factors: str = "sum",
    ranker: str = "blend",
    exact_scan: bool = False,
) -> dict[str, Any]:
    """Replay and print the report; with ``workers`` > 1, also replay one worker and
    ``workers`` workers without exchange (and with, if ``exchange_every``) and compare."""
    out = out or sys.stdout
    err = err or sys.stderr
    t0 = time.perf_counter()
    catalog, bad_titles = load_catalog(catalog_path)
    events, bad = load_events(events_path)
    if bad_titles:
        print(
            f"catalog: skipped {sum(bad_titles.values())} invalid titles {dict(bad_titles)}",
            file=err,
        )
    if bad:
        print(f"events: skipped {sum(bad.values())} invalid lines {dict(bad)}", file=err)
    print(
        f"loaded {len(events):,} events and {len(catalog):,} titles "
        f"in {time.perf_counter() - t0:.1f} s",
        file=err,
    )
    total = len(events)
    report: Callable[[int, float], None] | None = None
    last = [-1.0]
    if progress:

        def report(n: int, seconds: float) -> None:
            if seconds - last[0] < 1.0 and n < total:
                return  # at most one progress line a second
            last[0] = seconds
            print(
                f"\rreplayed {n:,}/{total:,} events ({100 * n / max(1, total):.0f}%, "
                f"{n / max(seconds, 1e-9):,.0f}/s)",
                end="",
                file=err,
                flush=True,
            )

    plans: list[dict[str, Any]] = [{"workers": 1}]
    if workers > 1:
        parts = partitions or Settings().partitions
        plans.append({"workers": workers, "partitions": parts})
        if exchange_every:
            plans.append(
                {
                    "workers": workers,
                    "partitions": parts,
                    "exchange_every": exchange_every,
                    "factors": factors,
                    "ranker": ranker,
                }
            )
    runs = []
    for plan in plans:
        if progress and len(plans) > 1:
            print(f"run {len(runs) + 1}/{len(plans)}: {plan}", file=err)
        last[0] = -1.0
        core = BatchCoreIngest()
        rep = replay(
            events,
            catalog,
            k=k,
            min_history=min_history,
            progress=report,
            progress_every=max(1000, total // 100),
            partition_of=kafka_partition,
            ingest=core,
            exact_scan=exact_scan,
            **plan,
        )
        if progress:
            print(file=err)
        rep["invalid_events"] = sum(bad.values())
        rep["invalid_by_reason"] = dict(bad)
        rep["invalid_titles"] = sum(bad_titles.values())
        rep["refused_by_reason"] = dict(core.refused)  # duplicates, too_late, ...
        runs.append(rep)
    rep = runs[-1]
    print(format_table(rep), file=out)
    doc: dict[str, Any] = rep
    if len(runs) > 1:
        print("", file=out)
        print(format_workers(runs), file=out)
        doc = {**rep, "runs": runs}
    if json_out:
        Path(json_out).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        print(f"wrote {json_out}", file=err)
    return doc
