"""A seeded release slate with planted regional tastes: the ground for greenlight forecasts.

The event simulator (streams/tools/synthetic.py) has no release dates and no regional
tastes, so forecasts are backtested here instead: titles are released one after
another, each with attributes known at greenlight (genres, tags, runtime, cast,
kind, synopsis) and, per region, a first-28-day audience (completion-weighted
viewers) drawn from a planted model:

    log audience[r] = size[r] + sum of taste[r][genre] + star power of the cast
                      + runtime and kind effects + quality + noise[r]

``quality`` is shared by all regions and unknown at greenlight (the part no
forecast can know); ``noise`` is per region. Everything draws from the slate's
own ``random.Random``.

>>> slate = Slate(SlateConfig(titles=5, seed=1))
>>> t = slate.titles[0]
>>> sorted(t.audience) == sorted(REGIONS) and all(v >= 0 for v in t.audience.values())
True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from streams.tools.synopses import audience_for, synopsis
from streams.tools.synthetic import TAG_DIMENSIONS

REGIONS = ("US", "GB", "FR", "DE", "BR", "IN", "JP")
REGION_SIZE = {"US": 8.0, "GB": 6.8, "FR": 6.6, "DE": 6.7, "BR": 6.9, "IN": 7.2, "JP": 6.5}


@dataclass(frozen=True)
class SlateConfig:
    titles: int = 1500
    seed: int = 7
    cast_pool: int = 400
    taste_sd: float = 0.7  # spread of regional genre tastes
    quality_sd: float = 0.35  # unknown at greenlight, shared by regions
    noise_sd: float = 0.25  # per region


@dataclass
class SlateTitle:
    title_id: str
    attributes: dict[str, Any]
    audience: dict[str, float] = field(default_factory=dict)  # region -> 28-day viewers
    planted: dict[str, float] = field(default_factory=dict)  # region -> log mean w/o quality, noise


class Slate:
    def __init__(self, cfg: SlateConfig) -> None:
        self.cfg = cfg
        rng = random.Random(f"greenlight:{cfg.seed}")
        genres = TAG_DIMENSIONS["genre"]
        self.taste = {r: {g: rng.gauss(0, cfg.taste_sd) for g in genres} for r in REGIONS}
        self.star = [rng.gauss(0, 0.4) for _ in range(cfg.cast_pool)]
        self.titles: list[SlateTitle] = []
        for i in range(cfg.titles):
            gs = rng.sample(genres, rng.choice([1, 1, 2]))
            tags = {d: [rng.choice(v)] for d, v in TAG_DIMENSIONS.items() if d != "genre"}
            tags["audience"] = [audience_for(gs, rng)]
            kind = "series" if rng.random() < 0.25 else "movie"
            runtime = (
                rng.choice([1500, 2700, 3300]) if kind == "series" else rng.randint(80, 150) * 60
            )
            cast_ids = [min(int(rng.paretovariate(1.1)) - 1, cfg.cast_pool - 1) for _ in range(3)]
            attrs = {
                "genres": gs,
                "tags": tags,
                "runtime_s": runtime,
                "cast": [f"actor{c:03d}" for c in cast_ids],
                "kind": kind,
                "synopsis": synopsis({"genre": gs, **tags}, rng),
            }
            quality = rng.gauss(0, cfg.quality_sd)
            cast_power = sum(self.star[c] for c in cast_ids) / 3
            runtime_eff = -0.15 * abs(runtime / 60 - 105) / 30 if kind == "movie" else 0.2
            audience, planted = {}, {}
            for r in REGIONS:
                mu = REGION_SIZE[r] + sum(self.taste[r][g] for g in gs) / len(gs)
                mu += cast_power + runtime_eff
                planted[r] = mu
                audience[r] = round(math.exp(mu + quality + rng.gauss(0, cfg.noise_sd)), 1)
            self.titles.append(SlateTitle(f"g{i:05d}", attrs, audience, planted))
