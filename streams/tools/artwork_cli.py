"""``reelstream artwork-eval``, ``artwork-obd``, ``artwork-sim``, ``experiments-*`` (cli.py).

``artwork-eval FILE`` reads logged decisions with rewards (JSON lines, the
records the attributor closes: docs/artwork-and-experiments.md) and prints, for
the logging policy, uniform random, the best single variant per title and a
linear Thompson sampling policy, the replay, IPS, SNIPS and DR estimates of the
mean reward per decision with confidence intervals.

``artwork-obd`` runs those estimators on the Open Bandit Dataset sample against its
on-policy truth (streams/tools/obd_check.py; the sample is fetched by obd_sample.py).

``artwork-sim`` runs the closed-loop simulation with a planted artwork effect
(streams/tools/artwork_sim.py) for several policies and, from the uniform policy's
log, the off-policy estimates of the learned policy beside its simulated truth.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np


def _fmt(e: dict[str, Any]) -> str:
    extra = f" n={e['n']}"
    if e.get("ess") is not None:
        extra += f" ess={e['ess']:.0f} clipped={e['clipped']}"
    return f"{e['value']:.4f} [{e['low']:.4f}, {e['high']:.4f}]{extra}"


def learned_policy_report(
    records: list[dict[str, Any]],
    clip: float | None,
    bootstrap: int,
    alpha: float = 0.05,
    floor: float = 0.03,
    pool: str = "variant",
    styles: dict[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """A linear TS policy learned on the log's first half, evaluated on its second half,
    and the same policy learning online through the whole log, evaluated by replay."""
    from online_models.artwork import ArtworkConfig, ArtworkPolicy
    from online_models.artwork_eval import dr, ips, mean_reward_model, replay, snips

    half = len(records) // 2
    train, test = records[:half], records[half:]
    pol = ArtworkPolicy(ArtworkConfig(floor=floor, pool=pool, seed=1))
    if styles:
        pol.styles.update(styles)
    for rec in train:
        pol.update(rec["choice"], np.asarray(rec["x"], dtype=float), float(rec["reward"]))

    def probs(rec: dict[str, Any]) -> list[float]:
        d = pol.choose(rec["variants"], np.asarray(rec["x"], dtype=float))
        return list(d.probabilities)

    cache: dict[int, list[float]] = {}

    def target(rec: dict[str, Any]) -> list[float]:  # one draw of the probabilities per record
        key = id(rec)
        if key not in cache:
            cache[key] = probs(rec)
        return cache[key]

    q = mean_reward_model(train)
    out = {
        "ips": ips(test, target, clip, alpha, bootstrap).as_dict(),
        "snips": snips(test, target, clip, alpha, bootstrap).as_dict(),
        "dr": dr(test, target, q, clip, alpha, bootstrap).as_dict(),
    }
    online = ArtworkPolicy(ArtworkConfig(floor=floor, pool=pool, seed=2))
    if styles:
        online.styles.update(styles)

    def choose(rec: dict[str, Any]) -> str:
        return online.choose(rec["variants"], np.asarray(rec["x"], dtype=float)).choice

    def update(rec: dict[str, Any]) -> None:
        online.update(rec["choice"], np.asarray(rec["x"], dtype=float), float(rec["reward"]))

    out["replay (learning online)"] = replay(records, choose, update, alpha).as_dict()
    return out


def cmd_artwork_eval(args: argparse.Namespace) -> int:
    from online_models.artwork_eval import (
        best_variant_per_title,
        evaluate,
        logged,
        pseudo_inverse,
        uniform,
    )
    from streams.adapters.jsonl import read_jsonl

    records = [r for r in read_jsonl(args.file) if "reward" in r]
    if not records:
        print("no records with a reward")
        return 1
    clip = args.clip if args.clip > 0 else None
    targets = {
        "logging": logged,
        "uniform": uniform,
        "best-variant-per-title": best_variant_per_title(records),
    }
    report: dict[str, Any] = evaluate(records, targets, clip=clip, bootstrap=args.bootstrap)
    if any(r.get("request_id") or r.get("slate_id") for r in records):
        # The row as the unit: titles of one row compete for one click (pseudo-inverse).
        for name, target in targets.items():
            report[name]["pi-slate"] = pseudo_inverse(records, target).as_dict()
    half = len(records) // 2
    held = evaluate(
        records[half:],
        {"best-variant-per-title (fit on 1st half)": best_variant_per_title(records[:half])},
        clip=clip,
        bootstrap=args.bootstrap,
    )
    report.update(held)
    styles: dict[str, str] = {}
    if args.catalog:
        for rec in read_jsonl(args.catalog):
            for a in rec.get("artwork") or []:
                if isinstance(a, dict) and a.get("style"):
                    styles[a["artwork_id"]] = a["style"]
    pool = "style" if styles else "variant"
    report[f"learned-lints ({pool})"] = learned_policy_report(
        records, clip, args.bootstrap, pool=pool, styles=styles
    )
    mean = float(np.mean([float(r["reward"]) for r in records]))
    print(f"{len(records)} decisions, logged mean reward {mean:.4f}, clip {clip}")
    for name, res in report.items():
        for est, e in res.items():
            print(f"  {name:40s} {est:26s} {_fmt(e)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n": len(records), "logged_mean": mean, "policies": report}, fh, indent=2)
    return 0


def cmd_artwork_sim(args: argparse.Namespace) -> int:
    from streams.tools.artwork_sim import run

    kw = {
        "users": args.users,
        "titles": args.titles,
        "days": args.days,
        "seed": args.seed,
        "effect": args.effect,
        "outside": args.outside,
    }
    results = {}
    for pol in args.policies.split(","):
        r = run(pol, keep_records=pol == "uniform", **kw)
        if args.log and pol == "uniform":
            from streams.adapters.jsonl import write_jsonl

            n = write_jsonl(args.log, r.records)
            print(f"wrote {n} uniform-policy decisions with rewards to {args.log}")
        results[pol] = r
        print(
            f"{pol:8s} exposures {r.exposures:7d} quality plays {r.quality_plays:6d} "
            f"take rate {r.take_rate:.4f} (days {args.days // 2}+: "
            f"{r.take_rate_after(args.days // 2):.4f})",
            flush=True,
        )
    if "uniform" in results and "learned" in results:
        base, got = results["uniform"], results["learned"]
        lift = got.take_rate_after(args.days // 2) / base.take_rate_after(args.days // 2) - 1
        print(f"learned vs uniform, days {args.days // 2}+: {100 * lift:+.1f} % take rate")
    if "uniform" in results:
        fixed_policy_check(results, args)
    return 0


def fixed_policy_check(results: dict[str, Any], args: argparse.Namespace) -> None:
    """Off-policy estimates from the uniform log beside each fixed policy's simulated truth."""
    from online_models.artwork import DEVICES, FEATURES
    from online_models.artwork_eval import (
        deterministic,
        dr,
        ips,
        mean_reward_model,
        pseudo_inverse,
        replay,
        slate_ips,
        snips,
    )
    from streams.tools.synthetic import ARTWORK_STYLES, SimConfig, Simulation

    log = results["uniform"].records
    sim = Simulation(SimConfig(users=args.users, titles=args.titles, seed=args.seed))
    users = {u.user_id: u for u in sim.users}
    styles = {a["artwork_id"]: a["style"] for rec in sim.catalog for a in rec.get("artwork", [])}
    dev0 = FEATURES.index("device:tv")

    def device(rec: dict[str, Any]) -> str:
        hot = [d for i, d in enumerate(DEVICES) if rec["x"][dev0 + i]]
        return hot[0] if hot else ""

    def oracle(rec: dict[str, Any]) -> str:
        k = ARTWORK_STYLES.index(sim.preferred_style(users[rec["user_id"]], device(rec)))
        return rec["variants"][k]

    picks = {"first": lambda rec: rec["variants"][0], "oracle": oracle}
    q = mean_reward_model(log)
    print("fixed policies: simulated truth (closed loop) vs estimates from the uniform log")
    for name, pick in picks.items():
        if name not in results:
            continue
        truth = results[name].take_rate
        pol = deterministic(pick)
        for e in (
            ips(log, pol, 20.0),
            snips(log, pol, 20.0),
            dr(log, pol, q, 20.0),
            replay(log, pick),
            pseudo_inverse(log, pol),  # the row as the unit (titles of a row compete)
            slate_ips(log, pol),
        ):
            inside = "inside" if e.low <= truth <= e.high else "OUTSIDE"
            print(f"  {name:7s} truth {truth:.4f}  {e.estimator:7s} {_fmt(e.as_dict())} {inside}")
    rep = learned_policy_report(log, 20.0, 0, pool="style", styles=styles)
    print("a style-pooled LinTS policy, estimated from the uniform log:")
    for est, e in rep.items():
        print(f"  {est:26s} {_fmt(e)}")


def cmd_artwork_obd(args: argparse.Namespace) -> int:
    """Fetch the Open Bandit Dataset sample if needed, then the estimators against its truth."""
    from pathlib import Path

    from streams.tools import obd_check, obd_sample

    dest = Path(args.dir) if args.dir else None
    try:
        obd_sample.fetch(dest)
    except obd_sample.ObdError as exc:
        print(f"error: {exc}")
        return 1
    clip = args.clip if args.clip > 0 else None
    report = {}
    for campaign in args.campaign.split(","):
        a, b = obd_sample.load_prior(campaign, dest)
        c = obd_check.check(
            obd_sample.load_log("random", campaign, len(a), dest),
            obd_sample.load_log("bts", campaign, len(a), dest),
            a,
            b,
            clip=clip,
            draws=args.draws,
            seed=args.seed,
        )
        print("\n".join(obd_check.format_check(campaign, c, clip, args.draws)), flush=True)
        report[campaign] = obd_check.as_dict(c)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0


def cmd_experiments_check(args: argparse.Namespace) -> int:
    from collections import Counter

    from online_models.experiments import Assigner

    a = Assigner.from_file(args.file)
    counts: Counter[str] = Counter()
    for i in range(args.users):
        for _, (e, arm) in a.assign(f"u{i:06d}").items():
            counts[f"{e.id}:{arm.name}"] += 1
    for layer, exps in sorted(a.layers.items()):
        print(f"layer {layer}")
        for e in exps:
            for arm in e.arms:
                want = e.traffic * arm.share
                got = counts[f"{e.id}:{arm.name}"] / args.users
                print(f"  {e.id}:{arm.name:20s} configured {want:.4f} assigned {got:.4f}")
    return 0


def cmd_experiments_switch(args: argparse.Namespace) -> int:
    """``reelstream experiments kill|resume ID``: the kill switch of a bandit experiment.

    One record on the allocation topic (key ``switch/<id>``); every worker follows the
    topic and sends the experiment's users to its control arm (kill) or back to the
    bandit's shares (resume) as soon as it reads it.
    """
    import asyncio
    import time

    import orjson

    from online_models.bandit_live import Switch, record_key
    from online_models.experiments import Assigner
    from streams.adapters.kafka_admin import ensure_topics_async
    from streams.adapters.producer import EventProducer
    from streams.settings import Settings

    settings = Settings.from_env()
    path = args.file or settings.experiments_file
    if not path:
        print(
            "no experiments file: pass --file or set REELSTREAM_EXPERIMENTS_FILE", file=sys.stderr
        )
        return 2
    exp = Assigner.from_file(path).experiments.get(args.experiment_id)
    if exp is None or exp.bandit is None:
        print(f"{args.experiment_id!r} is not a bandit experiment of {path}", file=sys.stderr)
        return 2
    switch = Switch(exp.id, args.action == "kill", int(time.time() * 1000))

    async def send() -> None:
        await ensure_topics_async(settings)
        async with EventProducer(settings) as producer:
            await producer.send_raw(
                settings.experiment_allocation_topic,
                record_key("switch", exp.id).encode(),
                orjson.dumps(switch.as_dict()),
            )

    asyncio.run(send())
    what = f"all traffic to {exp.control!r}" if switch.killed else "the bandit's shares again"
    print(
        f"{exp.id}: kill switch {'on' if switch.killed else 'off'} ({what}); workers apply it "
        f"as they read {settings.experiment_allocation_topic}; GET /experiments/{exp.id} "
        "shows allocation.kill_switch"
    )
    return 0


def cmd_experiments_sim(args: argparse.Namespace) -> int:
    from online_models.experiment_sim import simulate

    common = {"users": args.users, "look_every": args.look_every, "alpha": args.alpha}
    aa = simulate(args.experiments, seed=args.seed, **common)
    print(
        f"A/A: {aa.experiments} experiments, {aa.looks} looks each (every {args.look_every}): "
        f"false-positive rate {aa.rate:.3f} (alpha {args.alpha}); "
        f"a fixed-n 95 % interval read at every look: {aa.naive_rate:.3f}"
    )
    for cup in (True, False):
        ab = simulate(
            args.experiments, effect=args.effect, use_cuped=cup, seed=args.seed + 1, **common
        )
        med = float(np.median(ab.first_look)) if ab.first_look else float("nan")
        print(
            f"planted +{100 * args.effect:.0f} % minutes, CUPED {'on ' if cup else 'off'}: "
            f"detected in {ab.rate:.3f} of experiments, median stop at {med:.0f} users"
        )
    if args.bandit_seeds:
        from online_models.bandit_traffic import coverage

        cov = coverage([0.10, 0.12, 0.15], seeds=args.bandit_seeds)
        arms = ", ".join(f"{a} {c:.2f}" for a, c in cov["arm_coverage"].items())
        print(
            f"bandit traffic (means 0.10, 0.12, 0.15; 10 batches of 1000; min share 0.05; "
            f"{args.bandit_seeds} seeds): AIPW 95 % coverage {arms}; best-vs-control contrast "
            f"{cov['contrast_coverage']:.2f}; final share of the best arm "
            f"{cov['final_share_of_best']:.2f}"
        )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "artwork-eval",
        help="off-policy estimates (replay, IPS, SNIPS, DR) of artwork policies on a decision log",
    )
    p.add_argument("file", help="JSON-lines decisions with rewards")
    p.add_argument("--clip", type=float, default=20.0, help="weight clip (0: none; default 20)")
    p.add_argument("--bootstrap", type=int, default=0, help="bootstrap resamples (0: normal CI)")
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument("--catalog", help="JSON-lines catalog: pool the learned policy by style")
    p.set_defaults(func=cmd_artwork_eval)

    p = sub.add_parser(
        "artwork-obd",
        help="the off-policy estimators on the Open Bandit Dataset sample vs its on-policy truth",
    )
    p.add_argument("--campaign", default="all,men,women", help="comma-separated: all, men, women")
    p.add_argument("--clip", type=float, default=20.0, help="weight clip (0: none; default 20)")
    p.add_argument("--draws", type=int, default=100_000, help="Monte Carlo draws of the BTS slate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", help="sample cache (default .cache/obd; fetched when absent)")
    p.add_argument("--json", help="also write the report as JSON here")
    p.set_defaults(func=cmd_artwork_obd)

    p = sub.add_parser("artwork-sim", help="artwork policies on a simulation with a planted effect")
    p.add_argument("--policies", default="uniform,first,learned,oracle")
    p.add_argument("--users", type=int, default=400)
    p.add_argument("--titles", type=int, default=150)
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--effect", type=float, default=1.5, help="planted log-weight of the style")
    p.add_argument(
        "--outside",
        type=float,
        default=1.0,
        help="weight of clicking nothing, times the row's (large: titles barely compete)",
    )
    p.add_argument("--log", help="write the uniform policy's decisions with rewards here")
    p.set_defaults(func=cmd_artwork_sim)

    p = sub.add_parser(
        "experiments-check", help="validate an experiments file and show its assignment shares"
    )
    p.add_argument("file", help="experiments TOML or YAML")
    p.add_argument("--users", type=int, default=100_000, help="synthetic user ids to assign")
    p.set_defaults(func=cmd_experiments_check)

    p = sub.add_parser("experiments", help="kill switch of a bandit experiment: kill | resume ID")
    p.add_argument("action", choices=["kill", "resume"])
    p.add_argument("experiment_id", help="a bandit experiment of the experiments file")
    p.add_argument("--file", help="experiments file (default: REELSTREAM_EXPERIMENTS_FILE)")
    p.set_defaults(func=cmd_experiments_switch)

    p = sub.add_parser(
        "experiments-sim",
        help="A/A false positives and power of the always-valid analysis, looking repeatedly",
    )
    p.add_argument("--experiments", type=int, default=200)
    p.add_argument("--users", type=int, default=20_000, help="exposed users per experiment")
    p.add_argument("--look-every", type=int, default=1_000)
    p.add_argument("--effect", type=float, default=0.1, help="planted relative arm effect")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--bandit-seeds", type=int, default=100, help="adaptive experiments for AIPW coverage"
    )
    p.set_defaults(func=cmd_experiments_sim)
