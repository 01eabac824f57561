"""Offline evaluation of artwork policies on logged decisions (pure functions).

A logged record (online_models/artwork.py, ``decision_record`` plus the
attributed ``reward``) carries the variants offered, the logged choice, its
propensity under the logging policy and the reward. A *target policy* maps a
record to probabilities over its ``variants``. Estimators of the target's mean
reward per decision:

* **replay** (Li, Chu, Langford, Wang 2011): keep the records where the target
  picks the logged choice, average their rewards; unbiased when the logging
  policy was uniform random. A learning target may ``update`` on the kept
  records, which evaluates the learning policy itself.
* **IPS**: mean of ``w r`` with ``w = min(pi(a|x) / p, clip)``.
* **SNIPS**: ``sum(w r) / sum(w)``, self-normalised.
* **DR**: ``mean(sum_a pi(a|x) q(x,a) + w (r - q(x,a_logged)))`` with a reward model ``q``.

``on_policy`` is a log's own value (its mean reward). ``thompson_slate_probs`` gives a
Bernoulli Thompson sampling slate's probabilities by Monte Carlo, a target for the
Open Bandit Dataset check (streams/tools/obd_check.py).

Intervals: normal (the estimators' influence terms) or percentile bootstrap.
Weight clipping trades variance for a bias toward zero (IPS, DR) and is reported.

>>> recs = [{"variants": ["a", "b"], "choice": "a", "propensity": 0.5, "reward": 1.0},
...         {"variants": ["a", "b"], "choice": "b", "propensity": 0.5, "reward": 0.0}]
>>> always_a = deterministic(lambda rec: "a")
>>> round(ips(recs, always_a).value, 6), round(snips(recs, always_a).value, 6)
(1.0, 1.0)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Record = Mapping[str, Any]
Policy = Callable[[Record], Sequence[float]]  # probabilities over record["variants"]
RewardModel = Callable[[Record, str], float]

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    estimator: str
    value: float
    low: float
    high: float
    n: int  # records used (matched records for replay)
    ess: float | None = None  # effective sample size of the weights, (sum w)^2 / sum w^2
    clipped: int = 0  # weights cut down to the clip

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _z(alpha: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - alpha / 2)


def _normal(name: str, terms: np.ndarray, alpha: float, **kw: Any) -> Estimate:
    n = len(terms)
    if n == 0:
        return Estimate(name, math.nan, math.nan, math.nan, 0, **kw)
    m = float(terms.mean())
    half = _z(alpha) * float(terms.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return Estimate(name, m, m - half, m + half, n, **kw)


def deterministic(pick: Callable[[Record], str]) -> Policy:
    """A target policy that always picks ``pick(record)``."""

    def probs(rec: Record) -> list[float]:
        a = pick(rec)
        return [float(v == a) for v in rec["variants"]]

    return probs


def uniform(rec: Record) -> list[float]:
    """Uniform random over the offered variants."""
    k = len(rec["variants"])
    return [1.0 / k] * k


def logged(rec: Record) -> list[float]:
    """The logging policy itself, from the logged probabilities (or the choice alone)."""
    p = rec.get("probabilities")
    if p is not None:
        return list(p)
    return [float(v == rec["choice"]) for v in rec["variants"]]


def thompson_slates(
    alpha: Sequence[float], beta: Sequence[float], slots: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``(n, slots)``: ``n`` slates of Bernoulli Thompson sampling with Beta(alpha, beta) per
    arm, the arms of the ``slots`` largest draws, best first (obp's ``BernoulliTS``)."""
    a, b = np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float)
    return np.argsort(-rng.beta(a, b, size=(n, len(a))), axis=1)[:, :slots]


def thompson_slate_probs(
    alpha: Sequence[float],
    beta: Sequence[float],
    slots: int,
    draws: int = 100_000,
    seed: int = 0,
    chunk: int = 10_000,
) -> np.ndarray:
    """P(arm at slot) of that Thompson sampling policy, ``(arms, slots)``, by Monte Carlo.

    Why: the policy has no closed form for its slate; obp's ``compute_batch_action_dist``
    estimates it the same way (its default is 100,000 draws).
    """
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(alpha), slots))
    done = 0
    while done < draws:
        top = thompson_slates(alpha, beta, slots, min(chunk, draws - done), rng)
        for k in range(slots):
            counts[:, k] += np.bincount(top[:, k], minlength=len(alpha))
        done += len(top)
    return counts / draws


def _arrays(
    records: Sequence[Record], target: Policy, clip: float | None
) -> tuple[np.ndarray, np.ndarray, list[Sequence[float]], int]:
    r = np.array([float(rec["reward"]) for rec in records])
    probs = [target(rec) for rec in records]
    pi = np.array(
        [
            p[list(rec["variants"]).index(rec["choice"])]
            for rec, p in zip(records, probs, strict=True)
        ]
    )
    p0 = np.array([float(rec["propensity"]) for rec in records])
    if (p0 <= 0).any():
        raise ValueError("a logged propensity is <= 0: the log cannot evaluate other policies")
    w = pi / p0
    clipped = 0
    if clip is not None:
        clipped = int((w > clip).sum())
        w = np.minimum(w, clip)
    return r, w, probs, clipped


def _ess(w: np.ndarray) -> float:
    s2 = float((w**2).sum())
    return float(w.sum()) ** 2 / s2 if s2 > 0 else 0.0


def _bootstrap(
    name: str,
    stat: Callable[[np.ndarray], float],
    n: int,
    alpha: float,
    resamples: int,
    seed: int,
    **kw: Any,
) -> Estimate:
    rng = np.random.default_rng(seed)
    full = stat(np.arange(n))
    draws = np.array([stat(rng.integers(0, n, n)) for _ in range(resamples)])
    lo, hi = np.nanquantile(draws, [alpha / 2, 1 - alpha / 2])
    return Estimate(name, full, float(lo), float(hi), n, **kw)


def ips(
    records: Sequence[Record],
    target: Policy,
    clip: float | None = None,
    alpha: float = 0.05,
    bootstrap: int = 0,
    seed: int = 0,
) -> Estimate:
    """Inverse propensity scoring, weights clipped at ``clip``."""
    r, w, _, clipped = _arrays(records, target, clip)
    kw = {"ess": _ess(w), "clipped": clipped}
    if bootstrap:
        return _bootstrap(
            "ips", lambda i: float((w[i] * r[i]).mean()), len(r), alpha, bootstrap, seed, **kw
        )
    return _normal("ips", w * r, alpha, **kw)


def snips(
    records: Sequence[Record],
    target: Policy,
    clip: float | None = None,
    alpha: float = 0.05,
    bootstrap: int = 0,
    seed: int = 0,
) -> Estimate:
    """Self-normalised IPS; the normal interval uses its delta-method influence terms."""
    r, w, _, clipped = _arrays(records, target, clip)
    kw = {"ess": _ess(w), "clipped": clipped}

    def stat(i: np.ndarray) -> float:
        sw = float(w[i].sum())
        return float((w[i] * r[i]).sum()) / sw if sw > 0 else math.nan

    if bootstrap:
        return _bootstrap("snips", stat, len(r), alpha, bootstrap, seed, **kw)
    v = stat(np.arange(len(r)))
    if math.isnan(v):
        return Estimate("snips", v, v, v, len(r), **kw)
    est = _normal("snips", w * (r - v) / w.mean(), alpha, **kw)
    return Estimate("snips", v, v + est.low, v + est.high, len(r), **kw)


def dr(
    records: Sequence[Record],
    target: Policy,
    q: RewardModel,
    clip: float | None = None,
    alpha: float = 0.05,
    bootstrap: int = 0,
    seed: int = 0,
) -> Estimate:
    """Doubly robust: the reward model's value plus the weighted residual of the logged choice."""
    r, w, probs, clipped = _arrays(records, target, clip)
    q_logged = np.array([q(rec, rec["choice"]) for rec in records])
    q_target = np.array(
        [
            sum(p * q(rec, v) for p, v in zip(ps, rec["variants"], strict=True) if p)
            for rec, ps in zip(records, probs, strict=True)
        ]
    )
    terms = q_target + w * (r - q_logged)
    kw = {"ess": _ess(w), "clipped": clipped}
    if bootstrap:
        return _bootstrap(
            "dr", lambda i: float(terms[i].mean()), len(r), alpha, bootstrap, seed, **kw
        )
    return _normal("dr", terms, alpha, **kw)


def on_policy(records: Sequence[Record], alpha: float = 0.05) -> Estimate:
    """The logging policy's own value: the mean logged reward with its normal interval."""
    return _normal("on-policy", np.array([float(rec["reward"]) for rec in records]), alpha)


def replay(
    records: Iterable[Record],
    choose: Callable[[Record], str],
    update: Callable[[Record], None] | None = None,
    alpha: float = 0.05,
) -> Estimate:
    """Li et al. (2011): mean reward of the records where ``choose`` agrees with the log.

    ``update`` (optional) is called with each agreeing record, in log order, so a
    learning policy is evaluated as it would have learned. Valid for logs of a
    uniform random policy (the records of its floor draws qualify too).
    """
    kept: list[float] = []
    for rec in records:
        if choose(rec) == rec["choice"]:
            kept.append(float(rec["reward"]))
            if update is not None:
                update(rec)
    return _normal("replay", np.array(kept), alpha)


# --- reward models and baselines ---------------------------------------------------------


def mean_reward_model(records: Iterable[Record], prior: float = 1.0) -> RewardModel:
    """q(x, a): the variant's mean logged reward, shrunk toward the log's mean (``prior`` records).

    Context-free, so DR leans on its weights for the context; a fitted model can be passed instead.
    """
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    total = n = 0.0
    for rec in records:
        sums[rec["choice"]] += float(rec["reward"])
        counts[rec["choice"]] += 1
        total += float(rec["reward"])
        n += 1
    base = total / n if n else 0.0

    def q(rec: Record, variant: str) -> float:
        return (sums.get(variant, 0.0) + prior * base) / (counts.get(variant, 0) + prior)

    return q


def best_variant_per_title(records: Iterable[Record]) -> Policy:
    """Deterministic baseline: per title, the variant with the best IPS mean reward in the log.

    Fitted on the log it is then evaluated on, so its estimate is optimistic (in-sample).
    """
    score: dict[tuple[str, str], float] = defaultdict(float)
    seen: dict[str, int] = defaultdict(int)
    for rec in records:
        score[(rec["title_id"], rec["choice"])] += float(rec["reward"]) / float(rec["propensity"])
        seen[rec["title_id"]] += 1
    best: dict[str, str] = {}
    for (tid, variant), s in sorted(score.items()):
        if tid not in best or s > score[(tid, best[tid])]:
            best[tid] = variant

    def pick(rec: Record) -> str:
        return best.get(rec["title_id"], rec["variants"][0])

    return deterministic(pick)


def evaluate(
    records: Sequence[Record],
    policies: Mapping[str, Policy],
    clip: float | None = 20.0,
    alpha: float = 0.05,
    bootstrap: int = 0,
    seed: int = 0,
    q: RewardModel | None = None,
) -> dict[str, dict[str, Any]]:
    """IPS, SNIPS and DR (and replay for deterministic targets) for each named policy."""
    q = q or mean_reward_model(records)
    out: dict[str, dict[str, Any]] = {}
    for name, pol in policies.items():
        res = {
            "ips": ips(records, pol, clip, alpha, bootstrap, seed).as_dict(),
            "snips": snips(records, pol, clip, alpha, bootstrap, seed).as_dict(),
            "dr": dr(records, pol, q, clip, alpha, bootstrap, seed).as_dict(),
        }

        def greedy(rec: Record, pol: Policy = pol) -> str:
            ps = list(pol(rec))
            return rec["variants"][ps.index(max(ps))]

        if all(max(pol(rec)) == 1.0 for rec in records[:50]):
            res["replay"] = replay(records, greedy, alpha=alpha).as_dict()
        out[name] = res
    return out


# --- slate-level estimation --------------------------------------------------------------------
#
# Why: the titles of one row compete for one click, so a title's reward depends on the
# artwork of its neighbours, which per-decision estimators assume it does not (they
# miss the simulated truth in artwork-sim unless the outside option dominates). The
# unit below is the row: the decisions that share a ``request_id`` (the impression's
# request, added by the attributor), else a ``slate_id`` (one score message).


def slates(records: Iterable[Record]) -> list[list[Record]]:
    """Records grouped into rows by ``request_id`` (else ``slate_id``, else alone)."""
    rows: dict[str, list[Record]] = defaultdict(list)
    for i, rec in enumerate(records):
        key = rec.get("request_id") or rec.get("slate_id") or f"#{i}"
        rows[str(key)].append(rec)
    return list(rows.values())


def _per_slate(
    rows: Sequence[Sequence[Record]], target: Policy
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: length, summed reward, sum of slot weights, product of slot weights."""
    n = len(rows)
    length, reward, wsum, wprod = np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n)
    for i, row in enumerate(rows):
        for rec in row:
            p = target(rec)
            pi = p[list(rec["variants"]).index(rec["choice"])]
            p0 = float(rec["propensity"])
            if p0 <= 0:
                raise ValueError("a logged propensity is <= 0: the log cannot evaluate others")
            w = pi / p0
            wsum[i] += w
            wprod[i] *= w
            reward[i] += float(rec["reward"])
        length[i] = len(row)
    return length, reward, wsum, wprod


def _per_exposure(
    name: str, terms: np.ndarray, length: np.ndarray, alpha: float, **kw: Any
) -> Estimate:
    """``sum(terms) / sum(length)``: the mean reward per exposure, with its delta-method
    interval (rows are the independent units; their lengths do not depend on the policy)."""
    n = len(terms)
    if n == 0 or length.sum() <= 0:
        return Estimate(name, math.nan, math.nan, math.nan, n, **kw)
    v = float(terms.sum() / length.sum())
    infl = (terms - v * length) / length.mean()
    half = _z(alpha) * float(infl.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return Estimate(name, v, v - half, v + half, n, **kw)


def pseudo_inverse(
    records: Iterable[Record], target: Policy, alpha: float = 0.05, clip: float | None = None
) -> Estimate:
    """The pseudo-inverse estimator (Swaminathan, Krishnamurthy, Agarwal, Dudik, Langford,
    Jose, Zitouni 2017) for a logging policy that draws each slot independently.

    Row weight ``G = sum_j pi(a_j|x)/mu(a_j|x) - (l - 1)`` times the row's summed reward.
    Unbiased when the row's expected reward is additive over slots (each slot's
    action may change *any* title's reward, which per-decision IPS forbids); with
    a factored logging policy the pseudo-inverse reduces to this sum. ``clip``
    bounds ``|G|``. ``n`` counts rows; the value is per exposure.
    """
    rows = slates(records)
    length, reward, wsum, _ = _per_slate(rows, target)
    g = wsum - (length - 1)
    clipped = 0
    if clip is not None:
        clipped = int((np.abs(g) > clip).sum())
        g = np.clip(g, -clip, clip)
    return _per_exposure("pi-slate", g * reward, length, alpha, ess=_ess(g), clipped=clipped)


def slate_ips(
    records: Iterable[Record], target: Policy, alpha: float = 0.05, clip: float | None = None
) -> Estimate:
    """IPS with the whole row as the action: weight ``prod_j pi/mu``. No assumption on how
    slots interact, but the weight explodes with the row's length (reported as ESS)."""
    rows = slates(records)
    length, reward, _, wprod = _per_slate(rows, target)
    clipped = 0
    if clip is not None:
        clipped = int((wprod > clip).sum())
        wprod = np.minimum(wprod, clip)
    return _per_exposure(
        "ips-slate", wprod * reward, length, alpha, ess=_ess(wprod), clipped=clipped
    )
