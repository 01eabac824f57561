"""Prometheus metrics of artwork decisions, experiments and bandit traffic.

A collector that reads the engine's hooks at scrape time, registered on the
worker's registry (streams/metrics.py) by ``register(engine)``. Labels are
bounded: the policy mode (``ts``, ``ucb``), the reward (``0``, ``1``), and the
experiment and arm names of the experiments file, never user or title ids.

    reelstream_artwork_decisions_total{mode}
    reelstream_artwork_outcomes_total{mode,reward}
    reelstream_artwork_mismatched_impressions_total
    reelstream_experiment_exposures_total{experiment,arm}
    reelstream_experiment_arm_share{experiment,arm}        share in force (configured or bandit)
    reelstream_experiment_killed{experiment}                bandit kill switch (1: on)
    reelstream_experiment_batch{experiment}                 bandit batch in force (bandits only)
    reelstream_experiment_users{experiment,arm}             exposed users in this worker's sums
    reelstream_experiment_impressions{experiment,arm}       their impressions since exposure
    reelstream_experiment_plays{experiment,arm}             their plays since exposure
    reelstream_experiment_completes{experiment,arm}         their completes since exposure
    reelstream_experiment_watch_seconds{experiment,arm}     their watch time since exposure

The last five are gauges, not counters: a partition that moves to another worker
leaves this worker's sums. Summed over workers (``sum by (experiment, arm)``) they
give the per-arm rates the dashboard plots; the intervals and the decision are in
``GET /experiments/{id}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# (metric, ArmTotals field, scale, help): this worker's share of each arm's sums.
SUMS = (
    ("reelstream_experiment_users", "n", 1.0, "Exposed users in this worker's per-arm sums."),
    (
        "reelstream_experiment_impressions",
        "imp",
        1.0,
        "Impressions of exposed users since their exposure (this worker's partitions).",
    ),
    (
        "reelstream_experiment_plays",
        "play",
        1.0,
        "Plays of exposed users since their exposure (this worker's partitions).",
    ),
    (
        "reelstream_experiment_completes",
        "comp",
        1.0,
        "Completes of exposed users since their exposure (this worker's partitions).",
    ),
    (
        "reelstream_experiment_watch_seconds",
        "min",
        60.0,
        "Watch time of exposed users since their exposure (this worker's partitions).",
    ),
)


def family_names() -> dict[str, str]:
    """Every family this collector can yield and its type (docs and dashboard tests read it)."""
    out = {
        "reelstream_artwork_decisions": "counter",
        "reelstream_artwork_outcomes": "counter",
        "reelstream_artwork_mismatched_impressions": "counter",
        "reelstream_experiment_exposures": "counter",
        "reelstream_experiment_arm_share": "gauge",
        "reelstream_experiment_killed": "gauge",
        "reelstream_experiment_batch": "gauge",
    }
    out.update({name: "gauge" for name, *_ in SUMS})
    return out


class HooksCollector(Collector):
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        hook = getattr(self.engine, "artwork", None)
        if hook is not None:
            mode = hook.policy.cfg.mode
            d = CounterMetricFamily(
                "reelstream_artwork_decisions", "Artwork decisions logged.", labels=["mode"]
            )
            d.add_metric([mode], hook.decisions)
            yield d
            o = CounterMetricFamily(
                "reelstream_artwork_outcomes",
                "Artwork exposures closed by the attributor, by reward (1: quality play).",
                labels=["mode", "reward"],
            )
            for reward, n in sorted(hook.outcomes.items()):
                o.add_metric([mode, reward], n)
            yield o
            m = CounterMetricFamily(
                "reelstream_artwork_mismatched_impressions",
                "Impressions showing another variant than the latest decision (not attributed).",
            )
            m.add_metric([], hook.attributor.mismatched)
            yield m
        assigner = getattr(self.engine, "experiments", None)
        if assigner is None:
            return
        exp_c = CounterMetricFamily(
            "reelstream_experiment_exposures",
            "Score messages that carried the arm.",
            labels=["experiment", "arm"],
        )
        share = GaugeMetricFamily(
            "reelstream_experiment_arm_share",
            "Share of the experiment's traffic the arm gets now.",
            labels=["experiment", "arm"],
        )
        killed = GaugeMetricFamily(
            "reelstream_experiment_killed",
            "1 when the experiment's kill switch is on.",
            labels=["experiment"],
        )
        batch = GaugeMetricFamily(
            "reelstream_experiment_batch",
            "Batch of a bandit experiment's shares in force on this worker.",
            labels=["experiment"],
        )
        for e in assigner.experiments.values():
            alloc = assigner.in_force(e.id) if e.bandit is not None else None
            for arm in e.arms:
                exp_c.add_metric([e.id, arm.name], assigner.exposures[(e.id, arm.name)])
                share.add_metric([e.id, arm.name], alloc.shares[arm.name] if alloc else arm.share)
            killed.add_metric([e.id], float(bool(alloc and alloc.killed)))
            if alloc is not None:
                batch.add_metric([e.id], alloc.batch)
        yield exp_c
        yield share
        yield killed
        yield batch
        fold = getattr(self.engine, "experiment_fold", None)
        if fold is None:
            return
        local = fold.local_totals()
        for name, attr, scale, text in SUMS:
            g = GaugeMetricFamily(name, text, labels=["experiment", "arm"])
            for e in assigner.experiments.values():
                for arm in e.arms:  # config names only: a stray label never reaches Prometheus
                    t = local.get((e.id, arm.name))
                    g.add_metric([e.id, arm.name], getattr(t, attr) * scale if t else 0.0)
            yield g


def register(engine: Any, registry: CollectorRegistry | None = None) -> HooksCollector:
    """Register the collector (on the worker's registry unless one is given)."""
    if registry is None:
        from streams.metrics import REGISTRY as registry
    collector = HooksCollector(engine)
    registry.register(collector)
    return collector
