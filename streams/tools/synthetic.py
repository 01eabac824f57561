"""A seeded simulation of a streaming service: catalog, viewers with planted tastes, traffic.

Viewers have latent tastes over the catalog's tags, daily and weekly rhythms,
devices and a country. Sessions open with an impression row, viewers pick by
popularity and taste, watch with pauses, seeks and intro skips, binge series,
and abandon titles that do not match their taste. The ground truth (each user's
favourite tags) can be written next to the traffic so tests check learning.

The same ``seed`` always yields the same catalog and the same events.

>>> sim = Simulation(SimConfig(users=20, titles=40, seed=7))
>>> events = list(sim.events(limit=50))
>>> len(events), events[0]["ts"] <= events[-1]["ts"]
(50, True)
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from features.catalog import Catalog, parse_title
from streams.tools.synopses import audience_for, side_rng, synopsis

TAG_DIMENSIONS: dict[str, list[str]] = {
    "genre": [
        "drama",
        "comedy",
        "thriller",
        "scifi",
        "documentary",
        "animation",
        "romance",
        "horror",
        "crime",
        "fantasy",
    ],
    "pacing": ["slow", "medium", "fast"],
    "tone": ["dark", "light", "quirky", "gritty", "heartwarming", "suspenseful"],
    "narrative": ["linear", "nonlinear", "anthology", "ensemble", "character-driven"],
    "theme": [
        "family",
        "revenge",
        "coming-of-age",
        "survival",
        "friendship",
        "power",
        "love",
        "mystery",
        "identity",
        "justice",
    ],
    "setting": ["urban", "rural", "space", "historical", "fantasy-world", "workplace"],
}
COUNTRIES = {
    "US": (-5, 0.35),
    "GB": (0, 0.12),
    "FR": (1, 0.12),
    "DE": (1, 0.12),
    "BR": (-3, 0.12),
    "IN": (5, 0.09),
    "JP": (9, 0.08),
}
DEVICES = ["tv", "mobile", "web", "tablet"]
WORDS = [
    "night",
    "river",
    "last",
    "code",
    "empire",
    "silent",
    "garden",
    "storm",
    "echo",
    "glass",
    "north",
    "crown",
    "shadow",
    "harbor",
    "signal",
    "winter",
    "orbit",
    "pulse",
]
# Hourly weight of starting a session, in the viewer's local time: low at night, evening peak.
HOUR_RHYTHM = [
    0.3,
    0.15,
    0.08,
    0.05,
    0.05,
    0.08,
    0.2,
    0.35,
    0.4,
    0.35,
    0.35,
    0.4,
    0.55,
    0.5,
    0.45,
    0.45,
    0.55,
    0.75,
    1.0,
    1.3,
    1.5,
    1.4,
    1.0,
    0.6,
]
HEARTBEAT_S = 300.0
ARTWORK_STYLES = ("hero", "character", "moody")  # variant k of every title has style k
DARK_TONES = frozenset({"tone:dark", "tone:gritty", "tone:suspenseful"})
INTENSE_GENRES = frozenset(
    f"genre:{g}" for g in ("thriller", "horror", "crime", "scifi", "fantasy")
)
# Chooses the artwork of every title in an impression row:
# (user, title ids, device, ts) -> artwork ids. Set on Simulation.artwork_chooser.
ArtworkChooser = Callable[["SimUser", list[str], str, float], list[str]]
START_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC, a Monday


@dataclass(frozen=True)
class SimConfig:
    users: int = 1000
    titles: int = 400
    seed: int = 42
    start_ms: int = START_MS
    sessions_per_day: float = 1.2
    taste_strength: float = 2.5  # how strongly planted tastes steer choices
    popularity_skew: float = 0.9
    # Planted artwork effect (docs/artwork-and-experiments.md): the log-weight a title
    # in a row gains when shown in the viewer segment's preferred style. 0 (default)
    # and no Simulation.artwork_chooser leave the traffic exactly as before.
    artwork_effect: float = 0.0
    artwork_outside: float = 1.0  # weight of "click nothing" relative to the row's weight
    # Part of every event id: runs that share a seed on one stack (a second `make demo`)
    # must not send ids the users' event gates already hold, or they read as replays.
    run: str = ""


@dataclass
class SimUser:
    user_id: str
    country: str
    tz_hours: int
    devices: list[str]
    favorites: list[str]
    taste: dict[str, float]
    activity: float
    skip_intro: float
    binge: float
    pause_rate: float  # pauses per watched hour
    watched: set[str]


class Simulation:
    """Catalog, users and an event-time ordered stream of their events."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.catalog: list[dict[str, Any]] = []
        self.popularity: dict[str, float] = {}
        self.title_tags: dict[str, list[str]] = {}
        self.next_episode: dict[str, str] = {}
        self._build_catalog()
        self.users = [self._make_user(i) for i in range(cfg.users)]
        self._seq = 0
        self.artwork_chooser: ArtworkChooser | None = None

    # --- catalog --------------------------------------------------------------------

    def _build_catalog(self) -> None:
        rng, n = self.rng, self.cfg.titles
        i = 0
        while i < n:
            is_series = rng.random() < 0.25 and n - i >= 3
            episodes = rng.randint(3, 8) if is_series else 1
            episodes = min(episodes, n - i)
            genres = rng.sample(TAG_DIMENSIONS["genre"], rng.choice([1, 1, 2]))
            tags = {
                dim: [rng.choice(vals)]
                for dim, vals in TAG_DIMENSIONS.items()
                if dim not in ("genre", "theme")
            }
            tags["theme"] = rng.sample(TAG_DIMENSIONS["theme"], rng.choice([1, 2]))
            # Audience and synopses draw from their own generator: events stay byte-identical.
            side = side_rng(self.cfg.seed, f"t{i:05d}")
            tags["audience"] = [audience_for(genres, side)]
            name = " ".join(w.capitalize() for w in rng.sample(WORDS, 2))
            base_pop = rng.paretovariate(1.3)
            regions = [] if rng.random() < 0.8 else rng.sample(sorted(COUNTRIES), 3)
            series_id = f"s{i:05d}" if is_series else None
            runtime = rng.choice([1500, 2700, 3300]) if is_series else rng.randint(80, 150) * 60
            year = rng.randint(1990, 2026)
            cast = [f"actor{rng.randint(0, 300):03d}" for _ in range(3)]
            prev: str | None = None
            for ep in range(episodes):
                tid = f"t{i:05d}"
                rec: dict[str, Any] = {
                    "title_id": tid,
                    "name": f"{name} E{ep + 1}" if is_series else name,
                    "kind": "episode" if is_series else "movie",
                    "synopsis": synopsis({"genre": genres, **tags}, side),
                    "genres": genres,
                    "tags": tags,
                    "cast": cast,
                    "runtime_s": runtime,
                    "release_year": year,
                    "regions": regions,
                    "artwork": [
                        {"artwork_id": f"{tid}-a{k}", "style": s}
                        for k, s in enumerate(["hero", "character", "moody"])
                    ],
                }
                if is_series:
                    rec.update(series_id=series_id, season=1, episode=ep + 1)
                self.catalog.append(rec)
                # Later episodes are watched less: each keeps most of the previous audience.
                self.popularity[tid] = base_pop * (0.8**ep)
                self.title_tags[tid] = [f"genre:{g}" for g in genres] + [
                    f"{d}:{v}" for d, vs in tags.items() for v in vs
                ]
                if prev is not None:
                    self.next_episode[prev] = tid
                prev = tid
                i += 1
        self.title_ids = [t["title_id"] for t in self.catalog]
        # Episodes of a series (any that has a next or a previous one), as a set: a scan of
        # next_episode's values per viewing made large catalogs quadratic to simulate.
        self.episodes = frozenset(self.next_episode) | frozenset(self.next_episode.values())
        self.runtime = {t["title_id"]: float(t["runtime_s"]) for t in self.catalog}
        self.regions = {t["title_id"]: set(t["regions"]) for t in self.catalog}
        self.first_titles = [t["title_id"] for t in self.catalog if t.get("episode", 1) == 1]
        weights = [self.popularity[t] ** self.cfg.popularity_skew for t in self.first_titles]
        total = sum(weights)
        self._pop_cum = list(_cumsum([w / total for w in weights]))

    def _make_user(self, i: int) -> SimUser:
        rng = self.rng
        countries = list(COUNTRIES)
        country = rng.choices(countries, weights=[COUNTRIES[c][1] for c in countries])[0]
        favorites = [f"genre:{g}" for g in rng.sample(TAG_DIMENSIONS["genre"], 2)]
        favorites.append(f"tone:{rng.choice(TAG_DIMENSIONS['tone'])}")
        favorites.append(f"theme:{rng.choice(TAG_DIMENSIONS['theme'])}")
        taste = {f: 1.0 for f in favorites}
        disliked = rng.choice([g for g in TAG_DIMENSIONS["genre"] if f"genre:{g}" not in taste])
        taste[f"genre:{disliked}"] = -1.0
        return SimUser(
            user_id=f"u{i:06d}",
            country=country,
            tz_hours=COUNTRIES[country][0],
            devices=rng.sample(DEVICES, rng.choice([1, 2, 2, 3])),
            favorites=favorites,
            taste=taste,
            activity=rng.lognormvariate(0, 0.6),
            skip_intro=rng.betavariate(2, 3),
            binge=rng.betavariate(3, 2),
            pause_rate=rng.uniform(0.2, 3.0),
            watched=set(),
        )

    def affinity(self, user: SimUser, title_id: str) -> float:
        """Planted match of a user and a title, roughly in [-1, 2]."""
        return sum(user.taste.get(tag, 0.0) for tag in self.title_tags[title_id])

    def preferred_style(self, user: SimUser, device: str) -> str:
        """The planted artwork preference of a segment: device and favourite tone.

        Mobile viewers take to faces (``character``); elsewhere viewers who lean
        intense (favourite genres among thriller, horror, crime, scifi, fantasy, and a
        dark, gritty or suspenseful favourite tone, counted: two or more) take to
        ``moody`` art and the rest to ``hero`` art. Both are observable: device on
        every event, the lean through the genres and tones their viewing builds.
        """
        if device == "mobile":
            return "character"
        lean = sum(f in INTENSE_GENRES or f in DARK_TONES for f in user.favorites)
        return "moody" if lean >= 2 else "hero"

    def _artwork_active(self) -> bool:
        return self.cfg.artwork_effect != 0.0 or self.artwork_chooser is not None

    def title_catalog(self) -> Catalog:
        """The simulated catalog as the core's :class:`~features.catalog.Catalog`."""
        catalog = Catalog()
        for rec in self.catalog:
            catalog.upsert(parse_title(rec))
        return catalog

    def ground_truth(self) -> dict[str, Any]:
        return {
            "seed": self.cfg.seed,
            "users": {
                u.user_id: {"favorite_tags": u.favorites, "country": u.country, "taste": u.taste}
                for u in self.users
            },
            "popularity": self.popularity,
        }

    # --- traffic --------------------------------------------------------------------

    def _sample_popular(self, k: int, country: str) -> list[str]:
        out: list[str] = []
        tries = 0
        while len(out) < k and tries < k * 20:
            tries += 1
            idx = _bisect(self._pop_cum, self.rng.random())
            tid = self.first_titles[min(idx, len(self.first_titles) - 1)]
            if tid not in out and (not self.regions[tid] or country in self.regions[tid]):
                out.append(tid)
        return out

    def _choose(self, user: SimUser, options: list[str]) -> str | None:
        fresh = [t for t in options if t not in user.watched] or options
        if not fresh:
            return None
        strength = self.cfg.taste_strength
        weights = [math.exp(strength * self.affinity(user, t)) for t in fresh]
        return self.rng.choices(fresh, weights=weights)[0]

    def _event(
        self,
        user: SimUser,
        etype: str,
        ts: float,
        title_id: str,
        session: str,
        device: str,
        **extra: Any,
    ) -> dict[str, Any]:
        self._seq += 1
        ev = {
            "event_id": f"e{self.cfg.seed}{self.cfg.run and '.' + self.cfg.run}-{self._seq:09d}",
            "user_id": user.user_id,
            "title_id": title_id,
            "event_type": etype,
            "ts": int(ts),
            "session_id": session,
            "device": device,
            "country": user.country,
        }
        ev.update(extra)
        return ev

    def _session(self, user: SimUser, start_ms: float) -> list[dict[str, Any]]:
        rng = self.rng
        out: list[dict[str, Any]] = []
        now = start_ms
        session = f"{user.user_id}-{int(start_ms) // 1000}"
        device = rng.choice(user.devices)
        row = self._sample_popular(8, user.country)
        request = f"r{self._seq + 1}"
        if self._artwork_active():
            return self._session_with_artwork(user, now, session, device, row, request)
        for rank, tid in enumerate(row):
            out.append(
                self._event(
                    user,
                    "impression",
                    now,
                    tid,
                    session,
                    device,
                    request_id=request,
                    rank=rank,
                    artwork_id=f"{tid}-a0",
                )
            )
        now += rng.uniform(2_000, 20_000)
        if rng.random() < 0.5:
            pick = self._choose(user, row)
            if pick:
                out.append(
                    self._event(
                        user,
                        "click",
                        now,
                        pick,
                        session,
                        device,
                        request_id=request,
                        artwork_id=f"{pick}-a0",
                    )
                )
        else:  # browsing or search: the planted taste dominates
            pick = self._choose(user, self._sample_popular(30, user.country))
        self._watch_session(user, pick, now, session, device, out)
        return out

    def _session_with_artwork(
        self, user: SimUser, now: float, session: str, device: str, row: list[str], request: str
    ) -> list[dict[str, Any]]:
        """A session whose row shows chosen artwork and whose click feels its pull."""
        rng = self.rng
        out: list[dict[str, Any]] = []
        chooser = self.artwork_chooser
        arts = chooser(user, row, device, now) if chooser else [f"{t}-a0" for t in row]
        for rank, (tid, art) in enumerate(zip(row, arts, strict=True)):
            out.append(
                self._event(
                    user, "impression", now, tid, session, device,
                    request_id=request, rank=rank, artwork_id=art,
                )
            )  # fmt: skip
        now += rng.uniform(2_000, 20_000)
        pick: str | None = None
        if row and rng.random() < 0.5:
            pref = f"-a{ARTWORK_STYLES.index(self.preferred_style(user, device))}"
            strength = self.cfg.taste_strength
            base = [math.exp(strength * self.affinity(user, t)) for t in row]
            pull = [
                b * math.exp(self.cfg.artwork_effect * a.endswith(pref))
                for b, a in zip(base, arts, strict=True)
            ]
            outside = self.cfg.artwork_outside * sum(base)
            j = rng.choices(range(len(row) + 1), weights=[*pull, outside])[0]
            if j < len(row):
                pick = row[j]
                out.append(
                    self._event(
                        user, "click", now, pick, session, device,
                        request_id=request, artwork_id=arts[j],
                    )
                )  # fmt: skip
        if pick is None:
            pick = self._choose(user, self._sample_popular(30, user.country))
        self._watch_session(user, pick, now, session, device, out)
        return out

    def _watch_session(
        self,
        user: SimUser,
        pick: str | None,
        now: float,
        session: str,
        device: str,
        out: list[dict[str, Any]],
    ) -> None:
        rng = self.rng
        watched_titles = 0
        while pick is not None and watched_titles < 6:
            now, completed = self._watch(user, pick, now, session, device, out)
            watched_titles += 1
            nxt = self.next_episode.get(pick)
            if completed and nxt and rng.random() < user.binge:
                pick = nxt
            elif rng.random() < 0.25:
                pick = self._choose(user, self._sample_popular(30, user.country))
            else:
                pick = None
            now += rng.uniform(5_000, 60_000)

    def _watch(
        self,
        user: SimUser,
        tid: str,
        now: float,
        session: str,
        device: str,
        out: list[dict[str, Any]],
    ) -> tuple[float, bool]:
        rng = self.rng
        duration = self.runtime[tid]
        aff = self.affinity(user, tid)
        p_complete = 1.0 / (1.0 + math.exp(-(2.4 * aff - 2.0)))
        completes = rng.random() < p_complete
        target = duration if completes else duration * rng.uniform(0.02, 0.35)
        user.watched.add(tid)

        def emit(etype: str, ts: float, at: float | None, **extra: Any) -> None:
            """One event of this viewing; ``at`` is the playhead (None: no position)."""
            if at is not None:
                extra = {"position_s": at, "duration_s": duration, **extra}
            out.append(self._event(user, etype, ts, tid, session, device, **extra))

        pos = 0.0
        emit("play", now, 0)
        is_episode = tid in self.episodes
        if is_episode and rng.random() < user.skip_intro:
            now += 25_000
            emit("intro_skip", now, 25.0)
            pos = 90.0
        pause_p = user.pause_rate * HEARTBEAT_S / 3600.0
        while pos < target:
            step = min(HEARTBEAT_S, target - pos)
            pos += step
            now += step * 1000
            if pos < target:
                emit("progress", now, round(pos, 1))
                if rng.random() < pause_p:
                    emit("pause", now + 1, round(pos, 1))
                    now += rng.uniform(10_000, 300_000)
                    emit("resume", now, round(pos, 1))
                if rng.random() < 0.03:
                    back = min(pos, rng.uniform(10, 120))
                    pos -= back
                    now += 2_000
                    emit("seek", now, round(pos, 1), from_position_s=round(pos + back, 1))
        if completes:
            emit("complete", now, duration)
            if rng.random() < 0.15:
                emit("thumbs", now + 3_000, None, value=1 if aff > 0.5 else -1)
        else:
            emit("stop", now, round(pos, 1))
        return now, completes

    def events(self, limit: int | None = None, days: int | None = None) -> Iterator[dict[str, Any]]:
        """Events in event-time order, day by day, until ``limit`` events or ``days`` days."""
        rng = self.rng
        day_ms = 86_400_000
        pending: list[tuple[int, int, dict[str, Any]]] = []
        emitted = 0
        day = 0
        while days is None or day < days:
            day_start = self.cfg.start_ms + day * day_ms
            weekend = ((day_start // day_ms) + 3) % 7 >= 5  # 1970-01-01 was a Thursday
            for user in self.users:
                rate = self.cfg.sessions_per_day * user.activity * (1.4 if weekend else 1.0)
                for _ in range(_poisson(rng, rate)):
                    local_hour = rng.choices(range(24), weights=HOUR_RHYTHM)[0]
                    utc_hour = (local_hour - user.tz_hours) % 24
                    start = day_start + utc_hour * 3_600_000 + rng.uniform(0, 3_600_000)
                    for ev in self._session(user, start):
                        heapq.heappush(pending, (ev["ts"], len(pending) + emitted, ev))
            horizon = day_start + day_ms
            while pending and pending[0][0] < horizon:
                yield heapq.heappop(pending)[2]
                emitted += 1
                if limit is not None and emitted >= limit:
                    return
            day += 1
        while pending:
            yield heapq.heappop(pending)[2]
            emitted += 1
            if limit is not None and emitted >= limit:
                return


def _cumsum(values: list[float]) -> Iterator[float]:
    acc = 0.0
    for v in values:
        acc += v
        yield acc


def _bisect(cum: list[float], x: float) -> int:
    import bisect

    return bisect.bisect_left(cum, x)


def _poisson(rng: random.Random, lam: float) -> int:
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1
