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
from online_models.sequential import compare, cuped, mean_stat, ratio_stat, srm_check

MAX_CREDIT_S = 900.0  # one position step never credits more watching than this
METRICS = ("impression_to_play", "minutes_per_user", "minutes_per_user_cuped", "completion_rate")


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
class Experiment:
    id: str
    layer: str
    traffic: float
    arms: tuple[Arm, ...]
    control: str  # the arm others are compared with (the first unless ``control`` is set)
    start: float = 0.0  # the experiment's range of the layer: [start, start + traffic)
    primary: str = "minutes_per_user_cuped"  # the metric the decision reads (``METRICS``)

    def arm_for(self, salt: str, user_id: str) -> Arm:
        u = unit_hash(f"{salt}:{self.id}:{user_id}")
        acc = 0.0
        for arm in self.arms:
            acc += arm.share
            if u < acc:
                return arm
        return self.arms[-1]


class ConfigError(ValueError):
    pass


def _name_ok(name: str) -> bool:
    """Ids become Redis keys and labels; ``experiment:arm,...`` labels split on ':' and ','."""
    return is_valid_id(name) and ":" not in name


class Assigner:
    """Which arm of which experiment each user is in; counts exposures per arm."""

    def __init__(self, experiments: Iterable[Experiment], salt: str) -> None:
        self.salt = salt
        self.layers: dict[str, list[Experiment]] = defaultdict(list)
        for e in experiments:
            self.layers[e.layer].append(e)
        self.experiments = {e.id: e for es in self.layers.values() for e in es}
        self.exposures: Counter[tuple[str, str]] = Counter()
        self._cache: dict[str, str | None] = {}

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
            exps.append(Experiment(eid, layer, traffic, arms, control, used[layer], primary))
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

    def assign(self, user_id: str) -> dict[str, tuple[Experiment, Arm]]:
        """The user's experiment and arm per layer (layers where the user is in none are absent)."""
        out: dict[str, tuple[Experiment, Arm]] = {}
        for layer, exps in self.layers.items():
            u = unit_hash(f"{self.salt}:{layer}:{user_id}")
            for e in exps:
                if e.start <= u < e.start + e.traffic:
                    out[layer] = (e, e.arm_for(self.salt, user_id))
                    break
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
            }
            for es in self.layers.values()
            for e in es
        ]

    def arm_label(self, user_id: str, count: bool = True) -> str | None:
        """``experiment:arm`` per layer joined by ``,`` (the score message's ``experiment_arm``).

        Each call is an exposure of the user's arms (one score message).
        """
        label = self._cache.get(user_id, "")
        if label == "":
            got = sorted(self.assign(user_id).items())
            label = ",".join(f"{e.id}:{a.name}" for _, (e, a) in got) or None
            if len(self._cache) > 500_000:
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
