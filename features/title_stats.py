"""Per-title statistics, owned by exactly one worker, fed by compact title-side records.

Why a single owner: user partitions are spread over workers, so a title's events
arrive on all of them. The events agent forwards one compact record per relevant
event (see :meth:`features.user_features.UserFeatures.update`) to a title-keyed
repartition topic; the owner of the title's partition folds it in here. Counts
are therefore exact, not per-worker samples (docs/architecture.md).

Unique viewers are exact without a set of user ids: the user side knows, from its
own exact per-(user, title) state, whether a ``play`` is the user's first of the
title and says so in the record (``f``). (The per-user title history is bounded,
see ``USER_TITLES_MAX``; a viewer returning to a title evicted from it counts twice.)

Replays are idempotent: each record carries its source position (partition of
the user topic, offset, index in the record); the title keeps, per source
partition, the highest position applied and skips anything not above it.

Trending counts are plays per country in hopping windows, in event time, kept as
buckets of one hop: ``1h`` = 12 buckets of 5 min, ``1d`` = 24 buckets of 1 h.
A late event lands in the bucket of its own ``ts``.

>>> s = TitleStats()
>>> s.update({"t": "t1", "e": "play", "ts": 7_200_000, "c": "FR", "f": 1}, (0, 5, 0))
True
>>> s.update({"t": "t1", "e": "play", "ts": 7_200_000, "c": "FR", "f": 1}, (0, 5, 0))
False
>>> s.update({"t": "t1", "e": "stop", "ts": 7_300_000, "c": "FR", "r": 0.05}, (0, 6, 0))
True
>>> s.plays, s.viewers, s.early_abandons, s.window_count("1h", "FR", 7_300_000)
(1, 1, 1, 1)
"""

from __future__ import annotations

from typing import Any

from features.decay import decay_factor, rate
from features.title_popularity import EVENT_WEIGHTS
from features.user_features import EARLY_ABANDON_RATIO

POP_HALF_LIFE_MS = 86_400_000  # same decay as features.title_popularity's default
_PER_MS = rate(POP_HALF_LIFE_MS)
# window -> (size ms, hop ms)
WINDOWS: dict[str, tuple[int, int]] = {"1h": (3_600_000, 300_000), "1d": (86_400_000, 3_600_000)}
WINDOW_SLACK_MS = 3_600_000  # buckets kept this long past their window (allowed lateness)
NO_COUNTRY = "--"
ALL = "ALL"

_COUNTERS = (
    "plays",
    "viewers",
    "completes",
    "stops",
    "ended",
    "early_abandons",
    "intro_skips",
    "clicks",
    "thumbs_up",
    "thumbs_down",
)


class TitleStats:
    """Exact counters, decayed popularity and windowed country counts of one title."""

    __slots__ = (*_COUNTERS, "buckets", "high_water", "pop", "pop_ts", "ratio_sum", "src")

    def __init__(self) -> None:
        for k in _COUNTERS:
            setattr(self, k, 0)
        self.ratio_sum = 0.0
        self.pop = 0.0  # decayed weighted events, valid at pop_ts
        self.pop_ts = 0
        self.high_water = 0
        # window -> country -> {bucket index (str, for JSON): plays}
        self.buckets: dict[str, dict[str, dict[str, int]]] = {w: {} for w in WINDOWS}
        self.src: dict[str, list[int]] = {}  # source partition -> [offset, index]

    def update(self, rec: dict[str, Any], source: tuple[int, int, int] | None = None) -> bool:
        """Fold one record in; False (nothing changed) when ``source`` was already applied."""
        if source is not None:
            part, off, idx = source
            seen = self.src.get(str(part))
            if seen is not None and (off, idx) <= (seen[0], seen[1]):
                return False
            self.src[str(part)] = [off, idx]
        etype = rec["e"]
        ts = rec["ts"]
        if ts > self.high_water:
            self.high_water = ts
        if etype == "play":
            self.plays += 1
            self.viewers += rec.get("f", 0)
            self._window(ts, rec.get("c") or NO_COUNTRY)
        elif etype == "complete":
            self.completes += 1
            self.ended += 1
            self.ratio_sum += 1.0
        elif etype == "stop":
            self.stops += 1
            self.ended += 1
            r = float(rec.get("r") or 0.0)
            self.ratio_sum += r
            if r < EARLY_ABANDON_RATIO:
                self.early_abandons += 1
        elif etype == "intro_skip":
            self.intro_skips += 1
        elif etype == "click":
            self.clicks += 1
        elif etype == "thumbs":
            v = rec.get("v")
            if v == 1:
                self.thumbs_up += 1
            elif v == -1:
                self.thumbs_down += 1
        w = EVENT_WEIGHTS.get(etype)
        if w:
            if ts >= self.pop_ts:
                self.pop = self.pop * decay_factor(ts - self.pop_ts, _PER_MS) + w
                self.pop_ts = ts
            else:
                self.pop += w * decay_factor(self.pop_ts - ts, _PER_MS)
        return True

    def _window(self, ts: int, country: str) -> None:
        for name, (size, hop) in WINDOWS.items():
            oldest = (self.high_water - size - WINDOW_SLACK_MS) // hop
            b = ts // hop
            if b <= oldest:
                continue  # too old for any window this title still keeps
            per = self.buckets[name].setdefault(country, {})
            key = str(b)
            per[key] = per.get(key, 0) + 1
            if len(per) > (size + WINDOW_SLACK_MS) // hop + 2:
                for k in [k for k in per if int(k) <= oldest]:
                    del per[k]

    def window_count(self, window: str, country: str, now_ts: int) -> int:
        """Plays in the hopping window of size ``window`` that ends in ``now_ts``'s hop."""
        return window_count(self.buckets, window, country, now_ts)

    def rates(self) -> dict[str, float]:
        def ratio(a: float, b: float) -> float:
            return round(a / b, 6) if b else 0.0

        return {
            "completion_rate": ratio(self.completes, self.plays),
            "mean_watched_ratio": ratio(self.ratio_sum, self.ended),
            "early_abandon_rate": ratio(self.early_abandons, self.ended),
            "intro_skip_rate": ratio(self.intro_skips, self.plays),
        }

    def snapshot(self) -> dict[str, Any]:
        """What other workers need: counters, rates, popularity, window buckets (not ``src``)."""
        d = {k: getattr(self, k) for k in _COUNTERS}
        d.update(self.rates())
        d.update(
            ratio_sum=self.ratio_sum,
            pop=self.pop,
            pop_ts=self.pop_ts,
            high_water=self.high_water,
            buckets=self.buckets,
        )
        return d

    def serving_fields(self) -> dict[str, int | float]:
        """Flat fields for the Redis title hash (``title_key``)."""
        d: dict[str, int | float] = {k: getattr(self, k) for k in _COUNTERS}
        d.update(self.rates())
        d["plays_1h"] = self.window_count("1h", ALL, self.high_water)
        d["plays_1d"] = self.window_count("1d", ALL, self.high_water)
        d["high_water"] = self.high_water
        return d

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TitleStats:
        s = cls()
        for k, v in (d or {}).items():
            if k in cls.__slots__:
                setattr(s, k, v)
        return s


def window_count(
    buckets: dict[str, dict[str, dict[str, int]]], window: str, country: str, now_ts: int
) -> int:
    """Sum of the window's buckets in ``(now_hop - size/hop, now_hop]``; ``ALL`` sums countries."""
    size, hop = WINDOWS[window]
    hi = now_ts // hop
    lo = hi - size // hop
    per_country = buckets.get(window, {})
    groups = per_country.values() if country == ALL else [per_country.get(country, {})]
    return sum(n for per in groups for k, n in per.items() if lo < int(k) <= hi)
