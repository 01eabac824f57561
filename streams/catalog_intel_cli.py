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
    from streams.synopses import side_rng, synopsis
    from streams.synthetic import SimConfig, Simulation

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
    return _derive(args)


def _derive(args: argparse.Namespace) -> int:
    """Derive tags for every record of a catalog file, learning from its tagged records."""
    import orjson

    from online_models.tagger import SynopsisTagger, editorial_tags, merge_tags, record_text
    from streams.jsonl import read_jsonl

    records = list(read_jsonl(args.file))
    tagger = SynopsisTagger().fit(r for r in records if editorial_tags(r))
    derived = tagger.predict([record_text(r) for r in records])
    for rec, d in zip(records, derived, strict=True):
        line = {"title_id": rec["title_id"], "tags": merge_tags(editorial_tags(rec), d)}
        sys.stdout.write(orjson.dumps(line).decode() + "\n")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tags", help="tags from synopses: eval (held-out tags) | derive FILE")
    p.add_argument("action", choices=["eval", "derive"])
    p.add_argument("file", nargs="?", help="derive: JSON-lines catalog")
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
    from streams.synthetic import SimConfig, Simulation

    sim = Simulation(SimConfig(users=users, titles=titles, seed=seed))
    engine = Engine(catalog=sim.title_catalog())
    for ev in sim.events(limit=events):
        engine.ingest(ev)
    return sim, engine
