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

**State.** River persists models with pickle, which this project never loads
(the rule of online_models/checkpoint.py). A forecaster's state is therefore the
ordered ledger of released titles it learned: :func:`encode_state` writes a
header (format, regions, settings, SHA-256 of the body) and one validated result
per line; :func:`decode_state` checks all of it and :func:`build` replays the
ledger. Training is deterministic, so the same file gives the same forecasts
(about 1.2 ms of CPU per title to replay). Inputs from outside (HTTP bodies,
result files) go through :func:`parse_attributes` and :func:`parse_result`.

>>> parse_attributes({"genres": ["horror"], "runtime_s": 5400})["kind"]
'movie'
>>> parse_attributes({"genres": [], "runtime_s": 5400})
Traceback (most recent call last):
...
online_models.forecast.ForecastInputError: invalid_attributes: genres must name at least one genre
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from river import conf, linear_model, optim, preprocessing

from features.catalog import TAG_RE
from features.ids import ID_RE

REGION_RE = re.compile(r"^[A-Z]{2}$")  # ISO 3166 alpha-2, as in the event contract
KINDS = ("movie", "series", "episode", "special")
MAX_GENRES = 10
MAX_TAG_DIMENSIONS = 16
MAX_TAG_VALUES = 10
MAX_CAST = 50
MAX_RUNTIME_S = 86_400
MAX_SYNOPSIS = 2000
MAX_REGIONS = 64
MAX_AUDIENCE = 1e12
MAX_STATE_BYTES = 256 * 1024 * 1024
STATE_FORMAT = "reelstream-forecaster"
STATE_VERSION = 1


class ForecastInputError(ValueError):
    """Attributes, a result or a state that do not follow the rules; ``code`` names which."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def _strings(value: object, name: str, pattern: re.Pattern[str], most: int, code: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ForecastInputError(code, f"{name} must be a list of strings")
    if len(value) > most:
        raise ForecastInputError(code, f"{name} takes at most {most} values")
    for v in value:
        if not pattern.match(v):
            raise ForecastInputError(
                code, f"{name} value {v[:40]!r} does not match {pattern.pattern}"
            )
    return list(value)  # as given: the backtest and a state file must see the same lists


def parse_attributes(obj: object, code: str = "invalid_attributes") -> dict[str, Any]:
    """A normalised copy of a title's greenlight attributes, or :class:`ForecastInputError`.

    Strict because the attributes come from outside: known keys only, bounded sizes,
    tags and genres in the catalog's tag pattern, cast members in the id pattern.
    ``synopsis`` is accepted (and bounded) but not a feature today.
    """
    if not isinstance(obj, dict):
        raise ForecastInputError(code, "attributes must be a JSON object")
    unknown = set(obj) - {"genres", "tags", "runtime_s", "cast", "kind", "synopsis"}
    if unknown:
        raise ForecastInputError(code, f"unknown attributes: {', '.join(sorted(unknown))[:80]}")
    genres = _strings(obj.get("genres"), "genres", TAG_RE, MAX_GENRES, code)
    if not genres:
        raise ForecastInputError(code, "genres must name at least one genre")
    raw_tags = obj.get("tags", {})
    if not isinstance(raw_tags, dict) or len(raw_tags) > MAX_TAG_DIMENSIONS:
        raise ForecastInputError(
            code, f"tags must be an object of at most {MAX_TAG_DIMENSIONS} dimension -> list"
        )
    tags = {}
    for dim, values in raw_tags.items():
        if not TAG_RE.match(dim):
            raise ForecastInputError(
                code, f"tag dimension {dim[:40]!r} does not match {TAG_RE.pattern}"
            )
        tags[dim] = _strings(values, f"tags.{dim}", TAG_RE, MAX_TAG_VALUES, code)
    runtime = obj.get("runtime_s", 0)
    if (
        isinstance(runtime, bool)
        or not isinstance(runtime, int | float)
        or not math.isfinite(runtime)
        or not 0 <= runtime <= MAX_RUNTIME_S
    ):
        raise ForecastInputError(code, f"runtime_s must be a number from 0 to {MAX_RUNTIME_S}")
    cast = _strings(obj.get("cast", []), "cast", ID_RE, MAX_CAST, code)
    kind = obj.get("kind", "movie")
    if kind not in KINDS:
        raise ForecastInputError(code, f"kind must be one of {', '.join(KINDS)}")
    synopsis = obj.get("synopsis", "")
    if not isinstance(synopsis, str) or len(synopsis) > MAX_SYNOPSIS:
        raise ForecastInputError(
            code, f"synopsis must be a string of at most {MAX_SYNOPSIS} characters"
        )
    out: dict[str, Any] = {"genres": genres, "tags": tags, "runtime_s": runtime, "cast": cast}
    out["kind"] = kind
    if synopsis:
        out["synopsis"] = synopsis
    return out


def parse_regions(obj: object, known: Sequence[str], code: str = "invalid_regions") -> list[str]:
    """Requested regions: ISO alpha-2 codes this forecaster was trained on, each once."""
    if not isinstance(obj, list) or not obj or not all(isinstance(r, str) for r in obj):
        raise ForecastInputError(code, "regions must be a non-empty list of region codes")
    if len(obj) > min(MAX_REGIONS, len(known)):
        raise ForecastInputError(
            code, f"at most {min(MAX_REGIONS, len(known))} regions (this model knows {len(known)})"
        )
    for r in obj:
        if not REGION_RE.match(r):
            raise ForecastInputError(code, f"region {r[:8]!r} is not an ISO 3166 alpha-2 code")
        if r not in known:
            raise ForecastInputError(
                "unknown_region", f"no model for region {r}; known: {', '.join(known)}"
            )
    return list(dict.fromkeys(obj))


def parse_result(
    obj: object, regions: Sequence[str] | None = None
) -> tuple[str, dict[str, Any], dict[str, float]]:
    """One released title's results: ``{"title_id", "attributes", "audience": {region: n}}``.

    ``audience`` is the completion-weighted viewers of its first 28 days per region and
    must name exactly ``regions`` when given (the forecaster learns every region of
    every title; a title missing a region would teach it a zero).
    """
    code = "invalid_result"
    if not isinstance(obj, dict) or set(obj) - {"title_id", "attributes", "audience"}:
        raise ForecastInputError(code, "a result is {title_id, attributes, audience}")
    tid = obj.get("title_id")
    if not isinstance(tid, str) or not ID_RE.match(tid):
        raise ForecastInputError(code, f"title_id must match {ID_RE.pattern}")
    attrs = parse_attributes(obj.get("attributes"), code)
    aud = obj.get("audience")
    if not isinstance(aud, dict) or not aud or len(aud) > MAX_REGIONS:
        raise ForecastInputError(code, f"{tid}: audience must map 1 to {MAX_REGIONS} regions")
    audience: dict[str, float] = {}
    for r, v in aud.items():
        if not REGION_RE.match(r):
            raise ForecastInputError(code, f"{tid}: region {r[:8]!r} is not ISO 3166 alpha-2")
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or not math.isfinite(v)
            or not 0 <= v <= MAX_AUDIENCE
        ):
            raise ForecastInputError(code, f"{tid}: audience[{r}] must be a number >= 0")
        audience[r] = float(v)
    if regions is not None and set(audience) != set(regions):
        raise ForecastInputError(
            code, f"{tid}: audience must name exactly the regions {', '.join(regions)}"
        )
    return tid, attrs, audience


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


DEFAULT_K_SIMILAR = 10
DEFAULT_CONFIDENCE = 0.8


class GreenlightForecaster:
    def __init__(
        self,
        regions: Sequence[str],
        k_similar: int = DEFAULT_K_SIMILAR,
        confidence: float = DEFAULT_CONFIDENCE,
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
        self.learned: set[str] = set()  # title ids learned, so a result is learned once

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

    def learn(
        self, attrs: Mapping[str, Any], audience: Mapping[str, float], title_id: str | None = None
    ) -> bool:
        """Add a released title's first-28-day audience per region; False when ``title_id``
        was learned already (a 28-day result is final: learning it twice would count it twice)."""
        if title_id is not None:
            if title_id in self.learned:
                return False
            self.learned.add(title_id)
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
        return True


Result = tuple[str, dict[str, Any], dict[str, float]]


def encode_state(
    results: Sequence[Result],
    regions: Sequence[str],
    k_similar: int = 10,
    confidence: float = 0.8,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """The state file: a header line, then one result per line, in the order learned."""
    body = b"".join(
        orjson.dumps({"title_id": t, "attributes": a, "audience": y}) + b"\n" for t, a, y in results
    )
    header = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "regions": list(regions),
        "k_similar": k_similar,
        "confidence": confidence,
        "titles": len(results),
        "sha256": hashlib.sha256(body).hexdigest(),
        **(extra or {}),
    }
    return orjson.dumps(header) + b"\n" + body


def decode_state(raw: bytes) -> tuple[dict[str, Any], list[Result]]:
    """(header, results) of a state file, every line validated; :class:`ForecastInputError`
    (code ``invalid_state``) on anything else. Nothing in it is executed."""
    code = "invalid_state"
    if len(raw) > MAX_STATE_BYTES:
        raise ForecastInputError(code, f"a state file is at most {MAX_STATE_BYTES} bytes")
    head, _, body = raw.partition(b"\n")
    try:
        header = orjson.loads(head)
    except orjson.JSONDecodeError:
        raise ForecastInputError(code, "the first line is not a JSON header") from None
    if not isinstance(header, dict) or header.get("format") != STATE_FORMAT:
        raise ForecastInputError(code, f"not a {STATE_FORMAT} state file")
    if header.get("version") != STATE_VERSION:
        raise ForecastInputError(code, f"unsupported state version {header.get('version')!r}")
    if hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise ForecastInputError(code, "the body does not match the header's SHA-256 (truncated?)")
    regions = header.get("regions")
    if (
        not isinstance(regions, list)
        or not 0 < len(regions) <= MAX_REGIONS
        or not all(isinstance(r, str) and REGION_RE.match(r) for r in regions)
        or len(set(regions)) != len(regions)
    ):
        raise ForecastInputError(code, "regions must be distinct ISO 3166 alpha-2 codes")
    k, level = header.get("k_similar"), header.get("confidence")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise ForecastInputError(code, "k_similar must be an integer from 1 to 1000")
    if isinstance(level, bool) or not isinstance(level, float) or not 0.5 <= level < 1:
        raise ForecastInputError(code, "confidence must be a number from 0.5 to below 1")
    results: list[Result] = []
    for n, line in enumerate(body.splitlines(), 2):
        try:
            results.append(parse_result(orjson.loads(line), regions))
        except orjson.JSONDecodeError:
            raise ForecastInputError(code, f"line {n} is not JSON") from None
        except ForecastInputError as exc:
            raise ForecastInputError(code, f"line {n}: {exc.detail}") from None
    if len(results) != header.get("titles"):
        raise ForecastInputError(code, "the header's title count differs from the body")
    if len({t for t, _, _ in results}) != len(results):
        raise ForecastInputError(code, "a title id appears twice")
    return header, results


def build(header: Mapping[str, Any], results: Iterable[Result]) -> GreenlightForecaster:
    """Replay a decoded state into a forecaster (deterministic)."""
    model = GreenlightForecaster(
        header["regions"], k_similar=header["k_similar"], confidence=header["confidence"]
    )
    for tid, attrs, audience in results:
        model.learn(attrs, audience, tid)
    return model


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
