"""The ``reelstream`` command: stack, worker, api, produce, catalog, synth, demo, replay, import,
and operations (tail-scores, rebuild-redis, loadtest, bench, soak)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import fields

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from streams import logs
from streams.adapters import kafka_internals
from streams.settings import Settings


def _sim(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from streams.tools.synthetic import SimConfig, Simulation

    return Simulation(SimConfig(users=args.users, titles=args.titles, seed=args.seed))


def _add_sim_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--users", type=int, default=1000, help="simulated viewers (default 1000)")
    p.add_argument("--titles", type=int, default=400, help="catalog size (default 400)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")


def cmd_stack(args: argparse.Namespace) -> int:
    from streams.tools import stack

    flags = [f"--{f}" for f in ("secure", "prometheus") if getattr(args, f, False)]
    return stack.main([args.action, *flags])


def _flags_to_env(**flags: object) -> None:
    """Settings given as flags win over ``REELSTREAM_*``: written into the environment, since
    the worker's app module reads ``Settings.from_env()`` at import; ``api`` reads them the
    same way. 0 and "" mean the flag was not given."""
    known = {f.name for f in fields(Settings)}
    for name, value in flags.items():
        if name not in known:
            raise ValueError(f"no setting {name!r}")
        if value:
            os.environ[f"REELSTREAM_{name.upper()}"] = str(value)


def cmd_worker(args: argparse.Namespace) -> int:
    _flags_to_env(web_port=args.web_port)
    from faust.worker import Worker

    from streams.worker.app import app, settings

    worker = Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        logging_config=logs.logging_config(settings.log_level),
    )
    if not sys.stdout.isatty():
        worker.spinner = None  # its cursor escape codes would land in log files
    worker.execute_from_commandline()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    _flags_to_env(api_port=args.port, api_host=args.host)
    from streams.api import serving

    return serving.run(Settings.from_env())


def cmd_synth(args: argparse.Namespace) -> int:
    import orjson

    from streams.adapters.jsonl import write_jsonl

    sim = _sim(args)
    n = write_jsonl(args.out, sim.events(limit=args.events))
    print(f"wrote {n} events to {args.out}")
    if args.catalog_out:
        write_jsonl(args.catalog_out, sim.catalog)
        print(f"wrote {len(sim.catalog)} titles to {args.catalog_out}")
    if args.truth:
        with open(args.truth, "wb") as fh:
            fh.write(orjson.dumps(sim.ground_truth(), option=orjson.OPT_INDENT_2))
        print(f"wrote ground truth to {args.truth}")
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from streams.adapters.jsonl import read_jsonl
    from streams.tools.traffic import send_events

    settings = Settings.from_env()
    events = read_jsonl(args.file) if args.file else _sim(args).events(limit=args.events)

    def progress(n: int, rate: float) -> None:
        print(f"\rsent {n:,} events ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)

    n = asyncio.run(
        send_events(
            settings,
            events,
            rate=args.rate,
            live=args.live,
            envelope=args.envelope,
            progress=None if args.quiet else progress,
        )
    )
    print(f"\nsent {n:,} events to {settings.events_topic}", file=sys.stderr)
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from streams.adapters.jsonl import read_jsonl, write_jsonl
    from streams.adapters.producer import EventProducer

    if args.action == "synth":
        n = write_jsonl(args.file, _sim(args).catalog)
        print(f"wrote {n} titles to {args.file}")
        return 0
    settings = Settings.from_env()

    async def load() -> int:
        async with EventProducer(settings) as producer:
            return await producer.send_titles(read_jsonl(args.file))

    n = asyncio.run(load())
    print(f"published {n} titles to {settings.catalog_topic}")
    return 0


def cmd_soak(args: argparse.Namespace) -> int:
    from streams.tools.soak import SoakConfig, main

    cfg = SoakConfig(
        minutes=args.minutes,
        rate=args.rate,
        viewers=args.viewers,
        cache=args.cache,
        warmup_minutes=args.warmup_minutes,
        sample_s=args.sample_s,
        partitions=args.partitions,
        keep=args.keep,
        history=args.history,
    )
    return main(cfg, args.json, args.quiet)


def cmd_bench(args: argparse.Namespace) -> int:
    from streams.tools.bench import BenchConfig, main, parse_env_pairs

    cfg = BenchConfig(
        events=args.events,
        users=args.users,
        titles=args.titles,
        seed=args.seed,
        partitions=args.partitions,
        envelope=args.envelope,
        freshness_seconds=args.freshness_seconds,
        freshness_warmup_s=args.freshness_warmup_seconds,
        freshness_rate=args.freshness_rate,
        scale=not args.no_scale,
        profile_out=args.profile,
        keep=args.keep,
        worker_env=parse_env_pairs(args.worker_env),
    )
    if args.exp_fetch_max_wait_ms:
        cfg.worker_env["REELSTREAM_EXP_FETCH_MAX_WAIT_MS"] = str(args.exp_fetch_max_wait_ms)
    if args.exp_cython_optimizations:
        cfg.worker_env["REELSTREAM_EXP_CYTHON_OPTIMIZATIONS"] = "1"
    if args.sweep:
        from streams.tools import bench_sweep

        try:
            sizes = bench_sweep.parse_sizes(args.sweep)
        except ValueError as exc:
            print(f"reelstream bench: {exc}", file=sys.stderr)
            return 2
        return bench_sweep.main(sizes, cfg, json_path=args.json, quiet=args.quiet)
    return main(cfg, json_path=args.json, quiet=args.quiet)


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.tools.demo import run_demo

    return run_demo(
        seconds=args.seconds, rate=args.rate, users=args.users, titles=args.titles, seed=args.seed
    )


def cmd_replay(args: argparse.Namespace) -> int:
    from streams.tools.replay import run

    run(
        args.events,
        args.catalog,
        json_out=args.json,
        min_history=args.min_history,
        k=args.k,
        progress=not args.quiet,
        workers=args.workers,
        exchange_every=args.exchange_every,
        partitions=args.partitions,
        factors=args.factors,
        ranker=args.ranker_merge,
        exact_scan=args.exact_scan,
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from streams.tools.import_logs import run

    run(
        args.kind,
        args.source,
        args.out,
        args.catalog_out,
        overlap=args.overlap,
        json_out=args.json,
    )
    return 0


def cmd_tail_scores(args: argparse.Namespace) -> int:
    from streams.tools.tail_scores import run

    run(
        Settings.from_env(),
        from_beginning=args.from_beginning,
        max_messages=args.max,
        top=args.top,
        idle_timeout_s=args.idle_timeout,
    )
    return 0


def cmd_rebuild_redis(args: argparse.Namespace) -> int:
    from streams.adapters.rebuild import rebuild_redis

    settings = Settings.from_env()
    report = asyncio.run(rebuild_redis(settings))
    print(f"{settings.scores_topic} -> {settings.redis_url.split('@')[-1]}: {report}")
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    from streams.tools.loadtest import run

    settings = Settings.from_env()
    url = args.url or (f"http://127.0.0.1:{settings.api_port}" if args.api else None)
    report = run(settings, url, args.concurrency, args.seconds, args.cold_share, args.rate)
    print(f"GET /recommendations: {report}")
    return 0 if report.requests and not report.errors else 1


def _add_ops_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tail-scores", help="print score messages as they arrive (example consumer)")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest message")
    p.add_argument("--max", type=int, default=None, help="stop after N messages")
    p.add_argument("--top", type=int, default=5, help="titles shown per user (default 5)")
    p.add_argument("--idle-timeout", type=float, default=None, help="stop after S idle seconds")
    p.set_defaults(func=cmd_tail_scores)

    p = sub.add_parser("rebuild-redis", help="restore Redis recs keys from the score topic")
    p.set_defaults(func=cmd_rebuild_redis)

    p = sub.add_parser("loadtest", help="bounded load test of GET /recommendations (loopback)")
    p.add_argument("--url", default=None, help="worker base URL (default 127.0.0.1:WEB_PORT)")
    p.add_argument(
        "--api", action="store_true", help="target `reelstream api` on 127.0.0.1:API_PORT"
    )
    p.add_argument("--concurrency", type=int, default=200, help="concurrent clients (200)")
    p.add_argument("--seconds", type=float, default=30.0, help="duration, at most 600 (30)")
    p.add_argument("--cold-share", type=float, default=0.1, help="share of unknown users (0.1)")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="offer R requests/s on a fixed schedule, latency from the scheduled time "
        "(default: each client as fast as answers come)",
    )
    p.set_defaults(func=cmd_loadtest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reelstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="local Kafka + Redis: up | down | status")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument(
        "--secure", action="store_true", help="also SASL/SCRAM Kafka and Redis with an ACL user"
    )
    p.add_argument(
        "--prometheus", action="store_true", help="also Prometheus scraping local workers"
    )
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("worker", help="run a Faust worker (settings from REELSTREAM_* env)")
    p.add_argument("--web-port", type=int, default=0, help="HTTP port for /metrics")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "api",
        help="serve the read API (recommendations, features, titles, trending) from Redis, "
        "apart from the workers",
    )
    p.add_argument("--port", type=int, default=0, help="HTTP port (REELSTREAM_API_PORT, 6067)")
    p.add_argument("--host", default="", help="bind address (REELSTREAM_API_HOST, 127.0.0.1)")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("produce", help="send a JSON-lines event file or synthetic traffic")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="JSON-lines events (contract v1)")
    src.add_argument("--synthetic", action="store_true", help="simulated traffic")
    p.add_argument("--events", type=int, default=10_000, help="synthetic events to send")
    p.add_argument("--rate", type=float, default=None, help="events per second (default: max)")
    p.add_argument("--live", action="store_true", help="stamp ts with the current time")
    p.add_argument(
        "--envelope",
        type=int,
        default=0,
        metavar="N",
        help="send up to N events of one user's session per record (default: one per record)",
    )
    p.add_argument("--quiet", action="store_true")
    _add_sim_args(p)
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("catalog", help="load a catalog file or write the synthetic one")
    p.add_argument("action", choices=["load", "synth"])
    p.add_argument("file")
    _add_sim_args(p)
    p.set_defaults(func=cmd_catalog)

    p = sub.add_parser("synth", help="write synthetic events, catalog and ground truth files")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--out", required=True, help="events JSON-lines file")
    p.add_argument("--catalog-out", help="catalog JSON-lines file")
    p.add_argument("--truth", help="ground truth JSON file")
    _add_sim_args(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "bench", help="throughput, freshness and scale-out on the local Kafka and Redis"
    )
    p.add_argument("--events", type=int, default=200_000, help="events to load (default 200k)")
    p.add_argument("--users", type=int, default=2000, help="simulated viewers (default 2000)")
    p.add_argument("--titles", type=int, default=400, help="catalog size (default 400)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--partitions", type=int, default=4, help="events topic partitions")
    p.add_argument(
        "--envelope", type=int, default=0, metavar="N", help="load as envelopes of <= N events"
    )
    p.add_argument("--freshness-seconds", type=float, default=20.0)
    p.add_argument(
        "--freshness-warmup-seconds",
        type=float,
        default=10.0,
        help="live traffic before the measured window, reported apart (default 10)",
    )
    p.add_argument(
        "--freshness-rate", type=float, default=None, help="default: half the 1-worker rate"
    )
    p.add_argument("--no-scale", action="store_true", help="skip the two-worker phase")
    p.add_argument(
        "--sweep",
        metavar="SIZES",
        help="catalog sizes, e.g. 400,10k,50k: per size the engine's in-process costs and "
        "one worker on the stack (no two-worker phase), in one table with the targets",
    )
    p.add_argument("--profile", metavar="FILE", help="py-spy raw stacks of the 1-worker phase")
    p.add_argument(
        "--worker-env", action="append", default=[], metavar="NAME=VALUE", help="worker env"
    )
    p.add_argument(
        "--exp-fetch-max-wait-ms",
        type=int,
        metavar="MS",
        help="experiment: Faust's group consumer fetch wait (hard-coded 1500 in Faust)",
    )
    p.add_argument(
        "--exp-cython-optimizations",
        action="store_true",
        help="experiment: Faust's opt-in cython_optimizations",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep topics, keys and data dirs")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "soak", help="one worker's RSS under steady traffic from more viewers than its cache"
    )
    p.add_argument("--minutes", type=float, default=20.0, help="traffic duration (default 20)")
    p.add_argument("--rate", type=float, default=250.0, help="events/s offered (default 250)")
    p.add_argument("--viewers", type=int, default=20_000, help="distinct viewer ids (20k)")
    p.add_argument("--cache", type=int, default=2_000, help="REELSTREAM_USER_CACHE (2k)")
    p.add_argument("--warmup-minutes", type=float, default=5.0, help="warm-up at least (5)")
    p.add_argument("--sample-s", type=float, default=10.0, help="RSS sample period (10 s)")
    p.add_argument("--partitions", type=int, default=4, help="events topic partitions")
    p.add_argument(
        "--history",
        type=int,
        default=0,
        help="events per viewer sent first, as fast as the worker takes them (default 0)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results and samples as JSON")
    p.add_argument("--keep", action="store_true", help="keep topics, keys and data dir")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_soak)

    p = sub.add_parser("demo", help="stack up, worker, live synthetic traffic, live top-10s")
    p.add_argument("--seconds", type=float, default=60.0, help="stop after this long")
    p.add_argument(
        "--rate", type=float, default=None, help="events per second offered (default 200)"
    )
    _add_sim_args(p)
    p.set_defaults(func=cmd_demo)
    _add_ops_commands(sub)
    from streams.tools import artwork_cli

    artwork_cli.add_commands(sub)

    p = sub.add_parser(
        "replay", help="prequential replay of an event log: Recall/NDCG@k vs popularity, AUC"
    )
    p.add_argument("--events", required=True, help="JSON-lines event log (contract v1)")
    p.add_argument("--catalog", required=True, help="JSON-lines catalog (contract v1)")
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument(
        "--min-history", type=int, default=5, help="previous positives for the history segment"
    )
    p.add_argument("--k", type=int, default=10, help="list length (default 10)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="simulate N workers (users to partitions by the producer's murmur2, partitions "
        "round-robin); also replays 1 worker and N without exchange to compare",
    )
    p.add_argument(
        "--exchange-every",
        type=int,
        default=None,
        help="with --workers: exchange title-side state every E events (all workers)",
    )
    p.add_argument(
        "--partitions", type=int, default=None, help="events partitions (default: settings)"
    )
    p.add_argument(
        "--factors",
        choices=["sum", "blend"],
        default="sum",
        help="merge rule for MF title factors (docs/models.md)",
    )
    p.add_argument(
        "--ranker-merge",
        choices=["sum", "blend", "local"],
        default="blend",
        help="merge rule for the ranker's weights",
    )
    p.add_argument(
        "--exact-scan",
        action="store_true",
        help="reference run: rank every allowed title per request instead of the "
        "candidate union (slow on large catalogs)",
    )
    p.set_defaults(func=cmd_replay)
    from streams.tools import catalog_intel_cli

    catalog_intel_cli.add_commands(sub)  # tags, query (docs/catalog-intelligence.md)

    p = sub.add_parser(
        "import", help="convert a public viewing log to contract-v1 events and a catalog"
    )
    p.add_argument("kind", choices=["movielens", "kuairand"])
    p.add_argument(
        "source",
        help="MovieLens folder (ratings.csv, movies.csv, tags.csv) or KuaiRand interactions.tsv",
    )
    p.add_argument("--out", required=True, help="events JSON-lines file to write")
    p.add_argument("--catalog-out", required=True, help="catalog JSON-lines file to write")
    p.add_argument(
        "--overlap",
        action="store_true",
        help="viewings last their full watch time, so a viewer's plays overlap (bulk "
        "sessions); default: each viewing ends before the viewer's next begins",
    )
    p.add_argument("--json", help="also write the import report (bad rows by reason) here")
    p.set_defaults(func=cmd_import)
    return parser


# numpy's BLAS (OpenBLAS) starts a thread per core and spins them on every matrix-vector
# product: a refresh at 50,000 titles cost 0.91 ms of CPU for 0.48 ms of wall time, the
# second core stolen from Kafka, Redis and other workers. A worker is sized as one core
# (docs/scaling.md), so every command runs BLAS on one thread unless told otherwise.
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread() -> None:
    """Default the BLAS thread count to 1 (before numpy is imported; the children started
    by demo, bench and soak inherit it). A value already set is kept."""
    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")


def main(argv: list[str] | None = None) -> int:
    one_blas_thread()
    logs.setup(Settings.from_env().log_level)
    kafka_internals.install_client_guards()  # every command: bad batches, reconnect backoff
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, KafkaError, RedisError) as exc:
        print(f"reelstream: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
