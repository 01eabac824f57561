"""Per-arm experiment metrics folded live from the event stream, kept as sums.

Why sums and not per-user rows: a worker owns a few partitions' users while the
API answers for a whole experiment. Per arm, the count of users, the sums of
each per-user metric, of its square and of the cross products that the ratio
(delta method) and CUPED estimates need reproduce ``experiments.analyze``
exactly (a test checks it), add across partitions and workers, and stay bounded
(one record per experiment and partition) whatever the number of users.

A user enters an experiment's analysis at their first exposure (the first score
message carrying the arm); their watch time before it (the profile's lifetime
``watch_s``) is the CUPED covariate, which is pre-treatment by construction.

Bandit experiments (online_models/bandit_live.py) also get per-batch sums: each
user's first exposure in a batch is a unit with the batch's shares as propensities,
and the unit's outcome is set by the user's next ``play`` (or ``complete``).

>>> fold = LiveFold()
>>> fold.expose("u1", "e:b", partition=0, pre_watch_s=120.0, now_ms=5)
>>> fold.observe({"user_id": "u1", "title_id": "t1", "event_type": "impression", "ts": 6})
>>> fold.snapshot(0)["e"]["b"]["imp"], fold.take_dirty()
(1.0, {0})
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from online_models.bandit_live import (
    BatchSums,
    Unit,
    aipw_batches,
    expected_shares,
    history,
)
from online_models.experiments import MAX_CREDIT_S, METRICS, Experiment, UserStats
from online_models.sequential import ArmStat, compare, srm_check

MIN_USERS = 100  # per arm, before any verdict (the sequences are asymptotic)
MAX_TITLES_TRACKED = 64  # playhead positions kept per exposed user


@dataclass(slots=True)
class ArmTotals:
    """Sufficient statistics of one arm (or one arm's share of one partition)."""

    n: float = 0.0
    imp: float = 0.0
    play: float = 0.0
    comp: float = 0.0
    min: float = 0.0  # minutes watched after exposure
    pre: float = 0.0  # minutes watched before exposure (CUPED covariate)
    imp2: float = 0.0
    play2: float = 0.0
    comp2: float = 0.0
    imp_play: float = 0.0
    play_comp: float = 0.0
    min2: float = 0.0
    pre2: float = 0.0
    min_pre: float = 0.0

    def add(self, s: UserStats, sign: float = 1.0) -> None:
        i, p, c = float(s.impressions), float(s.plays), float(s.completes)
        y, x = s.watch_s / 60.0, s.pre_watch_s / 60.0
        self.n += sign
        self.imp += sign * i
        self.play += sign * p
        self.comp += sign * c
        self.min += sign * y
        self.pre += sign * x
        self.imp2 += sign * i * i
        self.play2 += sign * p * p
        self.comp2 += sign * c * c
        self.imp_play += sign * i * p
        self.play_comp += sign * p * c
        self.min2 += sign * y * y
        self.pre2 += sign * x * x
        self.min_pre += sign * y * x

    def merge(self, other: ArmTotals) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ArmTotals:
        """Strict: every field a finite number, ``n`` not negative (ValueError otherwise)."""
        names = {f.name for f in fields(cls)}
        if not isinstance(d, Mapping) or set(d) != names:
            raise ValueError("arm totals need exactly the fields " + ", ".join(sorted(names)))
        vals = {}
        for k, v in d.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"arm totals field {k!r} is not a finite number")
            vals[k] = float(v)
        if vals["n"] < 0:
            raise ValueError("arm totals with a negative user count")
        return cls(**vals)


def totals_of(
    exp: Experiment, users: Mapping[str, UserStats], arm_of: Mapping[str, str]
) -> dict[str, ArmTotals]:
    """The sums ``analyze`` would see: exposed users without stats count with zeros."""
    out = {a.name: ArmTotals() for a in exp.arms}
    for uid, arm in arm_of.items():
        out[arm].add(users.get(uid) or UserStats())
    return out


# --- estimates from sums ---------------------------------------------------------------------


def _mean(n: float, s: float, ss: float) -> ArmStat:
    if n < 1:
        return ArmStat(0, math.nan, math.nan)
    if n < 2:
        return ArmStat(int(n), s / n, math.inf)
    return ArmStat(int(n), s / n, max(ss - s * s / n, 0.0) / (n - 1) / n)


def _ratio(n: float, num: float, den: float, num2: float, den2: float, cross: float) -> ArmStat:
    """Ratio of sums with the delta-method variance of ``sequential.ratio_stat``."""
    if n < 2 or den <= 0:
        return ArmStat(int(n), math.nan, math.nan)
    r = num / den
    resid2 = max(num2 - 2 * r * cross + r * r * den2, 0.0)  # sum of (num - r den)^2
    return ArmStat(int(n), r, resid2 / (den / n) ** 2 / (n - 1) / n)


def _cuped(totals: Mapping[str, ArmTotals]) -> tuple[dict[str, ArmStat], float, float]:
    """Per-arm CUPED means with one theta fitted on all arms (as ``sequential.cuped``)."""
    t = ArmTotals()
    for a in totals.values():
        t.merge(a)
    n = t.n
    out: dict[str, ArmStat] = {}
    if n < 2:
        return {k: _mean(a.n, a.min, a.min2) for k, a in totals.items()}, 0.0, 0.0
    sxx = t.pre2 - t.pre * t.pre / n
    sxy = t.min_pre - t.pre * t.min / n
    syy = t.min2 - t.min * t.min / n
    theta = sxy / sxx if sxx > 1e-12 * max(t.pre2, 1.0) else 0.0
    xbar = t.pre / n
    for k, a in totals.items():
        # adj_i = y_i - theta x_i + theta xbar, summed and squared over the arm's users
        s_lin = a.min - theta * a.pre
        ss_lin = a.min2 - 2 * theta * a.min_pre + theta * theta * a.pre2
        s_adj = s_lin + a.n * theta * xbar
        ss_adj = ss_lin + 2 * theta * xbar * s_lin + a.n * (theta * xbar) ** 2
        out[k] = _mean(a.n, s_adj, ss_adj)
    var_adj = syy - 2 * theta * sxy + theta * theta * sxx
    reduction = 1 - var_adj / syy if syy > 0 else 0.0
    return out, theta, reduction


def decide(
    exp: Experiment,
    comparisons: Mapping[str, Mapping[str, Mapping[str, Any]]],
    users: Mapping[str, int],
    srm_mismatch: bool,
    primary: str,
    min_users: int = MIN_USERS,
) -> dict[str, Any]:
    """What a reader may conclude now; the intervals are always valid, so any time works.

    SRM first (a broken split makes every metric untrustworthy), then a minimum
    number of users per arm, then the primary metric's interval against control.
    """
    if srm_mismatch:
        return {
            "verdict": "stop: SRM",
            "metric": primary,
            "detail": "users per arm do not match the configured shares (p < 0.001): "
            "assignment or exposure logging is broken; metrics are not trustworthy",
        }
    few = sorted(a for a, n in users.items() if n < min_users)
    if few:
        return {
            "verdict": "continue",
            "metric": primary,
            "detail": f"fewer than {min_users} exposed users in {', '.join(few)}",
        }
    better, worse = [], []
    for arm, cmps in comparisons.items():
        c = cmps[primary]
        if c["significant"]:
            (better if c["diff"] > 0 else worse).append((c["diff"], arm))
    if better:
        _, arm = max(better)
        harm = [
            m
            for m, c in comparisons[arm].items()
            if m != primary and c["significant"] and c["diff"] < 0
        ]
        detail = f"{arm} beats {exp.control} on {primary}; its interval excludes 0"
        if harm:
            detail += f" (but worse on {', '.join(harm)})"
        return {"verdict": f"arm {arm} better", "arm": arm, "metric": primary, "detail": detail}
    if worse and len(worse) == len(comparisons):
        return {
            "verdict": f"arm {exp.control} better",
            "arm": exp.control,
            "metric": primary,
            "detail": f"every arm is worse than {exp.control} on {primary}",
        }
    return {
        "verdict": "continue",
        "metric": primary,
        "detail": f"no interval of {primary} against {exp.control} excludes 0 yet",
    }


def analyze_totals(
    exp: Experiment,
    totals: Mapping[str, ArmTotals],
    alpha: float = 0.05,
    n_opt: float = 10_000,
    shares: Mapping[str, float] | None = None,
    min_users: int = MIN_USERS,
) -> dict[str, Any]:
    """``experiments.analyze`` from per-arm sums, plus a ``decision``.

    ``shares`` are the shares users were assigned with (a bandit's, when it
    moves them); the configured ones by default.
    """
    names = [a.name for a in exp.arms]
    t = {n: totals.get(n) or ArmTotals() for n in names}
    cuped_stats, theta, reduction = _cuped(t)
    per_arm = {
        n: {
            "impression_to_play": _ratio(a.n, a.play, a.imp, a.play2, a.imp2, a.imp_play),
            "minutes_per_user": _mean(a.n, a.min, a.min2),
            "minutes_per_user_cuped": cuped_stats[n],
            "completion_rate": _ratio(a.n, a.comp, a.play, a.comp2, a.play2, a.play_comp),
        }
        for n, a in t.items()
    }
    comparisons = {
        n: {
            m: compare(m, per_arm[exp.control][m], per_arm[n][m], alpha, n_opt).as_dict()
            for m in METRICS
        }
        for n in names
        if n != exp.control
    }
    users = {n: round(a.n) for n, a in t.items()}
    share = dict(shares) if shares else {a.name: a.share for a in exp.arms}
    srm = srm_check([users[n] for n in names], [share[n] for n in names])
    return {
        "experiment": exp.id,
        "layer": exp.layer,
        "arms": [{"name": a.name, "share": share[a.name], "params": a.params} for a in exp.arms],
        "control": exp.control,
        "users": users,
        "metrics": {n: {m: s.as_dict() for m, s in per_arm[n].items()} for n in names},
        "comparisons": comparisons,
        "cuped": {"theta": theta, "variance_reduction": reduction},
        "srm": srm.as_dict(),
        "alpha": alpha,
        "primary_metric": exp.primary,
        "decision": decide(exp, comparisons, users, srm.mismatch, exp.primary, min_users),
    }


def adaptive_analysis(
    exp: Experiment,
    totals: Mapping[str, ArmTotals],
    batches: Mapping[int, BatchSums],
    allocation: Mapping[str, Any],
    alpha: float = 0.05,
    min_users: int = MIN_USERS,
) -> dict[str, Any]:
    """A bandit experiment: :func:`analyze_totals`' per-user metrics (descriptive only: a
    user counts in the arm of their first exposure), with the sample-ratio check, the
    estimates and the decision taken from the per-batch units instead (AIPW, valid under
    the moving shares because each unit carries the share of its batch)."""
    assert exp.bandit is not None
    names = [a.name for a in exp.arms]
    body = analyze_totals(exp, totals, alpha, shares=allocation["shares"], min_users=min_users)
    est = aipw_batches(names, batches, exp.control)
    units = {a: round(sum(b.n[a] for b in batches.values())) for a in names}
    srm = srm_check([units[a] for a in names], expected_shares(names, batches))
    metric = f"aipw_{exp.bandit.outcome}_rate"
    comparisons = {
        a: {metric: {"diff": c.value, "significant": bool(c.low > 0 or c.high < 0)}}
        for a, c in est["contrasts"].items()
    }
    body["srm"] = srm.as_dict()
    body["decision"] = decide(exp, comparisons, units, srm.mismatch, metric, min_users)
    body["allocation"] = {**allocation, "history": history(batches)}
    body["units"] = units
    body["aipw"] = {
        "metric": metric,
        "interval": "normal 95 %, read at a planned look (not always-valid)",
        "arms": {
            a: {"value": e.value, "low": e.low, "high": e.high} for a, e in est["arms"].items()
        },
        "contrasts": {
            a: {"diff": c.value, "low": c.low, "high": c.high} for a, c in est["contrasts"].items()
        },
    }
    return body


# --- the live fold ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Exposed:
    arms: tuple[tuple[str, str], ...]  # (experiment, arm) per layer
    partition: int
    stats: UserStats
    pos: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _OpenUnit:
    """A user's latest bandit unit in one experiment; ``hit`` once its outcome happened."""

    batch: int
    arm: str
    outcome: str
    partition: int
    hit: bool = False


class LiveFold:
    """Per exposed user aggregates and per-partition arm sums, updated event by event.

    Each update subtracts the user's old contribution from their arms' sums and
    adds the new one, so a snapshot is always the exact sum over users. State is
    per partition so a worker can publish, and forget, exactly the partitions it owns.
    """

    def __init__(self) -> None:
        self.users: dict[str, _Exposed] = {}
        self.sums: dict[int, dict[tuple[str, str], ArmTotals]] = {}
        self.since: dict[int, int] = {}  # wall clock (ms) this fold started on the partition
        self.dirty: set[int] = set()
        # Bandit experiments: each user's latest unit per experiment, and per partition,
        # experiment and batch the units and successes per arm with the batch's shares.
        self.units: dict[str, dict[str, _OpenUnit]] = {}
        self.batches: dict[int, dict[str, dict[int, BatchSums]]] = {}

    def expose(
        self,
        user_id: str,
        label: str | None,
        partition: int,
        pre_watch_s: float,
        now_ms: int,
        units: Iterable[Unit] = (),
    ) -> None:
        """A score message carried ``label`` (``exp:arm,...``); the first one enrols the user.

        ``units`` are the message's bandit exposures: the first in each batch opens a unit.
        """
        for unit in units:
            self._open_unit(user_id, unit, partition, now_ms)
        if not label or user_id in self.users:
            return
        arms = tuple((e, a) for e, _, a in (p.partition(":") for p in label.split(",")))
        u = _Exposed(arms, partition, UserStats(pre_watch_s=max(0.0, float(pre_watch_s))))
        self.users[user_id] = u
        self.since.setdefault(partition, now_ms)
        self._apply(u, 1.0)

    def _open_unit(self, user_id: str, unit: Unit, partition: int, now_ms: int) -> None:
        mine = self.units.setdefault(user_id, {})
        cur = mine.get(unit.experiment)
        if cur is not None and cur.batch == unit.batch:
            return
        mine[unit.experiment] = _OpenUnit(unit.batch, unit.arm, unit.outcome, partition)
        per_exp = self.batches.setdefault(partition, {}).setdefault(unit.experiment, {})
        sums = per_exp.get(unit.batch)
        if sums is None:
            sums = per_exp[unit.batch] = BatchSums.empty(unit.shares)
        sums.n[unit.arm] += 1
        self.since.setdefault(partition, now_ms)
        self.dirty.add(partition)

    def _close_units(self, ev: Mapping[str, Any]) -> None:
        """The outcome event of a user's open units (once per unit)."""
        for eid, ou in self.units.get(ev["user_id"], {}).items():
            if not ou.hit and ev["event_type"] == ou.outcome:
                ou.hit = True
                self.batches[ou.partition][eid][ou.batch].s[ou.arm] += 1
                self.dirty.add(ou.partition)

    def observe(self, ev: Mapping[str, Any]) -> None:
        """Fold one admitted event of an exposed user (others are ignored)."""
        if self.units:
            self._close_units(ev)
        u = self.users.get(ev["user_id"])
        if u is None:
            return
        etype = ev["event_type"]
        pos = ev.get("position_s")
        moves = pos is not None and etype in ("progress", "stop", "complete", "pause")
        if etype not in ("impression", "play", "complete") and not moves:
            return
        self._apply(u, -1.0)
        s, tid = u.stats, ev["title_id"]
        if etype == "play":
            u.pos.pop(tid, None)
            u.pos[tid] = float(pos or 0.0)
            if len(u.pos) > MAX_TITLES_TRACKED:
                u.pos.pop(next(iter(u.pos)))
            s.plays += 1
        elif etype == "impression":
            s.impressions += 1
        if moves:
            step = min(max(float(pos) - u.pos.get(tid, 0.0), 0.0), MAX_CREDIT_S)
            u.pos[tid] = float(pos)
            s.watch_s += step
        if etype == "complete":
            s.completes += 1
        self._apply(u, 1.0)

    def _apply(self, u: _Exposed, sign: float) -> None:
        part = self.sums.setdefault(u.partition, {})
        for key in u.arms:
            t = part.get(key)
            if t is None:
                t = part[key] = ArmTotals()
            t.add(u.stats, sign)
        self.dirty.add(u.partition)

    def forget(self, user_id: str) -> None:
        """An expired user (streams/worker/expiry.py): their contribution stays in the sums
        as it was at their last event; a later exposure enrols them as a new user."""
        self.users.pop(user_id, None)
        self.units.pop(user_id, None)

    def take_dirty(self) -> set[int]:
        out, self.dirty = self.dirty, set()
        return out

    def snapshot(self, partition: int) -> dict[str, dict[str, dict[str, float]]]:
        """experiment -> arm -> sums, for the users of one partition."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for (e, a), t in sorted(self.sums.get(partition, {}).items()):
            out.setdefault(e, {})[a] = t.as_dict()
        return out

    def batch_snapshot(self, partition: int) -> dict[str, dict[int, BatchSums]]:
        """experiment -> batch -> sums, for the bandit units of one partition."""
        return self.batches.get(partition, {})

    def local_totals(self) -> dict[tuple[str, str], ArmTotals]:
        """Sums over every partition this fold holds (the worker's share, for Prometheus)."""
        out: dict[tuple[str, str], ArmTotals] = {}
        for part in self.sums.values():
            for key, t in part.items():
                out.setdefault(key, ArmTotals()).merge(t)
        return out

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget partitions this worker no longer owns (their new owner publishes them)."""
        gone = set(partitions)
        self.users = {u: s for u, s in self.users.items() if s.partition not in gone}
        for uid in list(self.units):
            mine = {e: ou for e, ou in self.units[uid].items() if ou.partition not in gone}
            if mine:
                self.units[uid] = mine
            else:
                del self.units[uid]
        for p in gone:
            self.batches.pop(p, None)
            self.sums.pop(p, None)
            self.since.pop(p, None)
            self.dirty.discard(p)


def merge_shards(shards: Iterable[Mapping[str, Mapping[str, Any]]]) -> dict[str, ArmTotals]:
    """Add per-partition arm sums (decoded ``arm -> fields`` maps) into per-arm totals."""
    out: dict[str, ArmTotals] = {}
    for shard in shards:
        for arm, d in shard.items():
            out.setdefault(arm, ArmTotals()).merge(
                d if isinstance(d, ArmTotals) else ArmTotals.from_dict(d)
            )
    return out
