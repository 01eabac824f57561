"""Artwork per viewer: a contextual linear bandit over each title's artwork variants.

For every title placed in a list the policy picks one of the title's artwork
variants from a small context vector (:data:`FEATURES`): the viewer's device,
local hour bucket, tone affinities summarised into two shares, and the genres
of the titles watched most recently summarised into two shares.

Model (docs/artwork-and-experiments.md): one ridge regression per *arm key*
(the artwork id, or its style when ``pool="style"`` and the catalog gave one),
kept as ``A^-1`` and ``theta = A^-1 b`` and updated by Sherman-Morrison. A
decision is linear Thompson sampling in its scalar form: for context ``x`` the
posterior of ``x . theta`` is ``N(x . theta_hat, v^2 x' A^-1 x)``, so one
normal draw per variant replaces a d-dimensional draw. ``mode="ucb"`` takes
``argmax x . theta_hat + v sqrt(x' A^-1 x)`` instead (disjoint LinUCB).

Exploration keeps a uniform floor: every variant has probability at least
``floor / K`` (default floor 3 %). The decision probabilities are
``floor/K + (1-floor) 1[argmax]`` for UCB and, for Thompson sampling,
``floor/K + (1-floor) P(k wins)`` with ``P(k wins)`` computed by 16-node
Gauss-Hermite quadrature over the independent normal draws. The variant is then
*drawn from these probabilities*, so the logged propensity is exact by
construction (not an estimate of a sampler's behaviour).

Reward: a *quality play* (:data:`QUALITY_RATIO`): the viewer clicked the title in
the request that showed the variant (attributed through ``request_id``) and a
play of that title reached half its runtime (or a ``complete`` event) within
:data:`ATTRIBUTION_WINDOW_MS` of the impression. An exposure with no quality play
in that window has reward 0. See :class:`Attributor`.

>>> pol = ArtworkPolicy(ArtworkConfig(seed=1))
>>> x = context_vector({}, "tv", 20, [])
>>> for _ in range(200):
...     pol.update("t1-a1", x, 1.0)
...     pol.update("t1-a0", x, 0.0)
>>> d = pol.choose(("t1-a0", "t1-a1"), x)
>>> d.choice, 0.015 <= d.probabilities[0] < 0.05, round(sum(d.probabilities), 6)
('t1-a1', True, 1.0)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

from features.local_time import local_hour_weekday

POLICY_VERSION = "artwork-lints-1"
QUALITY_RATIO = 0.5  # a play reaching this share of the runtime (or `complete`) is a quality play
ATTRIBUTION_WINDOW_MS = 6 * 3_600_000  # impression -> quality play, at most this long
DEVICES = ("tv", "mobile", "web", "tablet")
HOUR_BUCKETS = ("night", "morning", "afternoon", "evening")  # [0,6) [6,12) [12,18) [18,24)
DARK_TONES = ("tone:dark", "tone:gritty", "tone:suspenseful")
LIGHT_TONES = ("tone:light", "tone:quirky", "tone:heartwarming")
INTENSE_GENRES = frozenset({"thriller", "horror", "crime", "scifi", "fantasy"})
RECENT_N = 5  # recent titles whose genres enter the context
FEATURES: tuple[str, ...] = (
    "bias",
    *(f"device:{d}" for d in DEVICES),
    *(f"hour:{h}" for h in HOUR_BUCKETS),
    "tone:dark_share",
    "tone:light_share",
    "recent:intense_share",
    "recent:soft_share",
)
DIM = len(FEATURES)
_GH_Z, _GH_W = np.polynomial.hermite_e.hermegauss(16)
_GH_W = _GH_W / _GH_W.sum()


def context_vector(
    affinity: Mapping[str, float],
    device: str | None,
    local_hour: int | None,
    recent_genres: Iterable[Sequence[str]],
) -> np.ndarray:
    """The context of :data:`FEATURES` (all in [0, 1]).

    >>> x = context_vector({"tone:dark": 3.0, "tone:light": 1.0}, "mobile", 21,
    ...                    [("horror",), ("drama", "crime")])
    >>> dict((f, v) for f, v in zip(FEATURES, x.tolist()) if v)  # doctest: +NORMALIZE_WHITESPACE
    {'bias': 1.0, 'device:mobile': 1.0, 'hour:evening': 1.0, 'tone:dark_share': 0.75,
     'tone:light_share': 0.25, 'recent:intense_share': 0.75, 'recent:soft_share': 0.25}
    """
    x = np.zeros(DIM)
    x[0] = 1.0
    if device in DEVICES:
        x[1 + DEVICES.index(device)] = 1.0
    if local_hour is not None:
        x[5 + min(local_hour // 6, 3)] = 1.0
    dark = sum(max(affinity.get(t, 0.0), 0.0) for t in DARK_TONES)
    light = sum(max(affinity.get(t, 0.0), 0.0) for t in LIGHT_TONES)
    if dark + light > 0:
        x[9] = dark / (dark + light)
        x[10] = light / (dark + light)
    intense = soft = 0.0
    for genres in recent_genres:
        if not genres:
            continue
        share = 1.0 / len(genres)
        for g in genres:
            if g in INTENSE_GENRES:
                intense += share
            else:
                soft += share
    if intense + soft > 0:
        x[11] = intense / (intense + soft)
        x[12] = soft / (intense + soft)
    return x


@dataclass(frozen=True)
class ArtworkConfig:
    mode: str = "ts"  # "ts" (linear Thompson sampling) or "ucb" (disjoint LinUCB)
    floor: float = 0.03  # uniform exploration share
    scale: float = 0.2  # TS posterior scale v, or the UCB alpha (reward noise sd)
    ridge: float = 1.0  # prior precision: A starts as ridge * I
    pool: str = "variant"  # "variant": one model per artwork id; "style": per style
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("ts", "ucb"):
            raise ValueError(f"artwork mode {self.mode!r}: 'ts' or 'ucb'")
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError("artwork floor must be in [0, 1]")
        if self.pool not in ("variant", "style"):
            raise ValueError(f"artwork pool {self.pool!r}: 'variant' or 'style'")


@dataclass(frozen=True, slots=True)
class Decision:
    choice: str
    propensity: float
    probabilities: tuple[float, ...]  # per offered variant, in the offered order


class ArtworkPolicy:
    """Linear Thompson sampling (or LinUCB) per arm key with a uniform exploration floor."""

    def __init__(self, cfg: ArtworkConfig | None = None) -> None:
        self.cfg = cfg or ArtworkConfig()
        self._rng = random.Random(self.cfg.seed)
        self._nrng = np.random.default_rng(self.cfg.seed)
        self.styles: dict[str, str] = {}  # artwork_id -> style
        self._row: dict[str, int] = {}
        cap = 64
        self._a_inv = np.tile(np.eye(DIM) / self.cfg.ridge, (cap, 1, 1))
        self._b = np.zeros((cap, DIM))
        self._theta = np.zeros((cap, DIM))
        self._n = np.zeros(cap, dtype=np.int64)
        self._rows_cache: dict[tuple[str, ...], list[int]] = {}

    # --- arms -----------------------------------------------------------------------

    def learn_styles(self, catalog_records: Iterable[Mapping[str, Any]]) -> None:
        """Remember each variant's ``style`` from catalog records (contract v1)."""
        for rec in catalog_records:
            for a in rec.get("artwork") or []:
                if isinstance(a, Mapping) and a.get("style"):
                    self.styles[a["artwork_id"]] = str(a["style"])
        self._rows_cache.clear()

    def key(self, artwork_id: str) -> str:
        if self.cfg.pool == "style":
            style = self.styles.get(artwork_id)
            if style is not None:
                return f"style:{style}"
        return artwork_id

    def _row_of(self, key: str) -> int:
        r = self._row.get(key)
        if r is None:
            r = self._row[key] = len(self._row)
            if r >= len(self._n):
                cap = 2 * len(self._n)
                a = np.tile(np.eye(DIM) / self.cfg.ridge, (cap, 1, 1))
                a[: len(self._n)] = self._a_inv
                self._a_inv = a
                self._b = np.vstack([self._b, np.zeros_like(self._b)])
                self._theta = np.vstack([self._theta, np.zeros_like(self._theta)])
                self._n = np.concatenate([self._n, np.zeros_like(self._n)])
        return r

    def _rows(self, variants: tuple[str, ...]) -> list[int]:
        idx = self._rows_cache.get(variants)
        if idx is None:
            idx = [self._row_of(self.key(v)) for v in variants]
            if len(self._rows_cache) > 100_000:
                self._rows_cache.clear()
            self._rows_cache[variants] = idx
        return idx

    def observations(self, artwork_id: str) -> int:
        r = self._row.get(self.key(artwork_id))
        return 0 if r is None else int(self._n[r])

    # --- decide and learn -----------------------------------------------------------

    def choose(self, variants: Sequence[str], x: np.ndarray) -> Decision:
        """Pick one of ``variants`` for context ``x``; returns the choice and its propensity."""
        d = self.choose_many([variants], x)[0]
        if d is None:
            raise ValueError("no variants to choose from")
        return d

    def choose_many(
        self, variant_lists: Sequence[Sequence[str]], x: np.ndarray
    ) -> list[Decision | None]:
        """One decision per title of a list, all for the same viewer context ``x``.

        Vectorised over the list (a score message's 20 titles cost about as much as
        two single decisions). The choice is *drawn from* the logged probabilities,
        so the propensity is exact by construction. None for a title without variants.
        """
        lists = [tuple(v) for v in variant_lists]
        kmax = max((len(v) for v in lists), default=0)
        if kmax == 0:
            return [None] * len(lists)
        rows = [self._rows(v) + [0] * (kmax - len(v)) for v in lists]
        idx = np.array(rows, dtype=np.intp)
        k = np.array([len(v) for v in lists])
        mask = np.arange(kmax)[None, :] < k[:, None]
        mu = self._theta[idx] @ x
        sd = self.cfg.scale * np.sqrt(np.maximum((self._a_inv[idx] @ x) @ x, 1e-12))
        floor = self.cfg.floor
        if self.cfg.mode == "ucb":
            best = np.where(mask, mu + sd, -np.inf).argmax(axis=1)
            win = (np.arange(kmax)[None, :] == best[:, None]).astype(float)
        else:
            win = win_probabilities(mu, sd, mask)
        probs = (floor / np.maximum(k, 1))[:, None] * mask + (1.0 - floor) * win
        cum = probs.cumsum(axis=1)
        u = self._nrng.random(len(lists)) * cum[:, -1]
        pick = np.minimum((cum < u[:, None]).sum(axis=1), np.maximum(k - 1, 0))
        out: list[Decision | None] = []
        for v, p, j in zip(lists, probs.tolist(), pick.tolist(), strict=True):
            if not v:
                out.append(None)
                continue
            p = p[: len(v)]
            out.append(Decision(v[j], p[j], tuple(p)))
        return out

    def update(self, artwork_id: str, x: np.ndarray, reward: float) -> None:
        """Fold one (context, reward) of a shown variant into its arm's ridge regression."""
        r = self._row_of(self.key(artwork_id))
        a_inv = self._a_inv[r]
        ax = a_inv @ x
        a_inv -= np.outer(ax, ax) / (1.0 + x @ ax)
        self._b[r] += reward * x
        self._theta[r] = a_inv @ self._b[r]
        self._n[r] += 1


def win_probabilities(mu: np.ndarray, sd: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """P(variant k has the largest of independent draws N(mu_k, sd_k^2)), per row.

    ``mu``, ``sd`` and ``mask`` (False: padding, never wins) have shape (titles,
    variants). 16-node Gauss-Hermite quadrature over the winner's draw; rows sum to 1.

    >>> win_probabilities(np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]])).round(4).tolist()
    [[0.5, 0.5]]
    >>> p = win_probabilities(np.array([[1.0, 0.0, 0.0]]), np.array([[1.0, 1.0, 1.0]]),
    ...                       np.array([[True, True, False]]))
    >>> p.round(4).tolist()  # P(N(1,1) > N(0,1)) = Phi(1/sqrt(2)) = 0.7602
    [[0.7602, 0.2398, 0.0]]
    """
    k = mu.shape[1]
    full = mask is None or bool(mask.all())
    if not full:
        assert mask is not None
        mu = np.where(mask, mu, 0.0)
        sd = np.where(mask, sd, 1.0)
    vals = mu[:, :, None] + sd[:, :, None] * _GH_Z  # (t, k, n): draws of the winner
    z = (vals[:, :, None, :] - mu[:, None, :, None]) / sd[:, None, :, None]  # (t, k, j, n)
    cdf = ndtr(z)
    if not full:
        cdf = np.where(mask[:, None, :, None], cdf, 1.0)
    ar = np.arange(k)
    cdf[:, ar, ar, :] = 1.0
    p = cdf.prod(axis=2) @ _GH_W
    if not full:
        p *= mask
    return p / p.sum(axis=1, keepdims=True)


# --- decisions, exposures and rewards ----------------------------------------------------


@dataclass(slots=True)
class _Exposure:
    record: dict[str, Any]
    x: np.ndarray
    ts: int
    request_id: str | None
    clicked: bool = False


class Attributor:
    """Joins decisions to impressions, clicks and the quality plays that follow.

    ``decided`` registers a decision record (the latest one per user and title
    counts). An ``impression`` showing the decided variant opens an *exposure*;
    a ``click`` with the same ``request_id`` marks it clicked; a later play of the
    title by the user reaching :data:`QUALITY_RATIO` of its runtime (or a
    ``complete``) closes it with reward 1. An exposure still open
    ``window_ms`` after its impression (judged in event time), or superseded by
    a new impression of the same title, closes with reward 0. ``observe`` returns
    the closed records: the decision record plus ``reward``, ``clicked`` and
    ``exposed_ts``, the input of ``reelstream artwork-eval``.
    """

    def __init__(
        self,
        window_ms: int = ATTRIBUTION_WINDOW_MS,
        quality_ratio: float = QUALITY_RATIO,
        max_open: int = 200_000,
    ) -> None:
        self.window_ms = window_ms
        self.quality_ratio = quality_ratio
        self.max_open = max_open
        self._decided: dict[tuple[str, str], tuple[dict[str, Any], np.ndarray]] = {}
        self._open: dict[tuple[str, str], _Exposure] = {}  # insertion order = impression order
        self.mismatched = 0  # impressions showing another variant than the decision

    def decided(self, record: dict[str, Any], x: np.ndarray) -> None:
        key = (record["user_id"], record["title_id"])
        self._decided.pop(key, None)
        self._decided[key] = (record, x)
        while len(self._decided) > self.max_open:
            self._decided.pop(next(iter(self._decided)))

    def _close(self, key: tuple[str, str], reward: float) -> dict[str, Any]:
        exp = self._open.pop(key)
        return {
            **exp.record,
            "reward": reward,
            "clicked": exp.clicked,
            "exposed_ts": exp.ts,
            "request_id": exp.request_id,  # the row the viewer saw: the slate estimators' unit
        }

    def observe(self, ev: Mapping[str, Any]) -> list[dict[str, Any]]:
        closed: list[dict[str, Any]] = []
        ts = int(ev["ts"])
        while self._open:  # expire in impression order
            first = next(iter(self._open))
            if self._open[first].ts + self.window_ms >= ts:
                break
            closed.append(self._close(first, 0.0))
        etype = ev["event_type"]
        key = (ev["user_id"], ev["title_id"])
        if etype == "impression":
            got = self._decided.get(key)
            if got is None:
                return closed
            if ev.get("artwork_id") != got[0]["choice"]:
                self.mismatched += 1
                return closed
            if key in self._open:
                closed.append(self._close(key, 0.0))
            del self._decided[key]
            self._open[key] = _Exposure(got[0], got[1], ts, ev.get("request_id"))
            while len(self._open) > self.max_open:
                closed.append(self._close(next(iter(self._open)), 0.0))
            return closed
        exp = self._open.get(key)
        if exp is None:
            return closed
        if etype == "click":
            if exp.request_id is None or ev.get("request_id") == exp.request_id:
                exp.clicked = True
        elif exp.clicked and etype in ("progress", "complete", "stop"):
            pos, dur = ev.get("position_s"), ev.get("duration_s")
            if etype == "complete" or (pos and dur and pos / dur >= self.quality_ratio):
                closed.append(self._close(key, 1.0))
        return closed

    def flush(self) -> list[dict[str, Any]]:
        """Close every open exposure with reward 0 (end of a log)."""
        return [self._close(k, 0.0) for k in list(self._open)]


class ArtworkHook:
    """What the engine calls: choose per listed title, log the decision, learn from events.

    ``log`` collects decision records (``decision_record`` shape) until the
    caller drains it to :attr:`streams.settings.Settings.artwork_decisions_topic`;
    ``closed`` collects attributed outcomes.
    """

    def __init__(
        self,
        policy: ArtworkPolicy,
        catalog: Any,
        attributor: Attributor | None = None,
        log_sink: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.policy = policy
        self.catalog = catalog
        self.attributor = attributor if attributor is not None else Attributor()
        self.log: list[dict[str, Any]] = []
        self.closed: list[dict[str, Any]] = []
        self.closed_max = 10_000  # the most recent closed records kept in memory
        self.log_sink = log_sink or self.log.append
        self.decisions = 0
        self.outcomes = {"0": 0, "1": 0}  # closed exposures by reward
        # Per-user switch (an experiment's control arm): False keeps the first variant,
        # decides and logs nothing. None: on for everyone.
        self.enabled: Callable[[str], bool] | None = None

    def context(self, profile: Any, event_ts: int, device: str | None = None) -> np.ndarray:
        lh = local_hour_weekday(event_ts, getattr(profile, "country", None))
        genres = []
        for tid in getattr(profile, "recent", ())[:RECENT_N]:
            t = self.catalog.get(tid)
            if t is not None:
                genres.append(t.genres)
        return context_vector(
            getattr(profile, "affinity", {}),
            device or getattr(profile, "device", None),
            lh[0] if lh else None,
            genres,
        )

    def choose(
        self,
        user_id: str,
        title_id: str,
        variants: Sequence[str],
        x: np.ndarray,
        event_ts: int,
        experiment_arm: str | None = None,
    ) -> str | None:
        if not variants:
            return None
        d = self.policy.choose(variants, x)
        rec = decision_record(user_id, title_id, variants, d, x, event_ts, experiment_arm)
        self.attributor.decided(rec, x)
        self.log_sink(rec)
        self.decisions += 1
        return d.choice

    def choose_list(
        self,
        user_id: str,
        profile: Any,
        title_ids: Sequence[str],
        event_ts: int,
        experiment_arm: str | None = None,
        device: str | None = None,
    ) -> list[str | None]:
        """Artwork for each title of a score message (one context, one vectorised call)."""
        if self.enabled is not None and not self.enabled(user_id):
            firsts: list[str | None] = []
            for tid in title_ids:
                t = self.catalog.get(tid)
                firsts.append(t.artwork[0] if t is not None and t.artwork else None)
            return firsts
        x = self.context(profile, event_ts, device)
        variants = []
        for tid in title_ids:
            t = self.catalog.get(tid)
            variants.append(t.artwork if t is not None else ())
        out: list[str | None] = []
        for slot, (tid, v, d) in enumerate(
            zip(title_ids, variants, self.policy.choose_many(variants, x), strict=True)
        ):
            if d is None:
                out.append(None)
                continue
            rec = decision_record(user_id, tid, v, d, x, event_ts, experiment_arm, slot)
            self.attributor.decided(rec, x)
            self.log_sink(rec)
            self.decisions += 1
            out.append(d.choice)
        return out

    def explain(
        self, profile: Any, title_id: str, event_ts: int, device: str | None = None
    ) -> dict[str, Any]:
        """What ``GET /artwork/{user_id}/{title_id}`` shows; decides nothing, logs nothing."""
        title = self.catalog.get(title_id)
        variants = tuple(title.artwork) if title is not None else ()
        x = self.context(profile, event_ts, device)
        out: dict[str, Any] = {
            "title_id": title_id,
            "policy": POLICY_VERSION,
            "mode": self.policy.cfg.mode,
            "floor": self.policy.cfg.floor,
            "context": {f: v for f, v in zip(FEATURES, x.tolist(), strict=True) if v},
            "variants": [],
        }
        if not variants:
            return out
        idx = np.array(self.policy._rows(variants), dtype=np.intp)
        mu = self.policy._theta[idx] @ x
        sd = self.policy.cfg.scale * np.sqrt(np.maximum((self.policy._a_inv[idx] @ x) @ x, 1e-12))
        k = len(variants)
        if self.policy.cfg.mode == "ucb":
            win = (np.arange(k) == int(np.argmax(mu + sd))).astype(float)
        else:
            win = win_probabilities(mu[None, :], sd[None, :])[0]
        probs = self.policy.cfg.floor / k + (1 - self.policy.cfg.floor) * win
        for v, m, s_, p in zip(variants, mu.tolist(), sd.tolist(), probs.tolist(), strict=True):
            out["variants"].append(
                {
                    "artwork_id": v,
                    "style": self.policy.styles.get(v),
                    "expected_reward": round(m, 5),
                    "uncertainty": round(s_, 5),
                    "probability": round(p, 5),
                    "observations": self.policy.observations(v),
                }
            )
        return out

    def observe(self, ev: Mapping[str, Any]) -> None:
        for rec in self.attributor.observe(ev):
            self.policy.update(rec["choice"], np.asarray(rec["x"], dtype=float), rec["reward"])
            self.outcomes["1" if rec["reward"] > 0 else "0"] += 1
            self.closed.append(rec)
            if len(self.closed) > self.closed_max:
                del self.closed[: len(self.closed) - self.closed_max]


def decision_record(
    user_id: str,
    title_id: str,
    variants: Sequence[str],
    d: Decision,
    x: np.ndarray,
    ts: int,
    experiment_arm: str | None = None,
    slot: int | None = None,
) -> dict[str, Any]:
    """One decision as logged (docs/artwork-and-experiments.md, "Decision log").

    ``slate_id`` (user and decision time) groups the decisions of one list and
    ``slot`` is the title's place in it: slate estimators take the row as the unit.
    """
    return {
        "v": 1,
        "decision_id": f"{user_id}:{title_id}:{ts}",
        "ts": ts,
        "user_id": user_id,
        "title_id": title_id,
        "policy": POLICY_VERSION,
        "x": [round(v, 4) for v in x.tolist()],
        "variants": list(variants),
        "choice": d.choice,
        "propensity": round(d.propensity, 6),
        "probabilities": [round(p, 6) for p in d.probabilities],
        "experiment_arm": experiment_arm,
        "slate_id": f"{user_id}:{ts}",
        "slot": slot,
    }
