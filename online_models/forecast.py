"""Greenlight forecasts: a title's first-28-day audience per region, with an interval.

For a title that does not exist yet, described by attributes known at greenlight
(genres, tags, runtime, cast, kind), :class:`GreenlightForecaster` predicts, per
region, ``log1p`` of the completion-weighted viewers of its first 28 days, from
one online River regressor per region wrapped in ``river.conf.RegressionJackknife``
(the interval comes from the quantiles of the regressor's past out-of-sample
residuals). Features, all computed from titles already released:

* genre indicators, kind, runtime (hours, and distance from 105 minutes),
* ``cast_mean``: the mean log audience in that region of the cast's earlier titles,
* ``similar_mean``: the mean log audience in that region of the ``k`` released
  titles most similar by tags (cosine of tag indicator vectors),
* ``genre_mean``: the running mean log audience of its genres in that region.

``learn(attributes, audience)`` adds a released title's results. :func:`backtest`
runs the prequential protocol (forecast each title before learning its result)
and reports MAE on log audience, interval coverage and width beside a per-region
genre-mean baseline and a nearest-similar-titles baseline
(``reelstream forecast backtest``).

What it cannot tell: the quality of the finished title, marketing, release
timing and competition are not among its inputs; the interval is calibrated on
past titles like this one and is only as honest as that past.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import conf, linear_model, optim, preprocessing


def tag_set(attrs: Mapping[str, Any]) -> set[str]:
    keys = {f"genre:{g}" for g in attrs.get("genres", ())}
    for dim, values in (attrs.get("tags") or {}).items():
        keys.update(f"{dim}:{v}" for v in values)
    keys.add(f"kind:{attrs.get('kind', 'movie')}")
    return keys


class _Mean:
    __slots__ = ("n", "total")

    def __init__(self) -> None:
        self.total = 0.0
        self.n = 0

    def add(self, v: float) -> None:
        self.total += v
        self.n += 1

    def get(self, default: float) -> float:
        return self.total / self.n if self.n else default


class _Released:
    """Tag vectors and per-region log audiences of released titles (grows in place)."""

    def __init__(self, regions: Sequence[str]) -> None:
        self.vocab: dict[str, int] = {}
        self.m = np.zeros((64, 64), dtype=np.float32)
        self.n = 0
        self.logs: dict[str, list[float]] = {r: [] for r in regions}
        self._last: tuple[frozenset[str], int, int, np.ndarray] | None = None

    def _vector(self, tags: set[str]) -> np.ndarray:
        v = np.zeros(self.m.shape[1], dtype=np.float32)
        for t in tags:
            j = self.vocab.get(t)
            if j is not None:
                v[j] = 1.0
        norm = float(np.linalg.norm(v))
        return v / norm if norm else v

    def add(self, tags: set[str]) -> None:
        for t in sorted(tags):
            self.vocab.setdefault(t, len(self.vocab))
        rows, cols = self.m.shape
        if self.n >= rows or len(self.vocab) > cols:
            grown = np.zeros(
                (max(rows, 2 * self.n + 1), max(cols, 2 * len(self.vocab))), np.float32
            )
            grown[:rows, :cols] = self.m
            self.m = grown
        self.m[self.n] = self._vector(tags)
        self.n += 1

    def top(self, tags: set[str], k: int) -> np.ndarray:
        """Rows of the ``k`` released titles most similar to ``tags`` (cached per query)."""
        key = frozenset(tags)
        if self._last is not None and self._last[:3] == (key, self.n, k):
            return self._last[3]
        sims = self.m[: self.n] @ self._vector(tags)
        top = np.argsort(-sims, kind="stable")[:k]
        self._last = (key, self.n, k, top)
        return top

    def similar_mean(self, tags: set[str], region: str, k: int) -> float | None:
        if not self.n:
            return None
        logs = self.logs[region]
        return float(np.mean([logs[i] for i in self.top(tags, k)]))


class GreenlightForecaster:
    def __init__(
        self, regions: Sequence[str], k_similar: int = 10, confidence: float = 0.8
    ) -> None:
        self.regions = tuple(regions)
        self.k = k_similar
        self.confidence = confidence
        self.models = {
            r: conf.RegressionJackknife(
                preprocessing.StandardScaler()
                | linear_model.LinearRegression(
                    optimizer=optim.SGD(0.005), l2=0.001, clip_gradient=1.0
                ),
                confidence_level=confidence,
                window_size=300,
            )
            for r in self.regions
        }
        self.released = _Released(self.regions)
        self.cast = {r: {} for r in self.regions}  # region -> actor -> _Mean
        self.genre = {r: {} for r in self.regions}  # region -> genre -> _Mean
        self.overall = {r: _Mean() for r in self.regions}
        self.seen = 0

    def features(self, attrs: Mapping[str, Any], region: str) -> dict[str, float]:
        base = self.overall[region].get(0.0)
        x: dict[str, float] = {f"genre_{g}": 1.0 for g in attrs.get("genres", ())}
        x["series"] = 1.0 if attrs.get("kind") in ("series", "episode") else 0.0
        minutes = float(attrs.get("runtime_s", 0)) / 60
        x["runtime_h"] = minutes / 60
        x["runtime_off"] = abs(minutes - 105) / 30 if not x["series"] else 0.0
        known = [
            self.cast[region][a].get(base) for a in attrs.get("cast", ()) if a in self.cast[region]
        ]
        x["cast_mean"] = float(np.mean(known)) - base if known else 0.0
        x["cast_known"] = len(known) / max(1, len(attrs.get("cast", ())))
        sim = self.released.similar_mean(tag_set(attrs), region, self.k)
        x["similar_mean"] = (sim - base) if sim is not None else 0.0
        gm = [
            self.genre[region][g].get(base)
            for g in attrs.get("genres", ())
            if g in self.genre[region]
        ]
        x["genre_mean"] = float(np.mean(gm)) - base if gm else 0.0
        return x

    def forecast(
        self, attrs: Mapping[str, Any], regions: Iterable[str] | None = None
    ) -> dict[str, dict[str, float]]:
        """Per region: audience (viewers) with low/high bounds, and the log values."""
        out = {}
        for r in regions or self.regions:
            if r not in self.models:
                raise ValueError(f"unknown region {r!r}; known: {', '.join(self.regions)}")
            base = self.overall[r].get(0.0)
            x = self.features(attrs, r)
            model = self.models[r]
            center = _clamp(base + float(model.predict_one(x) or 0.0))
            iv = model.predict_one(x, with_interval=True)
            low = _clamp(base + float(iv.lower)) if self.seen >= 2 else center
            high = _clamp(base + float(iv.upper)) if self.seen >= 2 else center
            low, high = min(low, center), max(high, center)
            out[r] = {
                "audience": round(math.expm1(max(center, 0.0)), 1),
                "low": round(math.expm1(max(low, 0.0)), 1),
                "high": round(math.expm1(max(high, 0.0)), 1),
                "log": round(center, 4),
                "log_low": round(low, 4),
                "log_high": round(high, 4),
            }
        return out

    def learn(self, attrs: Mapping[str, Any], audience: Mapping[str, float]) -> None:
        """Add a released title's first-28-day audience per region."""
        tags = tag_set(attrs)
        feats = {r: self.features(attrs, r) for r in self.regions}
        for r in self.regions:
            y = math.log1p(max(0.0, float(audience.get(r, 0.0))))
            base = self.overall[r].get(y)
            self.models[r].learn_one(feats[r], y - base)
            self.overall[r].add(y)
            for a in attrs.get("cast", ()):
                self.cast[r].setdefault(a, _Mean()).add(y)
            for g in attrs.get("genres", ()):
                self.genre[r].setdefault(g, _Mean()).add(y)
            self.released.logs[r].append(y)
        self.released.add(tags)
        self.seen += 1


def _clamp(log_value: float) -> float:
    """Forecasts stay within 0 and e^20 viewers whatever an early model says."""
    return min(max(log_value, 0.0), 20.0) if math.isfinite(log_value) else 0.0


@dataclass
class _Score:
    abs_err: list[float] = field(default_factory=list)
    covered: list[bool] = field(default_factory=list)
    width: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {
            "mae_log": round(float(np.mean(self.abs_err)), 4),
            "coverage": round(float(np.mean(self.covered)), 4),
            "width_log": round(float(np.mean(self.width)), 4),
        }


def _empirical_interval(residuals: list[float], point: float, level: float) -> tuple[float, float]:
    if len(residuals) < 10:
        return point, point
    lo, hi = np.quantile(residuals[-500:], [(1 - level) / 2, (1 + level) / 2])
    return point + float(lo), point + float(hi)


def backtest(
    titles: Sequence[tuple[Mapping[str, Any], Mapping[str, float]]],
    regions: Sequence[str],
    warmup: int = 100,
    confidence: float = 0.8,
    k_similar: int = 10,
) -> dict[str, Any]:
    """Prequential: forecast each title, then learn its result. Titles after ``warmup``
    are scored; baselines get intervals from the quantiles of their own past residuals."""
    model = GreenlightForecaster(regions, k_similar=k_similar, confidence=confidence)
    scores = {name: _Score() for name in ("model", "genre_mean", "similar_titles")}
    residuals: dict[str, list[float]] = {"genre_mean": [], "similar_titles": []}
    per_region = {r: _Score() for r in regions}
    for n, (attrs, audience) in enumerate(titles):
        if n >= warmup:
            fc = model.forecast(attrs)
            tags = tag_set(attrs)
            for r in regions:
                y = math.log1p(max(0.0, float(audience.get(r, 0.0))))
                f = fc[r]
                for sc in (scores["model"], per_region[r]):
                    sc.abs_err.append(abs(f["log"] - y))
                    sc.covered.append(f["log_low"] <= y <= f["log_high"])
                    sc.width.append(f["log_high"] - f["log_low"])
                base = model.overall[r].get(0.0)
                gm = [model.genre[r][g].get(base) for g in attrs["genres"] if g in model.genre[r]]
                sim = model.released.similar_mean(tags, r, k_similar)
                points = {
                    "genre_mean": float(np.mean(gm)) if gm else base,
                    "similar_titles": sim if sim is not None else base,
                }
                for name, p in points.items():
                    lo, hi = _empirical_interval(residuals[name], p, confidence)
                    scores[name].abs_err.append(abs(p - y))
                    scores[name].covered.append(lo <= y <= hi)
                    scores[name].width.append(hi - lo)
                    residuals[name].append(y - p)
        model.learn(attrs, audience)
    return {
        "titles": len(titles),
        "scored": max(0, len(titles) - warmup),
        "regions": list(regions),
        "confidence": confidence,
        "methods": {name: s.summary() for name, s in scores.items()},
        "model_by_region": {r: s.summary() for r, s in per_region.items()},
    }
