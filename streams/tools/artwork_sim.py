"""Artwork policies on simulated truth: ``reelstream artwork-sim``.

The simulator (streams/tools/synthetic.py, ``artwork_effect``) plants a per-segment
artwork preference; this closes the loop: every impression row asks a policy for
its artwork, the viewers' clicks feel the planted pull, and the policy learns
from the quality plays attributed to its decisions (online_models/artwork.py).
Context comes from each viewer's online profile (features/user_profile.py) as of
the events already seen, so feedback is delayed as in production.

Policies: ``learned`` (linear Thompson sampling), ``ucb``, ``uniform`` (uniform
random, floor 1: the logging policy for off-policy evaluation), ``first`` (the
title's first variant, today's behaviour) and ``oracle`` (the planted preference).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from features.user_profile import UserProfile
from online_models.artwork import (
    ArtworkConfig,
    ArtworkHook,
    ArtworkPolicy,
    Decision,
    decision_record,
)
from streams.tools.synthetic import ARTWORK_STYLES, SimConfig, Simulation, SimUser

POLICIES = ("learned", "ucb", "uniform", "first", "oracle")
DAY_MS = 86_400_000


@dataclass
class SimResult:
    policy: str
    exposures: int = 0
    quality_plays: int = 0
    clicks: int = 0
    daily: list[tuple[int, int]] = field(default_factory=list)  # (exposures, quality plays)
    records: list[dict[str, Any]] = field(default_factory=list)  # closed decision records

    @property
    def take_rate(self) -> float:
        return self.quality_plays / self.exposures if self.exposures else 0.0

    def take_rate_after(self, day: int) -> float:
        e = sum(x for x, _ in self.daily[day:])
        q = sum(y for _, y in self.daily[day:])
        return q / e if e else 0.0


def run(
    policy: str,
    users: int = 500,
    titles: int = 200,
    days: int = 14,
    seed: int = 11,
    effect: float = 1.5,
    floor: float = 0.03,
    pool: str = "style",
    keep_records: bool = False,
    scale: float = 0.2,
    outside: float = 1.0,
) -> SimResult:
    """Simulate ``days`` days with ``policy`` choosing every impression's artwork."""
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r}: one of {POLICIES}")
    sim = Simulation(
        SimConfig(
            users=users, titles=titles, seed=seed, artwork_effect=effect, artwork_outside=outside
        )
    )
    catalog = sim.title_catalog()
    mode = "ucb" if policy == "ucb" else "ts"
    cfg = ArtworkConfig(
        mode=mode, floor=1.0 if policy == "uniform" else floor, pool=pool, scale=scale
    )
    pol = ArtworkPolicy(cfg)
    pol.learn_styles(sim.catalog)
    hook = ArtworkHook(pol, catalog, log_sink=lambda rec: None)
    profiles: dict[str, UserProfile] = {}
    learn = policy in ("learned", "ucb")

    def chooser(user: SimUser, row: list[str], device: str, ts: float) -> list[str]:
        prof = profiles.get(user.user_id) or UserProfile()
        if policy in ("learned", "ucb", "uniform"):
            arts = hook.choose_list(user.user_id, prof, row, int(ts), device=device)
            return [a or f"{t}-a0" for t, a in zip(row, arts, strict=True)]
        pref = sim.preferred_style(user, device)
        k = 0 if policy == "first" else ARTWORK_STYLES.index(pref)
        x = hook.context(prof, int(ts), device)
        out = []
        for tid in row:
            variants = catalog.get(tid).artwork  # type: ignore[union-attr]
            choice = variants[k]
            d = Decision(choice, 1.0, tuple(float(v == choice) for v in variants))
            hook.attributor.decided(decision_record(user.user_id, tid, variants, d, x, int(ts)), x)
            out.append(choice)
        return out

    sim.artwork_chooser = chooser
    result = SimResult(policy)
    start = sim.cfg.start_ms
    daily = [[0, 0] for _ in range(days)]

    def closed(recs: list[dict[str, Any]]) -> None:
        for rec in recs:
            day = min(max((rec["exposed_ts"] - start) // DAY_MS, 0), days - 1)
            daily[day][0] += 1
            daily[day][1] += int(rec["reward"] > 0)
            result.exposures += 1
            result.quality_plays += int(rec["reward"] > 0)
            result.clicks += int(rec["clicked"])
            if keep_records:
                result.records.append(rec)

    for ev in sim.events(days=days):
        if ev["ts"] >= start + days * DAY_MS:
            break
        prof = profiles.get(ev["user_id"])
        if prof is None:
            prof = profiles[ev["user_id"]] = UserProfile()
        prof.update(ev, catalog.get(ev["title_id"]))
        recs = hook.attributor.observe(ev)
        if learn:
            for rec in recs:
                pol.update(rec["choice"], _x(rec), rec["reward"])
        closed(recs)
    closed(hook.attributor.flush())
    result.daily = [(e, q) for e, q in daily]
    return result


def _x(rec: dict[str, Any]) -> Any:
    import numpy as np

    return np.asarray(rec["x"], dtype=float)
