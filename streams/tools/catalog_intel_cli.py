"""``reelstream tags ...`` and ``reelstream query ...``: catalog intelligence commands.

``add_commands(sub)`` is called from streams/cli.py's parser; every import of a
model happens inside a command so ``reelstream --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def tag_eval_report(
    titles: int, seed: int, holdout: float, unseen_phrasing: bool, split_seed: int = 0
) -> dict[str, Any]:
    """Per-dimension P/R on the synthetic catalog with the tags of ``holdout`` hidden.

    ``unseen_phrasing``: training synopses are rewritten from the even paraphrases of
    each tag and held-out ones from the odd paraphrases, so no held-out wording was
    seen in training.
    """
    from online_models.tagger import editorial_tags, evaluate, split_records
    from streams.tools.synopses import side_rng, synopsis
    from streams.tools.synthetic import SimConfig, Simulation

    records = Simulation(SimConfig(users=1, titles=titles, seed=seed)).catalog
    train, test = split_records(records, holdout, split_seed)
    if not unseen_phrasing:
        report = evaluate(train, test)
    else:

        def texts(recs: list, half: int) -> list[str]:
            return [
                synopsis(editorial_tags(r), side_rng(seed, f"{r['title_id']}/{half}"), half)
                for r in recs
            ]

        report = evaluate(train, test, texts(train, 0), texts(test, 1))
    report.update(
        catalog_titles=titles, seed=seed, holdout=holdout, unseen_phrasing=unseen_phrasing
    )
    return report


def cmd_tags(args: argparse.Namespace) -> int:
    import orjson

    from online_models.tagger import format_report

    if args.action == "eval":
        for unseen in (False, True) if args.both else (args.unseen_phrasing,):
            report = tag_eval_report(args.titles, args.seed, args.holdout, unseen)
            wording = "unseen phrasings" if unseen else "same phrase bank"
            print(f"-- held-out editorial tags, {wording} --")
            print(format_report(report))
            if args.json:
                suffix = ".unseen.json" if unseen and args.both else ""
                with open(args.json + suffix, "wb") as fh:
                    fh.write(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        return 0
    if args.action == "train":
        return _train_tagger(args)
    return _derive(args)


def _train_tagger(args: argparse.Namespace) -> int:
    """Fit the tagger on a catalog's editorial tags and write the file a worker loads
    (``REELSTREAM_TAGGER_FILE``): every worker then derives the same tags."""
    import os
    import time
    from pathlib import Path

    from online_models.tagger import SynopsisTagger, editorial_tags, record_text
    from streams.adapters.jsonl import read_jsonl

    if not args.file or not args.out:
        print("usage: reelstream tags train CATALOG.jsonl --out TAGGER", file=sys.stderr)
        return 2
    records = [r for r in read_jsonl(args.file) if editorial_tags(r) and record_text(r)]
    if not records:
        print(f"{args.file}: no titles with editorial tags and a synopsis", file=sys.stderr)
        return 2
    started = time.process_time()
    tagger = SynopsisTagger().fit(records)
    blob = tagger.to_bytes(trained_on=len(records))
    SynopsisTagger.from_bytes(blob)  # what a worker will load, checked before writing
    tmp = Path(f"{args.out}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, args.out)
    print(
        f"tagger fitted on {len(records)} titles ({', '.join(tagger.heads)}): wrote {args.out} "
        f"({len(blob):,} bytes) in {time.process_time() - started:.1f} s CPU"
    )
    return 0


def _derive(args: argparse.Namespace) -> int:
    """Write the catalog with ``derived_tags`` for dimensions its editors left empty.

    The tagger learns from the file's own editorial tags; the output loads with
    ``reelstream catalog load`` (derived tags then feed content similarity).
    """
    import orjson

    from online_models.tagger import SynopsisTagger, editorial_tags, merge_tags, record_text
    from streams.adapters.jsonl import read_jsonl

    records = list(read_jsonl(args.file))
    tagger = SynopsisTagger().fit(r for r in records if editorial_tags(r))
    derived = tagger.predict([record_text(r) for r in records])
    added = 0
    for rec, d in zip(records, derived, strict=True):
        merged = merge_tags(editorial_tags(rec), d)
        extra = {
            dim: [{k: t[k] for k in ("value", "confidence", "source")} for t in tags]
            for dim, tags in merged.items()
            if tags[0]["source"] == "derived"
        }
        added += sum(len(v) for v in extra.values())
        out = {**rec, "derived_tags": extra} if extra else rec
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
    print(f"{len(records)} records, {added} derived tags added", file=sys.stderr)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """Answer one request for one viewer against a replayed world, print the answer."""
    import orjson

    from online_models.watchlist import QueryService

    if args.catalog:
        engine = replayed_engine(args.catalog, args.event_log)
    else:
        _, engine = simulated_engine(args.users, args.titles, args.seed, args.events)
    svc = QueryService(engine, now_year=args.now_year)
    answer = svc.answer(args.user, args.text, args.k, engine.profiles.get(args.user))
    if args.json:
        print(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
        return 0 if answer["answerable"] else 2
    print(format_answer(answer))
    return 0 if answer["answerable"] else 2


def format_answer(answer: dict[str, Any]) -> str:
    intent = answer["intent"]
    hard = {k: v for k, v in intent["hard"].items() if v not in (None, [])}
    lines = [
        f"request: {answer['text']!r}",
        f"hard: {hard or '-'}",
        f"soft: {intent['soft']['wanted'] or '-'}  mood: {intent['soft']['mood'] or '-'}",
    ]
    if intent["similar_to"]:
        lines.append("like: " + ", ".join(t["name"] for t in intent["similar_to"]))
    if intent["corrections"]:
        lines.append(f"read as: {intent['corrections']}")
    if intent["unknown_words"]:
        lines.append(f"not understood: {', '.join(intent['unknown_words'])}")
    lines += [f"note: {n}" for n in intent["notes"]]
    if not answer["answerable"] or not answer["items"]:
        lines.append(f"no answer: {answer['reason']}")
        return "\n".join(lines)
    who = "your model" if answer["personalized"] else "popularity (unknown viewer)"
    lines.append(f"{answer['satisfying']} titles satisfy the request; ranked by {who}:")
    for it in answer["items"]:
        mins = round(it["runtime_s"] / 60)
        lines.append(
            f"{it['rank']:>3}. {it['name']:<24} {it['release_year']} {mins:>4} min "
            f"{'/'.join(it['genres']):<22} {'; '.join(it['reasons'])}"
        )
    return "\n".join(lines)


def replayed_engine(catalog_path: str, events_path: str | None) -> Any:
    from features.catalog import parse_title
    from online_models.engine import Engine
    from streams.adapters.jsonl import read_jsonl

    engine = Engine()
    for rec in read_jsonl(catalog_path):
        engine.catalog.upsert(parse_title(rec))
    for ev in read_jsonl(events_path) if events_path else ():
        engine.ingest(ev)
    return engine


def forecast_backtest_report(titles: int, seed: int, warmup: int = 100) -> dict[str, Any]:
    """Prequential backtest on the greenlight slate, with the planted-mean floor beside it."""
    import math

    import numpy as np

    from online_models.forecast import backtest
    from streams.tools.greenlight_sim import REGIONS, Slate, SlateConfig

    slate = Slate(SlateConfig(titles=titles, seed=seed))
    report = backtest([(t.attributes, t.audience) for t in slate.titles], REGIONS, warmup=warmup)
    # The planted mean knows every planted effect but not quality and noise: the floor.
    errs = [
        abs(t.planted[r] - math.log1p(t.audience[r]))
        for t in slate.titles[warmup:]
        for r in REGIONS
    ]
    report["planted_mean_mae_log"] = round(float(np.mean(errs)), 4)
    report["seed"] = seed
    return report


def cmd_forecast(args: argparse.Namespace) -> int:
    import orjson

    if args.target == "backtest":
        report = forecast_backtest_report(args.titles, args.seed, args.warmup)
        print(
            f"prequential backtest: {report['titles']} titles released in order "
            f"({report['scored']} scored after {report['titles'] - report['scored']} warm-up), "
            f"{len(report['regions'])} regions, {report['confidence']:.0%} intervals"
        )
        print(f"{'method':<16} {'MAE log':>8} {'coverage':>9} {'width log':>10}")
        for name, s in report["methods"].items():
            print(f"{name:<16} {s['mae_log']:>8.3f} {s['coverage']:>9.3f} {s['width_log']:>10.3f}")
        print(f"{'planted mean':<16} {report['planted_mean_mae_log']:>8.3f}  (floor: knows all")
        print("                  planted effects, not quality or noise)")
        for r, s in report["model_by_region"].items():
            print(f"  {r}: MAE {s['mae_log']:.3f} coverage {s['coverage']:.3f}")
        if args.json:
            with open(args.json, "wb") as fh:
                fh.write(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        return 0
    if args.target == "slate":
        return _write_slate(args)
    if args.target == "train":
        return _train(args)
    if args.target == "publish":
        return _publish(args)
    from online_models.forecast import ForecastInputError, parse_attributes, parse_regions
    from streams.adapters.jsonl import read_jsonl

    model = _state_model(args.state) if args.state else _slate_model(args.titles, args.seed)
    for n, rec in enumerate(read_jsonl(args.target), 1):
        try:
            attrs = parse_attributes(rec.get("attributes", rec))
            regions = parse_regions(rec["regions"], model.regions) if "regions" in rec else None
        except ForecastInputError as exc:
            print(f"{args.target}:{n}: {exc}", file=sys.stderr)
            return 2
        out = {"attributes": attrs, "forecast": model.forecast(attrs, regions)}
        print(orjson.dumps(out).decode())
    return 0


def _slate_model(titles: int, seed: int) -> Any:
    from online_models.forecast import GreenlightForecaster
    from streams.tools.greenlight_sim import REGIONS, Slate, SlateConfig

    model = GreenlightForecaster(REGIONS)
    for t in Slate(SlateConfig(titles=titles, seed=seed)).titles:
        model.learn(t.attributes, t.audience, t.title_id)
    return model


def _state_model(path: str) -> Any:
    from pathlib import Path

    from online_models.forecast import build, decode_state

    return build(*decode_state(Path(path).read_bytes()))


def _write_slate(args: argparse.Namespace) -> int:
    """The simulated slate as released titles' results (the input of ``forecast train``)."""
    import orjson

    from streams.tools.greenlight_sim import Slate, SlateConfig

    out = open(args.file, "wb") if args.file else sys.stdout.buffer  # noqa: SIM115
    try:
        for t in Slate(SlateConfig(titles=args.titles, seed=args.seed)).titles:
            rec = {"title_id": t.title_id, "attributes": t.attributes, "audience": t.audience}
            out.write(orjson.dumps(rec) + b"\n")
    finally:
        if args.file:
            out.close()
    return 0


def _publish(args: argparse.Namespace) -> int:
    """Released titles' results to ``<app_id>-title-results``: running workers learn them."""
    import asyncio

    from online_models.forecast import ForecastInputError
    from streams.adapters.jsonl import JsonlError, read_jsonl
    from streams.adapters.kafka_admin import ensure_topics_async
    from streams.adapters.producer import EventProducer
    from streams.settings import Settings

    if not args.file:
        print("usage: reelstream forecast publish RESULTS.jsonl", file=sys.stderr)
        return 2
    settings = Settings.from_env()

    async def publish() -> int:
        await ensure_topics_async(settings)
        async with EventProducer(settings) as producer:
            return await producer.send_results(read_jsonl(args.file))

    try:
        n = asyncio.run(publish())
    except (ForecastInputError, JsonlError) as exc:
        print(f"{args.file}: {exc}; nothing after it was sent", file=sys.stderr)
        return 2
    print(f"published {n} released titles' results to {settings.title_results_topic}")
    return 0


def _train(args: argparse.Namespace) -> int:
    """Validate released titles' results, backtest them, write the forecaster state file.

    The file is what a worker loads (``REELSTREAM_FORECAST_STATE``); it holds the
    validated results in order and the model is rebuilt from them (no pickle).
    """
    import os
    import time
    from pathlib import Path

    import orjson

    from online_models.forecast import (
        ForecastInputError,
        backtest,
        build,
        decode_state,
        encode_state,
        parse_result,
    )
    from streams.adapters.jsonl import JsonlError, read_jsonl

    if not args.file or not args.out:
        print("usage: reelstream forecast train RESULTS.jsonl --out STATE", file=sys.stderr)
        return 2
    results: list = []
    seen: set[str] = set()
    regions: list[str] | None = args.regions.split(",") if args.regions else None
    n = 0
    try:
        for rec in read_jsonl(args.file):
            n += 1
            tid, attrs, audience = parse_result(rec, regions)
            regions = regions or list(audience)
            if tid in seen:
                raise ForecastInputError("invalid_result", f"{tid} appears twice")
            seen.add(tid)
            results.append((tid, attrs, audience))
    except ForecastInputError as exc:
        print(f"{args.file}: record {n}: {exc.detail}", file=sys.stderr)
        return 2
    except JsonlError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not results or regions is None:
        print(f"{args.file}: no released titles", file=sys.stderr)
        return 2
    started = time.process_time()
    report = backtest([(a, y) for _, a, y in results], regions, warmup=min(100, len(results) // 4))
    extra = {"created_ts": int(time.time() * 1000), "backtest": report["methods"]}
    blob = encode_state(results, regions, extra=extra)
    model = build(*decode_state(blob))  # what a worker will load, checked before writing
    tmp = Path(f"{args.out}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, args.out)
    cpu = time.process_time() - started
    m = report["methods"]["model"]
    print(
        f"{model.seen} released titles, regions {','.join(regions)}: wrote {args.out} "
        f"({len(blob):,} bytes); prequential MAE log {m['mae_log']:.3f}, "
        f"coverage {m['coverage']:.3f} (backtest and check: {cpu:.1f} s CPU)"
    )
    if args.json:
        with open(args.json, "wb") as fh:
            fh.write(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "forecast",
        help="greenlight forecasts: backtest | slate [FILE] | train RESULTS --out STATE | "
        "publish RESULTS | FILE",
    )
    p.add_argument(
        "target",
        help="'backtest'; 'slate' (simulated released titles' results); 'train' (write a "
        "state file); 'publish' (results to the topic running workers learn from); or a "
        "JSON-lines file of attribute records to forecast",
    )
    p.add_argument(
        "file", nargs="?", help="slate: output file; train, publish: released titles' results"
    )
    p.add_argument("--out", help="train: the forecaster state file to write")
    p.add_argument(
        "--regions", help="train: regions, comma-separated (default: the first record's)"
    )
    p.add_argument("--state", help="FILE: forecast with this state (default: train on the slate)")
    p.add_argument("--titles", type=int, default=1500, help="slate size (1500)")
    p.add_argument("--seed", type=int, default=7, help="slate seed (7)")
    p.add_argument("--warmup", type=int, default=100, help="backtest: titles not scored")
    p.add_argument("--json", help="backtest, train: also write the report here")
    p.set_defaults(func=cmd_forecast)

    p = sub.add_parser("query", help="a watchlist in plain language for one viewer")
    p.add_argument("text", help='the request, e.g. "no horror, under 2 hours, for the kids"')
    p.add_argument("--user", required=True, help="viewer id (e.g. u000001)")
    p.add_argument("--k", type=int, default=10, help="titles returned (default 10)")
    p.add_argument("--json", action="store_true", help="print the full answer as JSON")
    p.add_argument("--catalog", help="JSON-lines catalog (default: the simulated one)")
    p.add_argument("--event-log", help="with --catalog: JSON-lines events to replay first")
    p.add_argument("--users", type=int, default=300, help="simulated viewers (300)")
    p.add_argument("--titles", type=int, default=600, help="simulated catalog size (600)")
    p.add_argument("--seed", type=int, default=42, help="simulation seed (42)")
    p.add_argument("--events", type=int, default=30_000, help="simulated events replayed")
    p.add_argument("--now-year", type=int, default=None, help="'this year' (default: clock)")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser(
        "tags",
        help="tags from synopses: eval (held-out tags) | derive FILE > enriched.jsonl | "
        "train FILE --out TAGGER (the file a worker tags arriving records with)",
    )
    p.add_argument("action", choices=["eval", "derive", "train"])
    p.add_argument("file", nargs="?", help="derive, train: JSON-lines catalog")
    p.add_argument("--out", help="train: the tagger file to write")
    p.add_argument("--titles", type=int, default=2000, help="eval: synthetic catalog size")
    p.add_argument("--seed", type=int, default=42, help="eval: simulation seed")
    p.add_argument("--holdout", type=float, default=0.3, help="eval: share of titles hidden")
    p.add_argument(
        "--unseen-phrasing", action="store_true", help="eval: test on wordings never trained on"
    )
    p.add_argument("--both", action="store_true", help="eval: both phrasing settings")
    p.add_argument("--json", help="eval: also write the report here")
    p.set_defaults(func=cmd_tags)


def simulated_engine(users: int, titles: int, seed: int, events: int) -> tuple[Any, Any]:
    """(simulation, engine) after folding ``events`` simulated events into a fresh engine."""
    from online_models.engine import Engine
    from streams.tools.synthetic import SimConfig, Simulation

    sim = Simulation(SimConfig(users=users, titles=titles, seed=seed))
    engine = Engine(catalog=sim.title_catalog())
    for ev in sim.events(limit=events):
        engine.ingest(ev)
    return sim, engine
