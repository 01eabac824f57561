"""Bandit traffic: shift an experiment's traffic toward better arms, analyse it validly.

``Allocator`` keeps a Beta posterior per arm of a binary per-exposure outcome
(e.g. an impression that led to a play) and, at each ``reallocate()`` (once per
batch), sets each arm's share to ``min_share + (1 - K min_share) P(arm is best)``
with ``P(arm is best)`` from posterior draws (Thompson sampling, batched). The
minimum share keeps every arm's propensity bounded away from 0, which is what
keeps the analysis below valid. ``kill()`` is the kill switch: all traffic goes
to the control arm at once and adaptation stops; ``resume()`` undoes it.

Adaptive allocation biases plain per-arm means. ``aipw`` estimates each arm's
mean with the augmented inverse-propensity scores of Hadad, Hirshberg, Zhan,
Wager and Athey (2021): ``G_t(a) = m(a) + 1[A_t = a] / e_t(a) (Y_t - m(a))``,
with ``m`` fitted on *earlier batches only* and ``e_t`` the share in force when
the exposure was assigned, weighted by ``sqrt(e_t(a))`` (their variance-
stabilising weights) for an asymptotically normal interval. Contrasts use the
unweighted scores (valid here because shares never fall below ``min_share``).

>>> al = Allocator(["control", "b"], min_share=0.1, seed=1)
>>> al.shares
{'control': 0.5, 'b': 0.5}
>>> for _ in range(500):
...     al.observe("control", 0.0); al.observe("b", 1.0)
>>> al.reallocate()["b"]
0.9
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Z95 = 1.959963984540054


class Allocator:
    def __init__(
        self,
        arms: Sequence[str],
        min_share: float = 0.05,
        control: str | None = None,
        draws: int = 4000,
        seed: int = 0,
    ) -> None:
        if len(arms) < 2 or min_share * len(arms) > 1:
            raise ValueError("need two or more arms and min_share * arms <= 1")
        self.arms = list(arms)
        self.control = control or self.arms[0]
        self.min_share = min_share
        self.draws = draws
        self.rng = np.random.default_rng(seed)
        self.alpha = dict.fromkeys(self.arms, 1.0)
        self.beta = dict.fromkeys(self.arms, 1.0)
        self.shares = dict.fromkeys(self.arms, 1.0 / len(self.arms))
        self.batch = 0
        self.killed = False

    def observe(self, arm: str, outcome: float) -> None:
        """One exposure's binary outcome (values in [0, 1] are taken as fractional successes)."""
        self.alpha[arm] += outcome
        self.beta[arm] += 1.0 - outcome

    def observe_sums(self, arm: str, successes: float, trials: float) -> None:
        """Many exposures at once: ``successes`` of ``trials`` (per-batch sums of the worker)."""
        self.alpha[arm] += successes
        self.beta[arm] += trials - successes

    def assign(self, u: float) -> str:
        """The arm for a uniform number ``u`` (a salted hash of the user) under current shares."""
        acc = 0.0
        for arm in self.arms:
            acc += self.shares[arm]
            if u < acc:
                return arm
        return self.arms[-1]

    def reallocate(self) -> dict[str, float]:
        """New shares from the posteriors (Thompson sampling for a batch); returns them."""
        self.batch += 1
        if self.killed:
            return self.shares
        a = np.array([self.alpha[x] for x in self.arms])
        b = np.array([self.beta[x] for x in self.arms])
        samples = self.rng.beta(a, b, size=(self.draws, len(self.arms)))
        p_best = np.bincount(samples.argmax(axis=1), minlength=len(self.arms)) / self.draws
        k = len(self.arms)
        shares = self.min_share + (1 - k * self.min_share) * p_best
        self.shares = {x: float(s) for x, s in zip(self.arms, shares, strict=True)}
        return self.shares

    def kill(self) -> None:
        """Kill switch: all traffic to the control arm; adaptation stops."""
        self.killed = True
        self.shares = {x: float(x == self.control) for x in self.arms}

    def resume(self) -> None:
        self.killed = False
        self.shares = dict.fromkeys(self.arms, 1.0 / len(self.arms))

    def status(self) -> dict[str, Any]:
        """What the API and metrics show: shares, posteriors, batch, kill switch."""
        return {
            "batch": self.batch,
            "killed": self.killed,
            "min_share": self.min_share,
            "arms": {
                x: {
                    "share": self.shares[x],
                    "successes": self.alpha[x] - 1.0,
                    "failures": self.beta[x] - 1.0,
                    "posterior_mean": self.alpha[x] / (self.alpha[x] + self.beta[x]),
                }
                for x in self.arms
            },
        }


@dataclass(frozen=True)
class ArmEstimate:
    arm: str
    value: float
    low: float
    high: float


def aipw(
    arms: Sequence[str],
    assigned: Sequence[str],
    outcomes: Sequence[float],
    propensities: Sequence[Sequence[float]],
    batches: Sequence[int],
    control: str | None = None,
) -> dict[str, Any]:
    """Adaptively weighted AIPW estimates per arm and contrasts with the control arm.

    ``propensities[t]`` holds every arm's share (in ``arms`` order) when exposure
    ``t`` was assigned; ``batches[t]`` its batch number (non-decreasing). The
    outcome model ``m`` of batch ``b`` is each arm's mean over batches ``< b``
    (0.5 before any data), so each score is conditionally unbiased.
    """
    k = len(arms)
    idx = {a: i for i, a in enumerate(arms)}
    a_t = np.array([idx[a] for a in assigned])
    y = np.asarray(outcomes, dtype=float)
    e = np.asarray(propensities, dtype=float)
    b = np.asarray(batches)
    n = len(y)
    m = np.full((n, k), 0.5)
    sums, counts = np.zeros(k), np.zeros(k)
    start = 0
    for t in range(1, n + 1):
        if t == n or b[t] != b[start]:
            m[start:t] = np.where(counts > 0, sums / np.maximum(counts, 1), 0.5)
            np.add.at(sums, a_t[start:t], y[start:t])
            np.add.at(counts, a_t[start:t], 1)
            start = t
    hit = np.zeros((n, k))
    hit[np.arange(n), a_t] = 1.0
    gamma = m + hit / e * (y[:, None] - m)
    out: dict[str, Any] = {"arms": {}, "contrasts": {}}
    for j, arm in enumerate(arms):
        h = np.sqrt(e[:, j])
        q = float((h * gamma[:, j]).sum() / h.sum())
        v = float((h**2 * (gamma[:, j] - q) ** 2).sum() / h.sum() ** 2)
        half = Z95 * math.sqrt(v)
        out["arms"][arm] = ArmEstimate(arm, q, q - half, q + half)
    c = idx[control or arms[0]]
    for j, arm in enumerate(arms):
        if j == c:
            continue
        d = gamma[:, j] - gamma[:, c]
        est = float(d.mean())
        half = Z95 * float(d.std(ddof=1)) / math.sqrt(n)
        out["contrasts"][arm] = ArmEstimate(arm, est, est - half, est + half)
    return out


def simulate_adaptive(
    means: Sequence[float],
    batches: int = 10,
    batch_size: int = 1000,
    min_share: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """One adaptive experiment on Bernoulli arms with true ``means``; returns the log's analysis."""
    rng = np.random.default_rng(seed)
    arms = [f"arm{i}" for i in range(len(means))]
    al = Allocator(arms, min_share=min_share, seed=seed)
    assigned: list[str] = []
    outcomes: list[float] = []
    props: list[list[float]] = []
    batch_ids: list[int] = []
    for bnum in range(batches):
        shares = [al.shares[a] for a in arms]
        for _ in range(batch_size):
            arm = al.assign(float(rng.random()))
            y = float(rng.random() < means[arms.index(arm)])
            assigned.append(arm)
            outcomes.append(y)
            props.append(shares)
            batch_ids.append(bnum)
            al.observe(arm, y)
        al.reallocate()
    res = aipw(arms, assigned, outcomes, props, batch_ids)
    naive = {
        a: float(np.mean([y for x, y in zip(assigned, outcomes, strict=True) if x == a]))
        for a in arms
    }
    return {"analysis": res, "naive": naive, "final_shares": dict(al.shares), "allocator": al}


def coverage(
    means: Sequence[float], seeds: int = 100, batches: int = 10, batch_size: int = 1000
) -> dict[str, Any]:
    """Share of seeds whose AIPW intervals cover each arm mean and the best-vs-first contrast."""
    arms = [f"arm{i}" for i in range(len(means))]
    best = arms[int(np.argmax(means))]
    hits = dict.fromkeys(arms, 0)
    contrast = 0
    final_best = 0.0
    for s in range(seeds):
        r = simulate_adaptive(means, batches, batch_size, seed=s)
        for a, m in zip(arms, means, strict=True):
            e = r["analysis"]["arms"][a]
            hits[a] += e.low <= m <= e.high
        c = r["analysis"]["contrasts"][best]
        contrast += c.low <= max(means) - means[0] <= c.high
        final_best += r["final_shares"][best] / seeds
    return {
        "arm_coverage": {a: h / seeds for a, h in hits.items()},
        "contrast_coverage": contrast / seeds,
        "final_share_of_best": final_best,
    }
