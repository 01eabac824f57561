"""Two workers exchange title-side state through sharded aggregation, counted once.

Each worker publishes its contribution cut by title shard to
`<app_id>-title-contributions`; the holder of title-events partition ``s`` aggregates
shard ``s`` and publishes its global snapshot to `<app_id>-title-global`; both workers
merge every shard's snapshot. After traffic, worker A's MF title factors hold the
displacement worker B learned (exactly: A's factors = initial vector + A's own
displacement + what A holds from elsewhere, which is B's published displacement under
the ``sum`` rule), and each worker's trending, popularity and co-watch masses equal an
in-process run of the whole stream: nothing double counted, nothing lost.
"""

from __future__ import annotations

import time
import urllib.request

import numpy as np
import orjson
import pytest

from online_models.engine import Engine
from streams.adapters.producer import EventProducer
from streams.tools.synthetic import SimConfig, Simulation
from tests.integration.conftest import free_port, seek_and_gap_lines, wait_for

pytestmark = pytest.mark.integration

N_EVENTS = 4000
DEBUG_TOKEN = "it-title-exchange"  # debug pages answer only to their token


def debug(port: int) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/debug/title-exchange?detail=1",
        headers={"Authorization": f"Bearer {DEBUG_TOKEN}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return orjson.loads(resp.read())


def in_units(values: dict[str, float], ref_ts: int, to_ref: int, inv_tau: float) -> dict:
    f = float(np.exp((ref_ts - to_ref) * inv_tau))
    return {k: v * f for k, v in values.items()}


async def test_two_workers_share_title_factors_and_counts_once(run_settings, start_worker):
    sim = Simulation(SimConfig(users=80, titles=60, seed=41))
    events = list(sim.events(limit=N_EVENTS))
    env = {
        "REELSTREAM_EXCHANGE_INTERVAL_S": "0.5",
        "REELSTREAM_EXCHANGE_FACTORS": "sum",
        "REELSTREAM_DEBUG_TOKEN": DEBUG_TOKEN,
        "REELSTREAM_LOG_LEVEL": "INFO",  # a difference quotes the workers' seeks and gaps
    }
    a = start_worker(REELSTREAM_WORKER_ID="wa", **env)
    b = start_worker(REELSTREAM_WORKER_ID="wb", REELSTREAM_WEB_PORT=str(free_port()), **env)
    await wait_for(
        lambda: all("reelstream_consumer_lag_records" in w.metrics() for w in (a, b)),
        "both workers to hold partitions",
        timeout=120,
    )
    async with EventProducer(run_settings, validate=False) as producer:
        await producer.send_titles(sim.catalog)
        for ev in events:
            await producer.send(ev)

    def consumed() -> float:
        return sum(w.metrics().get("reelstream_records_consumed_total", 0) for w in (a, b))

    await wait_for(lambda: consumed() >= len(events), "every event consumed", timeout=120)

    # In-process truth: one engine, the whole stream (per-user order is what matters).
    truth = Engine(catalog=sim.title_catalog())
    now = int(time.time() * 1000)
    for ev in events:
        truth.ingest(ev, now)
    models = truth.models

    shards = {str(s) for s in range(run_settings.partitions)}

    def settled() -> tuple[dict, dict] | None:
        da, db = debug(a.port), debug(b.port)
        # neither learned since publishing, and each has merged, for every shard, the
        # snapshot that includes both workers' latest contributions
        if da["dirty"] or db["dirty"]:
            return None
        latest = {"wa": da["seq"], "wb": db["seq"]}
        for d in (da, db):
            if set(d["snapshots"]) != shards:
                return None
            if any(snap["included"] != latest for snap in d["snapshots"].values()):
                return None
        return da, db

    da, db = await wait_for(settled, "both workers to merge snapshots of both contributions")
    assert da["seq"] >= 1 and db["seq"] >= 1
    # every shard aggregated by one of them: the holder of its title-events partition
    assert set(da["aggregating"]) | set(db["aggregating"]) == shards
    assert not set(da["aggregating"]) & set(db["aggregating"])

    # Both workers learned title factors from their own users ...
    own_b = np.array([t["own"] for t in db["titles"].values()])
    own_a = np.array([t["own"] for t in da["titles"].values()])
    assert np.abs(own_a).max() > 1e-3 and np.abs(own_b).max() > 1e-3
    # ... and A's factor vector of every title is its own learning plus B's.
    for tid, t in da["titles"].items():
        np.testing.assert_allclose(t["applied"], db["titles"][tid]["own"], atol=1e-5)
        np.testing.assert_allclose(
            t["q"],
            np.array(t["init"]) + np.array(t["own"]) + np.array(db["titles"][tid]["own"]),
            atol=1e-4,
        )
    # A title B trained more than A: A's vector moved towards B's learning.
    tid = max(
        db["titles"], key=lambda t: db["titles"][t]["own_updates"] - da["titles"][t]["own_updates"]
    )
    assert db["titles"][tid]["own_updates"] > da["titles"][tid]["own_updates"]

    # Counts: every worker holds exactly the whole stream's masses.
    for d in (da, db):
        for name in ("trending", "popular"):
            model = getattr(models, name)
            got = d[name]
            assert set(got["counts"]) == set(model.counts)
            for c, arr in model.counts.items():
                want = dict(zip(models.titles.ids, arr.tolist(), strict=True))
                mine = in_units(
                    got["counts"][c], got["ref_ts"], model.clock.ref_ts, model.clock.inv_tau
                )
                said = seek_and_gap_lines([a.log_path, b.log_path])
                assert mine == pytest.approx(want, rel=1e-9, abs=1e-12), (
                    d["worker"],
                    name,
                    c,
                    said,
                )
        cw = models.cowatch
        want = dict(zip(models.titles.ids, cw.counts.tolist(), strict=True))
        assert sum(want.values()) > 0
        mine = in_units(
            d["cowatch"]["counts"], d["cowatch"]["ref_ts"], cw.clock.ref_ts, cw.clock.inv_tau
        )
        assert mine == pytest.approx(want, rel=1e-9, abs=1e-12), d["worker"]
    snapshots = 0.0
    for w in (a, b):
        m = w.metrics()
        assert m.get("reelstream_title_exchange_published_total", 0) >= 1
        assert m.get("reelstream_title_exchange_peers") == 1
        snapshots += m.get("reelstream_title_exchange_snapshots_total", 0)
    assert snapshots >= len(shards)
