"""Always-valid experiment statistics: confidence sequences, CUPED, sample-ratio mismatch.

Pure functions over per-user aggregates (numpy arrays), so the worker, the CLI
and the tests share them. Why not a package: gbstats (GrowthBook's engine, which
uses the same confidence sequences) pins numpy<2 and pandas<2, and this project
runs numpy 2; spotify-confidence brings pandas, statsmodels and a charting stack.
The math is short and tested here against simulation (tests/unit/test_experiments.py).

**Confidence sequence** (Waudby-Smith, Arbour, Sinha, Kennedy, Ramdas 2023,
"Time-uniform central limit theory", asymptotic CS with a normal mixture): for
the mean of ``n`` terms with standard deviation ``sigma`` the two-sided
half-width ``sigma * sqrt(2 (n r + 1) / (n^2 r) * log(sqrt(n r + 1) / alpha))``
holds at every ``n`` at once with probability ``1 - alpha`` (asymptotically), so
a reader may look after every batch and stop whenever the interval excludes 0.
``r`` (rho squared) is tuned to be tightest at ``n_opt`` users.

>>> round(cs_half_width(10_000, 1.0, 0.05, n_opt=10_000), 4)  # vs 0.0196 fixed-n
0.0304
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import chi2


def rho2(alpha: float, n_opt: float) -> float:
    """The mixture's rho^2 that makes the boundary tightest at ``n_opt``."""
    la = -2 * math.log(alpha)
    return (la + math.log(la + 1)) / n_opt


def cs_half_width(n: float, sigma: float, alpha: float = 0.05, n_opt: float = 10_000) -> float:
    """Half-width of the asymptotic confidence sequence for a mean of ``n`` terms."""
    if n <= 1:
        return math.inf
    r = rho2(alpha, n_opt)
    return sigma * math.sqrt(2 * (n * r + 1) / (n * n * r) * math.log(math.sqrt(n * r + 1) / alpha))


@dataclass(frozen=True)
class ArmStat:
    n: int
    value: float  # mean (or ratio) of the metric
    var: float  # variance of the estimate (not of a user)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean_stat(y: np.ndarray) -> ArmStat:
    n = len(y)
    if n == 0:
        return ArmStat(0, math.nan, math.nan)
    return ArmStat(n, float(y.mean()), float(y.var(ddof=1)) / n if n > 1 else math.inf)


def ratio_stat(num: np.ndarray, den: np.ndarray) -> ArmStat:
    """Ratio of sums over users (e.g. plays / impressions) with its delta-method variance."""
    n = len(num)
    d = float(den.sum())
    if n < 2 or d <= 0:
        return ArmStat(n, math.nan, math.nan)
    r = float(num.sum()) / d
    lin = (num - r * den) / den.mean()
    return ArmStat(n, r, float(lin.var(ddof=1)) / n)


@dataclass(frozen=True)
class Comparison:
    metric: str
    control: ArmStat
    treatment: ArmStat
    diff: float
    low: float  # always-valid interval of the difference
    high: float
    lift: float  # diff / control value
    significant: bool

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["control"] = self.control.as_dict()
        d["treatment"] = self.treatment.as_dict()
        return d


def compare(
    metric: str, control: ArmStat, treatment: ArmStat, alpha: float = 0.05, n_opt: float = 10_000
) -> Comparison:
    """Treatment minus control with an always-valid confidence sequence."""
    diff = treatment.value - control.value
    n = control.n + treatment.n
    v = control.var + treatment.var
    if not (math.isfinite(v) and n > 2):
        return Comparison(metric, control, treatment, diff, -math.inf, math.inf, math.nan, False)
    half = cs_half_width(n, math.sqrt(v * n), alpha, n_opt)
    lift = diff / control.value if control.value else math.nan
    return Comparison(
        metric, control, treatment, diff, diff - half, diff + half, lift, abs(diff) > half
    )


def cuped(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
    """CUPED (Deng et al. 2013): ``y - theta (x - mean x)`` with ``theta = cov(x, y) / var(x)``.

    Pass all arms' users together so one theta serves every arm. Returns the
    adjusted values and theta.

    >>> y, t = cuped(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    >>> y.round(9).tolist(), round(t, 9)
    ([2.5, 2.5, 2.5, 2.5], 1.0)
    """
    vx = float(x.var(ddof=1)) if len(x) > 1 else 0.0
    if vx <= 0:
        return y.astype(float), 0.0
    theta = float(np.cov(x, y, ddof=1)[0, 1]) / vx
    return y - theta * (x - x.mean()), theta


@dataclass(frozen=True)
class SampleRatio:
    counts: tuple[int, ...]
    expected: tuple[float, ...]
    chi2: float
    p_value: float
    mismatch: bool  # p below the threshold: assignment or logging is broken

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def srm_check(
    counts: Sequence[int], shares: Sequence[float], threshold: float = 0.001
) -> SampleRatio:
    """Chi-square goodness of fit of users per arm against the configured shares.

    >>> srm_check([5000, 5000], [0.5, 0.5]).mismatch, srm_check([5000, 5400], [0.5, 0.5]).mismatch
    (False, True)
    """
    total = sum(counts)
    s = sum(shares)
    exp = [total * sh / s for sh in shares]
    stat = sum((c - e) ** 2 / e for c, e in zip(counts, exp, strict=True) if e > 0)
    p = float(chi2.sf(stat, len(counts) - 1)) if total else 1.0
    return SampleRatio(tuple(counts), tuple(exp), stat, p, p < threshold)
