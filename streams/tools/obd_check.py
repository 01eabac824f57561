"""The artwork estimators on the Open Bandit Dataset sample, beside its on-policy truth (pure).

obp's protocol (Saito et al. 2021, section 5): from the log of the uniform-random
policy, estimate the click rate of the Bernoulli TS policy with the production
priors (obp's prior_bts.yaml); the truth is the mean click of the log that BTS
itself collected in the same week, on the same site. Each logged impression is one
decision (item at a position, obp's standard treatment); the target's probability
of the logged item at that position comes from a seeded Monte Carlo of the
policy's Beta draws, as obp's ``BernoulliTS.compute_batch_action_dist`` does.

A second target, "bts as logged", is the share of each item at each position in
the BTS log itself: the policy that produced the truth, averaged over the week.
The production priors are where that policy stood at the start; it kept learning,
and the two differ (``tv``), which the check reports rather than hides.

``reelstream artwork-obd`` prints the table (streams/tools/artwork_cli.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from online_models.artwork_eval import (
    Estimate,
    Policy,
    Record,
    RewardModel,
    dr,
    ips,
    mean_reward_model,
    on_policy,
    replay,
    snips,
    thompson_slate_probs,
    thompson_slates,
    uniform,
)

SLOTS = 3
PRIOR_TARGET = "bts (production priors)"
AS_RUN_TARGET = "bts as logged"


@dataclass(frozen=True)
class Row:
    target: str
    estimate: Estimate
    z: float  # (estimate - truth) / sqrt(se_estimate^2 + se_truth^2)
    inside: bool  # the truth lies within the estimate's interval


@dataclass(frozen=True)
class ObdCheck:
    truth: Estimate  # mean click of the BTS log
    logged: Estimate  # mean click of the uniform-random log
    uniform: tuple[Estimate, Estimate]  # IPS and SNIPS of uniform random on its own log
    rows: list[Row]
    max_weight: float  # largest pi / p of the production-prior target on the random log
    replay_expected: float  # expected replay matches, sum of pi(logged item | position)
    tv: tuple[float, ...]  # per position, total variation between the two targets
    dist: np.ndarray  # (items, positions): the production-prior target's P(item at position)


def slot_policy(dist: np.ndarray) -> Policy:
    """A context-free slate policy: ``dist[item, slot]`` over the variants at the record's slot."""
    cols = [[float(p) for p in dist[:, k]] for k in range(dist.shape[1])]
    return lambda rec: cols[rec["slot"]]


def slot_reward_model(records: Sequence[Record], slots: int = SLOTS) -> RewardModel:
    """q(x, item): artwork_eval's per-variant mean model fitted per slot (position moves clicks)."""
    per_slot = [mean_reward_model([r for r in records if r["slot"] == k]) for k in range(slots)]
    return lambda rec, v: per_slot[rec["slot"]](rec, v)


def slot_frequencies(records: Sequence[Record], items: int, slots: int = SLOTS) -> np.ndarray:
    """``(items, slots)``: each item's share of a log's impressions at each slot."""
    counts = np.zeros((items, slots))
    for rec in records:
        counts[int(rec["choice"]), rec["slot"]] += 1
    return counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)


def _row(target: str, e: Estimate, truth: Estimate, alpha: float) -> Row:
    z = NormalDist().inv_cdf(1 - alpha / 2)
    se = math.hypot((e.high - e.low) / (2 * z), (truth.high - truth.low) / (2 * z))
    gap = (e.value - truth.value) / se if se > 0 else math.inf
    return Row(target, e, gap, e.low <= truth.value <= e.high)


def check(
    random_log: Sequence[Record],
    bts_log: Sequence[Record],
    prior_alpha: Sequence[float],
    prior_beta: Sequence[float],
    clip: float | None = 20.0,
    draws: int = 100_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> ObdCheck:
    """Replay, IPS, SNIPS and DR of both BTS targets from the random log, against the truth."""
    items = len(prior_alpha)
    dist = thompson_slate_probs(prior_alpha, prior_beta, SLOTS, draws, seed)
    prior = slot_policy(dist)
    freq = slot_frequencies(bts_log, items)
    as_run = slot_policy(freq)
    q = slot_reward_model(random_log)
    truth = on_policy(bts_log, alpha)

    slates = thompson_slates(
        prior_alpha, prior_beta, SLOTS, len(random_log), np.random.default_rng(seed + 1)
    )

    def choose(rec: Record) -> str:  # one slate of the policy per logged impression
        return rec["variants"][slates[rec["round"], rec["slot"]]]

    pi = np.array([dist[int(r["choice"]), r["slot"]] for r in random_log])
    p0 = np.array([float(r["propensity"]) for r in random_log])
    rows = [
        _row(PRIOR_TARGET, e, truth, alpha)
        for e in (
            replay(random_log, choose, alpha=alpha),
            ips(random_log, prior, clip, alpha),
            snips(random_log, prior, clip, alpha),
            dr(random_log, prior, q, clip, alpha),
        )
    ] + [
        _row(AS_RUN_TARGET, e, truth, alpha)
        for e in (
            ips(random_log, as_run, clip, alpha),
            snips(random_log, as_run, clip, alpha),
            dr(random_log, as_run, q, clip, alpha),
        )
    ]
    return ObdCheck(
        truth=truth,
        logged=on_policy(random_log, alpha),
        uniform=(ips(random_log, uniform, None, alpha), snips(random_log, uniform, None, alpha)),
        rows=rows,
        max_weight=float((pi / p0).max()),
        replay_expected=float(pi.sum()),
        tv=tuple(float(v) for v in 0.5 * np.abs(dist - freq).sum(axis=0)),
        dist=dist,
    )


def _interval(e: Estimate) -> str:
    return f"{e.value:.5f} [{e.low:.5f}, {e.high:.5f}]"


def format_check(name: str, c: ObdCheck, clip: float | None, draws: int) -> list[str]:
    """The table ``reelstream artwork-obd`` prints for one campaign."""
    clicks = round(c.logged.value * c.logged.n), round(c.truth.value * c.truth.n)
    out = [
        f"campaign {name}: random log {c.logged.n} impressions ({clicks[0]} clicks), "
        f"bts log {c.truth.n} ({clicks[1]} clicks); clip {clip}, {draws} Monte Carlo draws",
        f"  truth (bts on-policy)  {_interval(c.truth)}",
        f"  {'target':24s} {'estimator':9s} {'estimate [95 % interval]':28s} "
        f"{'n':>6s} {'ESS':>6s} {'clipped':>7s} {'z':>6s}  truth",
    ]
    for r in c.rows:
        e = r.estimate
        ess = f"{e.ess:6.0f}" if e.ess is not None else " " * 6
        out.append(
            f"  {r.target:24s} {e.estimator:9s} {_interval(e):28s} {e.n:6d} {ess} "
            f"{e.clipped:7d} {r.z:+6.2f}  {'inside' if r.inside else 'OUTSIDE'}"
        )
    u_ips, u_snips = c.uniform
    exact = u_ips.value == c.logged.value and u_snips.value == c.logged.value
    out += [
        f"  replay kept {c.rows[0].estimate.n} impressions (expected {c.replay_expected:.0f}); "
        f"largest weight pi/p {c.max_weight:.2f}",
        "  total variation, production priors vs bts as logged, by position: "
        + ", ".join(f"{v:.2f}" for v in c.tv),
        f"  uniform random on its own log: IPS {u_ips.value:.5f}, SNIPS {u_snips.value:.5f}, "
        f"logged mean {c.logged.value:.5f} ({'identical' if exact else 'DIFFERENT'})",
    ]
    return out


def as_dict(c: ObdCheck) -> dict[str, Any]:
    """JSON-ready form of a check."""
    return {
        "truth": c.truth.as_dict(),
        "logged": c.logged.as_dict(),
        "uniform": [e.as_dict() for e in c.uniform],
        "rows": [
            {"target": r.target, "z": r.z, "inside": r.inside, **r.estimate.as_dict()}
            for r in c.rows
        ],
        "max_weight": c.max_weight,
        "replay_expected": c.replay_expected,
        "tv": list(c.tv),
    }
