"""Bandit traffic in the running system: allocation records, per-batch sums, AIPW from sums.

An experiment with ``allocation = "thompson"`` moves its shares in *batches*. One
worker (the owner of events partition 0) computes each batch's shares from the
per-batch sums of every partition (:func:`next_allocation`, Thompson sampling through
:class:`online_models.bandit_traffic.Allocator`) and publishes an :class:`Allocation`
``{experiment, batch, shares, killed, as_of}`` to a compacted topic every worker and
the API follow; an operator's :class:`Switch` on the same topic is the kill switch.

**Assignment under moving shares.** The arm is re-drawn every batch:
``H(salt:experiment:b<batch>:user)`` against the batch's shares, so every worker with
the same record assigns the same arm, and the propensity of each exposure is
*exactly* the share of its batch (no memory of earlier arms, which would make the
propensity depend on when the user was first seen). The price: a user may change arm
between batches, so effects that carry over from an earlier arm blur the contrast.

**Unit and outcome.** A *unit* is a user's first exposure in a batch (a score message
carrying the arm); its outcome is 1 when a ``play`` (or ``complete``, the
experiment's ``outcome``) of that user follows while the unit is the user's latest
for the experiment. Per partition, experiment and batch the worker keeps, per arm,
the units ``n`` and the units with the outcome ``s``, and the batch's shares: the
propensity recorded with the exposures. These sums add across partitions and are
all the augmented inverse-propensity (AIPW) estimate needs (:func:`aipw_batches`
equals :func:`online_models.bandit_traffic.aipw` on the expanded log; a test checks
it). Batches with the kill switch on enrol no units (every user gets control,
propensity 1 for one arm and 0 for the others, no overlap), so the analysis covers
the adaptive periods only.

>>> a = Allocation("e", 3, {"c": 0.2, "t": 0.8}, False, 5)
>>> Allocation.from_dict(a.as_dict(), ["c", "t"], "c", 0.05) == a
True
>>> a.killed_now("c").shares
{'c': 1.0, 't': 0.0}
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from online_models.bandit_traffic import Z95, Allocator, ArmEstimate

if TYPE_CHECKING:
    from online_models.experiments import Experiment

RECORD_VERSION = 1
HISTORY = 50  # batches listed by the API


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Allocation:
    """The shares in force for one batch of one experiment (the topic's ``allocation/<id>``)."""

    experiment: str
    batch: int
    shares: dict[str, float]
    killed: bool
    as_of: int  # wall clock (ms) of publication; 0 for the configured shares of batch 0

    @classmethod
    def initial(cls, exp: Experiment) -> Allocation:
        return cls(exp.id, 0, {a.name: a.share for a in exp.arms}, False, 0)

    def killed_now(self, control: str) -> Allocation:
        """This batch with the kill switch on: every user to the control arm."""
        return Allocation(
            self.experiment,
            self.batch,
            {a: float(a == control) for a in self.shares},
            True,
            self.as_of,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "v": RECORD_VERSION,
            "experiment": self.experiment,
            "batch": self.batch,
            "shares": dict(self.shares),
            "killed": self.killed,
            "as_of": self.as_of,
        }

    @classmethod
    def from_dict(cls, doc: Any, arms: Sequence[str], control: str, min_share: float) -> Allocation:
        """Strict: the experiment's arms exactly, shares summing to 1 and at least
        ``min_share`` (control only when killed); ValueError otherwise."""
        want = {"v", "experiment", "batch", "shares", "killed", "as_of"}
        if not isinstance(doc, Mapping) or set(doc) != want:
            raise ValueError("an allocation needs exactly the fields " + ", ".join(sorted(want)))
        if doc["v"] != RECORD_VERSION:
            raise ValueError(f"allocation version {doc['v']!r}")
        if not _int(doc["batch"]) or not 0 <= doc["batch"] < 2**31:
            raise ValueError("batch must be a non-negative integer")
        if not _int(doc["as_of"]) or doc["as_of"] < 0 or not isinstance(doc["killed"], bool):
            raise ValueError("as_of must be a non-negative integer and killed a boolean")
        shares = doc["shares"]
        if not isinstance(shares, Mapping) or set(shares) != set(arms):
            raise ValueError("shares must name exactly the experiment's arms")
        if not all(_num(v) and 0 <= v <= 1 for v in shares.values()):
            raise ValueError("shares must be numbers in [0, 1]")
        if not math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6):
            raise ValueError("shares must sum to 1")
        if doc["killed"]:
            if shares[control] != 1:
                raise ValueError("a killed allocation sends every user to the control arm")
        elif min(shares.values()) < min_share - 1e-9:
            raise ValueError(f"a share below min_share {min_share}")
        out = {a: float(shares[a]) for a in arms}
        return cls(str(doc["experiment"]), doc["batch"], out, doc["killed"], doc["as_of"])


@dataclass(frozen=True)
class Switch:
    """The operator's kill switch of one experiment (the topic's ``switch/<id>``)."""

    experiment: str
    killed: bool
    as_of: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "v": RECORD_VERSION,
            "experiment": self.experiment,
            "killed": self.killed,
            "as_of": self.as_of,
        }

    @classmethod
    def from_dict(cls, doc: Any) -> Switch:
        want = {"v", "experiment", "killed", "as_of"}
        if not isinstance(doc, Mapping) or set(doc) != want or doc["v"] != RECORD_VERSION:
            raise ValueError("a switch needs exactly the fields " + ", ".join(sorted(want)))
        if not isinstance(doc["killed"], bool) or not _int(doc["as_of"]) or doc["as_of"] < 0:
            raise ValueError("killed must be a boolean and as_of a non-negative integer")
        return cls(str(doc["experiment"]), doc["killed"], doc["as_of"])


def record_key(kind: str, experiment_id: str) -> str:
    """``allocation/<id>`` or ``switch/<id>``: compaction keeps the latest of each."""
    return f"{kind}/{experiment_id}"


def parse_record(key: str, doc: Any, experiments: Mapping[str, Experiment]) -> Allocation | Switch:
    """One record of the allocation topic, checked against the experiments file.

    The id comes from outside: it must name a bandit experiment of the file, in the key
    and in the body alike (ValueError otherwise).
    """
    kind, _, eid = key.partition("/")
    exp = experiments.get(eid)
    if exp is None or exp.bandit is None:
        raise ValueError(f"key {key[:80]!r}: not a bandit experiment of the experiments file")
    if not isinstance(doc, Mapping) or doc.get("experiment") != eid:
        raise ValueError("the record's experiment differs from its key")
    if kind == "allocation":
        names = [a.name for a in exp.arms]
        return Allocation.from_dict(doc, names, exp.control, exp.bandit.min_share)
    if kind == "switch":
        return Switch.from_dict(doc)
    raise ValueError(f"key {key[:80]!r}: kind must be allocation or switch")


# --- per-batch sums -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unit:
    """A user's exposure to one batch of a bandit experiment, with its propensities."""

    experiment: str
    batch: int
    arm: str
    shares: Mapping[str, float]
    outcome: str  # the event type that counts as success


@dataclass
class BatchSums:
    """Units and successes per arm in one batch, with the batch's shares (propensities)."""

    shares: dict[str, float]
    n: dict[str, float]
    s: dict[str, float]

    @classmethod
    def empty(cls, shares: Mapping[str, float]) -> BatchSums:
        return cls(dict(shares), dict.fromkeys(shares, 0.0), dict.fromkeys(shares, 0.0))

    def merge(self, other: BatchSums) -> None:
        if set(other.shares) != set(self.shares):
            raise ValueError("batch sums of different arms")
        for a in self.n:
            self.n[a] += other.n[a]
            self.s[a] += other.s[a]

    def as_dict(self) -> dict[str, Any]:
        return {"shares": self.shares, "n": self.n, "s": self.s}

    @classmethod
    def from_dict(cls, d: Any) -> BatchSums:
        """Strict: the same arms in each map, finite counts, ``0 <= s <= n`` (ValueError)."""
        if not isinstance(d, Mapping) or set(d) != {"shares", "n", "s"}:
            raise ValueError("batch sums need exactly shares, n and s")
        maps = [d["shares"], d["n"], d["s"]]
        if not all(isinstance(x, Mapping) for x in maps) or not (
            set(maps[0]) == set(maps[1]) == set(maps[2])
        ):
            raise ValueError("batch sums: shares, n and s must name the same arms")
        if not all(_num(v) for x in maps for v in x.values()):
            raise ValueError("batch sums hold finite numbers only")
        if not all(0 <= d["s"][a] <= d["n"][a] for a in d["n"]):
            raise ValueError("batch sums need 0 <= s <= n")
        return cls(*({str(k): float(v) for k, v in x.items()} for x in maps))


def merge_batches(parts: Iterable[Mapping[int, BatchSums]]) -> dict[int, BatchSums]:
    """Add per-partition batch sums; a batch's shares are the same on every partition
    (one record per batch number), the first one seen is kept."""
    out: dict[int, BatchSums] = {}
    for part in parts:
        for b, sums in part.items():
            if b not in out:
                out[b] = BatchSums.empty(sums.shares)
            out[b].merge(sums)
    return dict(sorted(out.items()))


def history(batches: Mapping[int, BatchSums], last: int = HISTORY) -> list[dict[str, Any]]:
    """The latest batches: shares in force, units and successes per arm."""
    return [{"batch": b, **s.as_dict()} for b, s in list(sorted(batches.items()))[-last:]]


# --- analysis -------------------------------------------------------------------------------


def aipw_batches(
    arms: Sequence[str], batches: Mapping[int, BatchSums], control: str | None = None
) -> dict[str, Any]:
    """:func:`online_models.bandit_traffic.aipw` computed from per-batch sums.

    Within a batch the propensities are constant and the outcome model ``m`` (each
    arm's mean over earlier batches, 0.5 before any data) too, so each arm's sum of
    AIPW scores, of their squares and the cross products with control need only the
    batch's units ``n``, successes ``s`` (binary outcomes: ``sum y^2 = s``) and shares.
    Batches with a zero share (kill switch) or without units are left out.
    """
    k = len(arms)
    c = list(arms).index(control or arms[0])
    sums, counts = np.zeros(k), np.zeros(k)
    rows = []  # per batch: (N, e, G, G2, X with control)
    for _, bs in sorted(batches.items()):
        e = np.array([bs.shares[a] for a in arms])
        n = np.array([bs.n[a] for a in arms])
        s = np.array([bs.s[a] for a in arms])
        big_n = float(n.sum())
        if big_n <= 0 or e.min() <= 0:
            continue
        m = np.where(counts > 0, sums / np.maximum(counts, 1), 0.5)
        r = (s - n * m) / e  # sum over the arm's units of (y - m) / e
        g = big_n * m + r
        g2 = big_n * m * m + 2 * m * r + (s - 2 * m * s + n * m * m) / (e * e)
        x = big_n * m * m[c] + m[c] * r + m * r[c]
        rows.append((big_n, e, g, g2, x))
        sums += s
        counts += n
    out: dict[str, Any] = {"arms": {}, "contrasts": {}, "units": float(counts.sum())}
    total = float(counts.sum())
    nan = math.nan
    for j, arm in enumerate(arms):
        if total < 2:
            out["arms"][arm] = ArmEstimate(arm, nan, nan, nan)
            continue
        h = [math.sqrt(e[j]) for _, e, *_ in rows]
        den = sum(hb * big_n for hb, (big_n, *_) in zip(h, rows, strict=True))
        q = sum(hb * g[j] for hb, (_, _, g, _, _) in zip(h, rows, strict=True)) / den
        v = sum(
            hb * hb * (g2[j] - 2 * q * g[j] + big_n * q * q)
            for hb, (big_n, _, g, g2, _) in zip(h, rows, strict=True)
        ) / (den * den)
        q, half = float(q), Z95 * math.sqrt(max(float(v), 0.0))
        out["arms"][arm] = ArmEstimate(arm, q, q - half, q + half)
    for j, arm in enumerate(arms):
        if j == c:
            continue
        if total < 2:
            out["contrasts"][arm] = ArmEstimate(arm, nan, nan, nan)
            continue
        sd = sum(g[j] - g[c] for _, _, g, _, _ in rows)
        sd2 = sum(g2[j] + g2[c] - 2 * x[j] for _, _, _, g2, x in rows)
        est = float(sd) / total
        var = max(float(sd2 - sd * sd / total), 0.0) / (total - 1)
        half = Z95 * math.sqrt(var) / math.sqrt(total)
        out["contrasts"][arm] = ArmEstimate(arm, est, est - half, est + half)
    return out


def expected_shares(arms: Sequence[str], batches: Mapping[int, BatchSums]) -> list[float]:
    """Each arm's expected share of all units under the shares in force per batch (the
    sample-ratio check of an adaptive experiment); the mean share when there are no units."""
    num = np.zeros(len(arms))
    for bs in batches.values():
        num += sum(bs.n.values()) * np.array([bs.shares[a] for a in arms])
    total = float(num.sum())
    return [float(x / total) for x in num] if total > 0 else [1 / len(arms)] * len(arms)


# --- the next batch -------------------------------------------------------------------------


def _seed(experiment_id: str, batch: int) -> int:
    """Same inputs, same shares: two workers briefly both allocating publish the same record."""
    return int.from_bytes(
        hashlib.blake2b(f"{experiment_id}:{batch}".encode(), digest_size=8).digest()
    )


def thompson_shares(
    exp: Experiment, batches: Mapping[int, BatchSums], batch: int
) -> dict[str, float]:
    """Shares ``min_share + (1 - K min_share) P(arm is best)`` from every batch's sums."""
    assert exp.bandit is not None
    names = [a.name for a in exp.arms]
    al = Allocator(
        names, min_share=exp.bandit.min_share, control=exp.control, seed=_seed(exp.id, batch)
    )
    for bs in batches.values():
        for a in names:
            al.observe_sums(a, bs.s[a], bs.n[a])
    return al.reallocate()


def next_allocation(
    exp: Experiment,
    current: Allocation,
    switch_killed: bool,
    batches: Mapping[int, BatchSums],
    now_ms: int,
) -> Allocation | None:
    """The record to publish now, or None: the kill switch and its release take effect at
    once (a new batch); otherwise a new batch once the current one is ``batch_interval_s``
    old and holds ``batch_min_units`` units, up to ``max_batches`` re-allocations."""
    spec = exp.bandit
    assert spec is not None
    nxt = current.batch + 1
    if switch_killed:
        if current.killed:
            return None
        return Allocation(
            exp.id, nxt, Allocation.initial(exp).killed_now(exp.control).shares, True, now_ms
        )
    if current.killed:
        return Allocation(exp.id, nxt, thompson_shares(exp, batches, nxt), False, now_ms)
    if current.batch >= spec.max_batches or now_ms - current.as_of < spec.batch_interval_s * 1000:
        return None
    cur = batches.get(current.batch)
    if cur is None or sum(cur.n.values()) < max(spec.batch_min_units, 1):
        return None
    return Allocation(exp.id, nxt, thompson_shares(exp, batches, nxt), False, now_ms)
