"""What ``POST /forecast`` costs: loading a state at start, and one answer.

``python -m streams.tools.bench_forecast [--titles 1500 --requests 500]``
(docs/catalog-intelligence.md): writes the simulated slate's results as a state
file, times decoding and replaying it
(what a worker does at start, in a thread), then times
:meth:`ForecastService.answer` (body parsing, validation, the forecast) for requests
with every region and with two, on the event loop's thread as the worker runs it.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

import numpy as np
import orjson

from online_models.forecast import encode_state, parse_result
from streams.api.forecast_web import ForecastService
from streams.tools.greenlight_sim import REGIONS, Slate, SlateConfig


def _ms(xs: list[float]) -> str:
    a = np.array(xs) * 1000
    return (
        f"p50={np.percentile(a, 50):.2f} p95={np.percentile(a, 95):.2f} "
        f"p99={np.percentile(a, 99):.2f} max={a.max():.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--titles", type=int, default=1500, help="released titles in the state")
    ap.add_argument("--requests", type=int, default=500, help="forecasts timed per setting")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    titles = Slate(SlateConfig(titles=args.titles + args.requests, seed=args.seed)).titles
    results = [
        parse_result({"title_id": t.title_id, "attributes": t.attributes, "audience": t.audience})
        for t in titles[: args.titles]
    ]
    blob = encode_state(results, REGIONS)
    fd, path = tempfile.mkstemp(suffix=".state")
    try:
        os.write(fd, blob)
        os.close(fd)
        svc = ForecastService(path)
        wall, cpu = time.perf_counter(), time.process_time()
        svc.load()
        print(
            f"state of {args.titles} titles ({len(blob):,} bytes) loaded and replayed in "
            f"{time.perf_counter() - wall:.2f} s ({time.process_time() - cpu:.2f} s CPU)"
        )
    finally:
        os.unlink(path)
    rng = random.Random(args.seed)
    new = [t.attributes for t in titles[args.titles :]]
    for label, pick in (("all 7 regions", lambda: list(REGIONS)), ("2 regions", None)):
        times = []
        for attrs in new:
            regions = pick() if pick else rng.sample(list(REGIONS), 2)
            body = orjson.dumps({"attributes": attrs, "regions": regions})
            t0 = time.perf_counter()
            svc.answer(body)
            times.append(time.perf_counter() - t0)
        print(f"answer, {label:<13} n={len(times)} {_ms(times)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
