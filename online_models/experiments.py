"""Experiments: a config file, deterministic assignment, per-arm metrics and their analysis.

Config (TOML, or YAML when PyYAML is installed; docs/artwork-and-experiments.md)::

    salt = "2026-12"

    [[experiment]]
    id = "artwork-policy"
    layer = "artwork"          # experiments in one layer never share a user
    traffic = 0.5              # share of the layer's users in this experiment
    [[experiment.arm]]
    name = "control"
    share = 0.5
    params = { artwork_policy = "off" }
    [[experiment.arm]]
    name = "lints"
    share = 0.5
    params = { artwork_policy = "ts" }

Assignment: ``u = H(salt:layer:user)`` in [0, 1) places the user in the layer;
experiments of a layer hold consecutive ranges of ``u`` (so they are mutually
exclusive), and ``H(salt:experiment:user)`` picks the arm by its share. ``H`` is
the first 8 bytes of BLAKE2b. Layers are independent of each other (orthogonal).

An experiment with ``allocation = "thompson"`` (bandit traffic,
online_models/bandit_live.py) picks the arm by the shares *in force* instead:
``H(salt:experiment:b<batch>:user)`` against the batch's shares, re-drawn every
batch so each exposure's propensity is exactly the share of its batch; with its
kill switch on, every user of the experiment gets the control arm.

>>> a = Assigner.from_dict({"salt": "s", "experiment": [{"id": "e", "layer": "l", "traffic": 1,
...     "arm": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]}]})
>>> a.arm_label("u1") in ("e:a", "e:b"), a.arm_label("u1") == a.arm_label("u1")
(True, True)
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from features.ids import is_valid_id
from online_models.bandit_live import Allocation, Unit
from online_models.sequential import compare, cuped, mean_stat, ratio_stat, srm_check

MAX_CREDIT_S = 900.0  # one position step never credits more watching than this
# What an arm's ``params`` may change (docs/artwork-and-experiments.md, section 3):
# ``blend``: {source: weight} replacing the ranker's prior weight of those candidate
# sources; ``sources``: the candidate mix, only these sources propose titles;
# ``artwork_policy``: "off" keeps the first artwork variant for the arm's users.
ARM_PARAMS = ("blend", "sources", "artwork_policy")
ARTWORK_POLICIES = ("off", "ts", "ucb")


@dataclass(frozen=True)
class Ranking:
    """A user's ranking as the arms they are in set it (None fields: the default)."""

    blend: Mapping[str, float] | None = None
    sources: frozenset[str] | None = None


def check_params(where: str, params: Mapping[str, Any]) -> None:
    """Refuse what the engine would not apply (a typo must not run as a silent control)."""
    from online_models.recommender import SOURCES

    unknown = set(params) - set(ARM_PARAMS)
    if unknown:
        raise ConfigError(f"{where}: unknown params {sorted(unknown)}; use {', '.join(ARM_PARAMS)}")
    blend = params.get("blend")
    if blend is not None:
        ok = isinstance(blend, Mapping) and all(
            k in SOURCES
            and isinstance(v, int | float)
            and not isinstance(v, bool)
            and math.isfinite(v)
            and v >= 0
            for k, v in blend.items()
        )
        if not ok or not blend:
            raise ConfigError(
                f"{where}: blend is a table of source = weight >= 0, sources {', '.join(SOURCES)}"
            )
    sources = params.get("sources")
    if sources is not None and (
        not isinstance(sources, list) or not sources or not set(sources) <= set(SOURCES)
    ):
        raise ConfigError(f"{where}: sources is a non-empty list of {', '.join(SOURCES)}")
    art = params.get("artwork_policy")
    if art is not None and art not in ARTWORK_POLICIES:
        raise ConfigError(f"{where}: artwork_policy is one of {', '.join(ARTWORK_POLICIES)}")


METRICS = ("impression_to_play", "minutes_per_user", "minutes_per_user_cuped", "completion_rate")
OUTCOMES = ("play", "complete")  # a bandit unit's binary outcome: this event after exposure


def unit_hash(text: str) -> float:
    """A stable uniform number in [0, 1) for ``text``."""
    h = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


@dataclass(frozen=True)
class Arm:
    name: str
    share: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BanditSpec:
    """Bandit traffic of one experiment (``allocation = "thompson"`` in the file).

    A new batch starts when the current one is at least ``batch_interval_s`` old and
    holds at least ``batch_min_units`` exposures; after ``max_batches`` the shares stay,
    which bounds the per-batch sums the analysis keeps.
    """

    min_share: float = 0.05
    batch_interval_s: float = 300.0
    batch_min_units: int = 200
    max_batches: int = 500
    outcome: str = "play"


@dataclass(frozen=True)
class Experiment:
    id: str
    layer: str
    traffic: float
    arms: tuple[Arm, ...]
    control: str  # the arm others are compared with (the first unless ``control`` is set)
    start: float = 0.0  # the experiment's range of the layer: [start, start + traffic)
    primary: str = "minutes_per_user_cuped"  # the metric the decision reads (``METRICS``)
    bandit: BanditSpec | None = None  # None: fixed shares, as configured

    def arm_for(self, salt: str, user_id: str) -> Arm:
        return self._pick(
            unit_hash(f"{salt}:{self.id}:{user_id}"), {a.name: a.share for a in self.arms}
        )

    def arm_in_batch(self, salt: str, user_id: str, batch: int, shares: Mapping[str, float]) -> Arm:
        """The arm under a bandit batch's shares; the batch salts the hash (re-drawn per batch)."""
        return self._pick(unit_hash(f"{salt}:{self.id}:b{batch}:{user_id}"), shares)

    def _pick(self, u: float, shares: Mapping[str, float]) -> Arm:
        acc = 0.0
        for arm in self.arms:
            acc += shares[arm.name]
            if u < acc:
                return arm
        return self.arms[-1]


class ConfigError(ValueError):
    pass


def _name_ok(name: str) -> bool:
    """Ids become Redis keys and labels; ``experiment:arm,...`` labels split on ':' and ','."""
    return is_valid_id(name) and ":" not in name


def _bandit_spec(eid: str, raw: Mapping[str, Any], arms: tuple[Arm, ...]) -> BanditSpec | None:
    """The experiment's bandit keys, checked; None for a fixed-share experiment."""
    keys = ("min_share", "batch_interval_s", "batch_min_units", "max_batches", "outcome")
    allocation = str(raw.get("allocation", "fixed"))
    if allocation == "fixed":
        if any(k in raw for k in keys):
            raise ConfigError(f'{eid}: {", ".join(keys)} need allocation = "thompson"')
        return None
    if allocation != "thompson":
        raise ConfigError(f'{eid}: allocation must be "fixed" or "thompson"')
    d = BanditSpec()
    try:
        spec = BanditSpec(
            min_share=float(raw.get("min_share", d.min_share)),
            batch_interval_s=float(raw.get("batch_interval_s", d.batch_interval_s)),
            batch_min_units=int(raw.get("batch_min_units", d.batch_min_units)),
            max_batches=int(raw.get("max_batches", d.max_batches)),
            outcome=str(raw.get("outcome", d.outcome)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{eid}: bandit keys: {exc}") from None
    if not 0 < spec.min_share <= 1 / len(arms) or not math.isfinite(spec.min_share):
        raise ConfigError(f"{eid}: min_share must be in (0, 1/arms]")
    if any(a.share < spec.min_share - 1e-12 for a in arms):
        raise ConfigError(f"{eid}: every arm's starting share must be at least min_share")
    if not 0 < spec.batch_interval_s < math.inf or spec.batch_min_units < 0:
        raise ConfigError(f"{eid}: batch_interval_s > 0 and batch_min_units >= 0")
    if not 1 <= spec.max_batches <= 10_000:
        raise ConfigError(f"{eid}: max_batches must be from 1 to 10000")
    if spec.outcome not in OUTCOMES:
        raise ConfigError(f"{eid}: outcome must be one of {', '.join(OUTCOMES)}")
    return spec


class Assigner:
    """Which arm of which experiment each user is in; counts exposures per arm."""

    def __init__(self, experiments: Iterable[Experiment], salt: str) -> None:
        self.salt = salt
        self.layers: dict[str, list[Experiment]] = defaultdict(list)
        for e in experiments:
            self.layers[e.layer].append(e)
        self.experiments = {e.id: e for es in self.layers.values() for e in es}
        self.exposures: Counter[tuple[str, str]] = Counter()
        self._cache: dict[str, str | None] = {}  # user -> arm label (cleared past cache_max)
        self.cache_max = 500_000  # the worker: REELSTREAM_USER_CACHE
        # Bandit experiments: the allocation in force (batch 0: the configured shares until
        # the allocation topic says otherwise) and the operator's kill switch.
        self.allocations = {
            e.id: Allocation.initial(e) for e in self.experiments.values() if e.bandit
        }
        self.switches: dict[str, bool] = {}

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> Assigner:
        salt = str(cfg.get("salt", ""))
        if not salt:
            raise ConfigError("experiments config needs a non-empty salt")
        exps: list[Experiment] = []
        used: dict[str, float] = defaultdict(float)
        for raw in cfg.get("experiment", []):
            eid, layer = str(raw.get("id", "")), str(raw.get("layer", "default"))
            if not eid or eid in {e.id for e in exps}:
                raise ConfigError(f"experiment id {eid!r} missing or repeated")
            if not _name_ok(eid):
                raise ConfigError(f"experiment id {eid!r}: use [A-Za-z0-9_.-], no ':' or ','")
            traffic = float(raw.get("traffic", 1.0))
            arms = tuple(
                Arm(str(a["name"]), float(a["share"]), dict(a.get("params") or {}))
                for a in raw.get("arm", [])
            )
            if not all(_name_ok(a.name) for a in arms):
                raise ConfigError(f"{eid}: arm names use [A-Za-z0-9_.-], no ':' or ','")
            for a in arms:
                check_params(f"{eid}:{a.name}", a.params)
            if len(arms) < 2 or len({a.name for a in arms}) != len(arms):
                raise ConfigError(f"{eid}: at least two arms with distinct names")
            if any(a.share <= 0 for a in arms) or not math.isclose(sum(a.share for a in arms), 1):
                raise ConfigError(f"{eid}: arm shares must be positive and sum to 1")
            if not 0 < traffic <= 1 or used[layer] + traffic > 1 + 1e-9:
                raise ConfigError(f"{eid}: traffic of layer {layer!r} would exceed 1")
            control = str(raw.get("control", arms[0].name))
            if control not in {a.name for a in arms}:
                raise ConfigError(f"{eid}: control {control!r} is not an arm")
            primary = str(raw.get("primary_metric", "minutes_per_user_cuped"))
            if primary not in METRICS:
                raise ConfigError(f"{eid}: primary_metric must be one of {', '.join(METRICS)}")
            bandit = _bandit_spec(eid, raw, arms)
            exps.append(
                Experiment(eid, layer, traffic, arms, control, used[layer], primary, bandit)
            )
            used[layer] += traffic
        return cls(exps, salt)

    @classmethod
    def from_file(cls, path: str | Path) -> Assigner:
        path = Path(path)
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml  # optional: the dev extra has it; TOML needs nothing

            return cls.from_dict(yaml.safe_load(text) or {})
        import tomllib

        return cls.from_dict(tomllib.loads(text))

    def in_force(self, experiment_id: str) -> Allocation:
        """A bandit experiment's allocation now: the latest record, or control only when killed."""
        a = self.allocations[experiment_id]
        if self.switches.get(experiment_id) and not a.killed:
            return a.killed_now(self.experiments[experiment_id].control)
        return a

    def set_allocation(self, a: Allocation) -> bool:
        """Take a newer (or the same) batch's record; an older one is ignored."""
        cur = self.allocations.get(a.experiment)
        if cur is None or a.batch < cur.batch:
            return False
        self.allocations[a.experiment] = a
        self._cache.clear()
        return True

    def set_switch(self, experiment_id: str, killed: bool) -> None:
        """The operator's kill switch (followed from the allocation topic by every worker)."""
        if experiment_id in self.allocations:
            self.switches[experiment_id] = killed
            self._cache.clear()

    def assign(self, user_id: str) -> dict[str, tuple[Experiment, Arm]]:
        """The user's experiment and arm per layer (layers where the user is in none are absent)."""
        out: dict[str, tuple[Experiment, Arm]] = {}
        for layer, exps in self.layers.items():
            u = unit_hash(f"{self.salt}:{layer}:{user_id}")
            for e in exps:
                if e.start <= u < e.start + e.traffic:
                    out[layer] = (e, self._arm(e, user_id))
                    break
        return out

    def ranking(self, user_id: str) -> Ranking | None:
        """What the user's arms change in ranking, over all layers (None: nothing).

        Weights of several arms are merged (a later layer wins a source both name);
        candidate mixes intersect.
        """
        blend: dict[str, float] = {}
        sources: frozenset[str] | None = None
        for _, (_, arm) in sorted(self.assign(user_id).items()):
            blend.update(arm.params.get("blend") or {})
            if arm.params.get("sources"):
                mix = frozenset(arm.params["sources"])
                sources = mix if sources is None else sources & mix
        if not blend and sources is None:
            return None
        return Ranking(blend or None, sources)

    def _arm(self, e: Experiment, user_id: str) -> Arm:
        if e.bandit is None:
            return e.arm_for(self.salt, user_id)
        a = self.in_force(e.id)
        if a.killed:
            return next(x for x in e.arms if x.name == e.control)
        return e.arm_in_batch(self.salt, user_id, a.batch, a.shares)

    def bandit_units(self, user_id: str) -> list[Unit]:
        """The user's exposures to bandit batches now, each with its propensity (the batch's
        shares); none for a killed experiment, whose traffic all goes to control."""
        out = []
        for e, arm in self.assign(user_id).values():
            if e.bandit is not None:
                a = self.in_force(e.id)
                if not a.killed:
                    out.append(Unit(e.id, a.batch, arm.name, a.shares, e.bandit.outcome))
        return out

    def describe(self) -> list[dict[str, Any]]:
        """What ``GET /experiments`` lists: layers, traffic, arms, shares, exposures."""
        return [
            {
                "id": e.id,
                "layer": e.layer,
                "traffic": e.traffic,
                "control": e.control,
                "arms": [
                    {
                        "name": a.name,
                        "share": a.share,
                        "params": a.params,
                        "exposures": self.exposures[(e.id, a.name)],
                    }
                    for a in e.arms
                ],
                **({"allocation": self.allocation_doc(e.id)} if e.bandit else {}),
            }
            for es in self.layers.values()
            for e in es
        ]

    def allocation_doc(self, experiment_id: str) -> dict[str, Any]:
        """A bandit experiment's allocation for the API: shares in force, batch, kill switch."""
        e = self.experiments[experiment_id]
        assert e.bandit is not None
        a = self.in_force(experiment_id)
        return {
            "mode": "thompson",
            **a.as_dict(),
            "kill_switch": bool(self.switches.get(experiment_id)),
            "min_share": e.bandit.min_share,
            "batch_interval_s": e.bandit.batch_interval_s,
            "batch_min_units": e.bandit.batch_min_units,
            "max_batches": e.bandit.max_batches,
            "outcome": e.bandit.outcome,
        }

    def arm_label(self, user_id: str, count: bool = True) -> str | None:
        """``experiment:arm`` per layer joined by ``,`` (the score message's ``experiment_arm``).

        Each call is an exposure of the user's arms (one score message).
        """
        label = self._cache.get(user_id, "")
        if label == "":
            got = sorted(self.assign(user_id).items())
            label = ",".join(f"{e.id}:{a.name}" for _, (e, a) in got) or None
            if len(self._cache) >= self.cache_max:
                self._cache.clear()
            self._cache[user_id] = label
        if count and label:
            for part in label.split(","):
                e, a = part.split(":", 1)
                self.exposures[(e, a)] += 1
        return label


# --- per-user aggregates and analysis ---------------------------------------------------------


@dataclass(slots=True)
class UserStats:
    impressions: int = 0
    plays: int = 0
    completes: int = 0
    watch_s: float = 0.0
    pre_watch_s: float = 0.0  # before the experiment started: the CUPED covariate


class MetricsFolder:
    """Folds playback events into per-user aggregates for experiment analysis.

    Watch time credits each increase of a title's playhead (at most
    ``MAX_CREDIT_S`` per step); events before ``start_ms`` count as pre-period
    watch time only.
    """

    def __init__(self, start_ms: int = 0) -> None:
        self.start_ms = start_ms
        self.users: dict[str, UserStats] = defaultdict(UserStats)
        self._pos: dict[tuple[str, str], float] = {}

    def observe(self, ev: Mapping[str, Any]) -> None:
        s = self.users[ev["user_id"]]
        pre = ev["ts"] < self.start_ms
        etype = ev["event_type"]
        key = (ev["user_id"], ev["title_id"])
        if etype == "play":
            self._pos[key] = float(ev.get("position_s") or 0.0)
        pos = ev.get("position_s")
        if pos is not None and etype in ("progress", "stop", "complete", "pause"):
            step = min(max(float(pos) - self._pos.get(key, 0.0), 0.0), MAX_CREDIT_S)
            self._pos[key] = float(pos)
            if pre:
                s.pre_watch_s += step
            else:
                s.watch_s += step
        if pre:
            return
        if etype == "impression":
            s.impressions += 1
        elif etype == "play":
            s.plays += 1
        elif etype == "complete":
            s.completes += 1


def analyze(
    exp: Experiment,
    users: Mapping[str, UserStats],
    arm_of: Mapping[str, str],
    alpha: float = 0.05,
    n_opt: float = 10_000,
) -> dict[str, Any]:
    """Per-arm metrics, always-valid comparisons with the control arm, CUPED and SRM.

    ``arm_of`` maps each exposed user of ``exp`` to an arm name; users without
    stats count with zeros (exposed, did nothing).
    """
    names = [a.name for a in exp.arms]
    cols: dict[str, dict[str, list[float]]] = {
        n: {k: [] for k in ("imp", "play", "comp", "min", "pre")} for n in names
    }
    for uid, arm in arm_of.items():
        s = users.get(uid) or UserStats()
        c = cols[arm]
        c["imp"].append(s.impressions)
        c["play"].append(s.plays)
        c["comp"].append(s.completes)
        c["min"].append(s.watch_s / 60.0)
        c["pre"].append(s.pre_watch_s / 60.0)
    arr = {n: {k: np.asarray(v, dtype=float) for k, v in c.items()} for n, c in cols.items()}
    all_min = np.concatenate([arr[n]["min"] for n in names])
    all_pre = np.concatenate([arr[n]["pre"] for n in names])
    adj, theta = cuped(all_min, all_pre)
    off = 0
    for n in names:
        k = len(arr[n]["min"])
        arr[n]["min_cuped"] = adj[off : off + k]
        off += k

    def stats(n: str) -> dict[str, Any]:
        a = arr[n]
        return {
            "impression_to_play": ratio_stat(a["play"], a["imp"]),
            "minutes_per_user": mean_stat(a["min"]),
            "minutes_per_user_cuped": mean_stat(a["min_cuped"]),
            "completion_rate": ratio_stat(a["comp"], a["play"]),
        }

    per_arm = {n: stats(n) for n in names}
    comparisons = {
        n: {
            m: compare(m, per_arm[exp.control][m], per_arm[n][m], alpha, n_opt).as_dict()
            for m in per_arm[n]
        }
        for n in names
        if n != exp.control
    }
    var_raw = float(all_min.var()) if len(all_min) else 0.0
    srm = srm_check([len(arr[n]["min"]) for n in names], [a.share for a in exp.arms])
    return {
        "experiment": exp.id,
        "layer": exp.layer,
        "arms": [{"name": a.name, "share": a.share, "params": a.params} for a in exp.arms],
        "control": exp.control,
        "users": {n: len(arr[n]["min"]) for n in names},
        "metrics": {n: {m: s.as_dict() for m, s in per_arm[n].items()} for n in names},
        "comparisons": comparisons,
        "cuped": {
            "theta": theta,
            "variance_reduction": 1 - float(adj.var()) / var_raw if var_raw > 0 else 0.0,
        },
        "srm": srm.as_dict(),
        "alpha": alpha,
    }
