"""Prometheus metrics of artwork decisions, experiments and bandit traffic.

A collector that reads the engine's hooks at scrape time, registered on the
worker's registry (streams/metrics.py) by ``register(engine)``. Labels are
bounded: the policy mode (``ts``, ``ucb``), the reward (``0``, ``1``), and the
experiment and arm names of the experiments file, never user or title ids.

    reelstream_artwork_decisions_total{mode}
    reelstream_artwork_outcomes_total{mode,reward}
    reelstream_artwork_mismatched_impressions_total
    reelstream_experiment_exposures_total{experiment,arm}
    reelstream_experiment_arm_share{experiment,arm}        configured (or bandit) share
    reelstream_experiment_killed{experiment}                bandit kill switch (1: on)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class HooksCollector(Collector):
    def __init__(self, engine: Any, allocators: Mapping[str, Any] | None = None) -> None:
        self.engine = engine
        self.allocators = allocators or {}  # experiment id -> bandit_traffic.Allocator

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
        for e in assigner.experiments.values():
            al = self.allocators.get(e.id)
            for arm in e.arms:
                exp_c.add_metric([e.id, arm.name], assigner.exposures[(e.id, arm.name)])
                share.add_metric([e.id, arm.name], al.shares[arm.name] if al else arm.share)
            killed.add_metric([e.id], float(bool(al and al.killed)))
        yield exp_c
        yield share
        yield killed


def register(
    engine: Any,
    allocators: Mapping[str, Any] | None = None,
    registry: CollectorRegistry | None = None,
) -> HooksCollector:
    """Register the collector (on the worker's registry unless one is given)."""
    if registry is None:
        from streams.metrics import REGISTRY as registry
    collector = HooksCollector(engine, allocators)
    registry.register(collector)
    return collector
