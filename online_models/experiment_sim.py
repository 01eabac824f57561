"""Simulated experiments to check the always-valid analysis: A/A false positives and power.

Each simulated experiment streams ``users`` exposed users, split 50/50, with minutes watched drawn
from a zero-inflated lognormal around a per-user pre-period level (so CUPED has
something to remove). A reader looks every ``look_every`` exposures and stops at
the first look whose confidence sequence excludes 0. ``effect`` multiplies the
treatment's minutes (0 for A/A).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from online_models.sequential import cs_half_width

Z95 = 1.959963984540054


@dataclass(frozen=True)
class LooksResult:
    experiments: int
    looks: int
    rejected: int  # experiments whose confidence sequence excluded 0 at some look
    rejected_naive: int  # the same with a fixed-n 95 % interval at every look (peeking)
    first_look: list[int]  # exposures at the first rejecting look, for rejected ones

    @property
    def rate(self) -> float:
        return self.rejected / self.experiments

    @property
    def naive_rate(self) -> float:
        return self.rejected_naive / self.experiments


def simulate(
    experiments: int = 200,
    users: int = 20_000,
    look_every: int = 1_000,
    effect: float = 0.0,
    alpha: float = 0.05,
    use_cuped: bool = True,
    seed: int = 0,
) -> LooksResult:
    """Run the experiments; each look from running sums (CUPED's theta re-fit per look)."""
    rng = np.random.default_rng(seed)
    looks = np.arange(look_every, users + 1, look_every)
    rejected = rejected_naive = 0
    first: list[int] = []
    for _ in range(experiments):
        level = rng.lognormal(2.5, 1.0, users)  # a user's usual minutes
        x = level * rng.lognormal(0, 0.5, users)  # pre-period minutes
        watch = rng.random(users) < 0.7
        # Arms by a uniform draw per user (the salted hash's uniformity is tested on its own).
        t = rng.random(users) < 0.5
        y = watch * level * rng.lognormal(0, 0.5, users) * np.where(t, 1 + effect, 1.0)
        if not use_cuped:
            x = np.zeros(users)

        def cs(v: np.ndarray) -> np.ndarray:
            return np.cumsum(v)[looks - 1]

        n = looks.astype(float)
        sx, sy, sxx, sxy = cs(x), cs(y), cs(x * x), cs(x * y)
        xbar = sx / n
        vx = sxx / n - xbar**2
        theta = np.where(vx > 0, (sxy / n - xbar * sy / n) / np.where(vx > 0, vx, 1), 0.0)
        stats = []
        for arm in (t, ~t):
            m = cs(arm.astype(float))
            ay, ax = cs(y * arm), cs(x * arm)
            ayy, axx, axy = cs(y * y * arm), cs(x * x * arm), cs(x * y * arm)
            s1 = ay - theta * ax + theta * xbar * m  # sum of y - theta (x - xbar)
            r2 = ayy - 2 * theta * axy + theta**2 * axx  # sum of (y - theta x)^2
            s2 = r2 + 2 * theta * xbar * (ay - theta * ax) + m * (theta * xbar) ** 2
            mean = s1 / np.maximum(m, 1)
            var = (s2 - m * mean**2) / np.maximum(m - 1, 1)
            stats.append((m, mean, var))
        (m1, mu1, v1), (m0, mu0, v0) = stats
        diff = mu1 - mu0
        v = v1 / np.maximum(m1, 1) + v0 / np.maximum(m0, 1)
        ok = (m1 >= 2) & (m0 >= 2)
        half = np.array(
            [
                cs_half_width(k, float(np.sqrt(vv * k)), alpha, users / 2)
                for k, vv in zip(n, v, strict=True)
            ]
        )
        hit = ok & (np.abs(diff) > half)
        if hit.any():
            rejected += 1
            first.append(int(looks[np.argmax(hit)]))
        rejected_naive += bool((ok & (np.abs(diff) > Z95 * np.sqrt(v))).any())
    return LooksResult(experiments, len(looks), rejected, rejected_naive, first)
