"""Behavioural features of one user, and exact per-(user, title) viewing state.

Why here and not in the models: these are facts about playback, computed once,
in event time, by the code the worker and the replay tool share; models read
them. Everything is an exact running total (no decay) so a restarted worker or a
replay reproduces the same numbers; the rates are ratios of those totals. See
docs/features.md for every definition.

Watched seconds are credited from position deltas: a ``progress``, ``pause``,
``stop``, ``complete`` or ``intro_skip`` credits ``position - cursor`` (never
negative, at most :data:`MAX_CREDIT_S` per step); ``play``, ``resume`` and
``seek`` move the cursor without credit, so seconds seen twice after a backwards
seek are counted as watched again only when really replayed, and a pause's idle
time is never credited. Credited seconds are split exactly across local hours
(and weekdays) between the previous and this event's time.

>>> f = UserFeatures()
>>> t0 = 1_767_571_200_000  # Monday 00:00 UTC
>>> f.update({"event_type": "play", "title_id": "t1", "ts": t0, "position_s": 0,
...           "duration_s": 1000, "country": "GB", "session_id": "s1"}, None)
{'t': 't1', 'e': 'play', 'ts': 1767571200000, 'c': 'GB', 'f': 1}
>>> _ = f.update({"event_type": "stop", "title_id": "t1", "ts": t0 + 60_000,
...               "position_s": 60, "duration_s": 1000, "country": "GB"}, None)
>>> f.watch_s, f.early_abandons, f.titles["t1"][RESUME], f.hour_s[0]
(60.0, 1, 60.0, 60.0)
"""

from __future__ import annotations

from typing import Any

from features.local_time import HOUR_MS, local_ms

MAX_CREDIT_S = 900.0  # one step never credits more watching than this
EARLY_ABANDON_RATIO = 0.10  # a view stopped before 10 % of the runtime is an early abandon
FINISHED_RATIO = 0.90  # reaching 90 % of the runtime (or a `complete`) finishes a title
SESSION_GAP_MS = 30 * 60_000  # without session_id, a 30 min gap opens a new session
USER_TITLES_MAX = 200  # per-(user, title) entries kept, least recently seen evicted
MIX_MAX = 8  # distinct devices / countries kept in the mixes
RECENT_MAX = 20

# Per-(user, title) entry, a list for compact JSON: indexes below.
RESUME, DURATION, RATIO, VIEWS, COMPLETES, REWATCHES, LAST_SEEN, FINISHED = range(8)

# Events whose title-side effect is forwarded to the title owner.
TITLE_EVENTS = frozenset({"play", "complete", "stop", "intro_skip", "click", "thumbs"})
CREDIT_EVENTS = frozenset({"progress", "pause", "stop", "complete", "intro_skip"})


def _bump(mix: dict[str, int], key: str) -> None:
    """Count ``key``; when full, a new key replaces the rarest one (bounded label space)."""
    if key not in mix and len(mix) >= MIX_MAX:
        del mix[min(mix, key=mix.__getitem__)]
    mix[key] = mix.get(key, 0) + 1


class UserFeatures:
    """Running totals of one user's playback behaviour plus per-title state."""

    __slots__ = (
        "completes",
        "countries",
        "devices",
        "early_abandons",
        "ended",
        "hour_s",
        "intro_skips",
        "last_ts",
        "pauses",
        "plays",
        "recent",
        "rewatches",
        "seeks",
        "seeks_back",
        "sess",
        "session_s",
        "session_titles",
        "sessions",
        "titles",
        "watch_s",
        "weekday_s",
    )

    def __init__(self) -> None:
        self.plays = self.completes = self.ended = self.early_abandons = 0
        self.pauses = self.seeks = self.seeks_back = self.intro_skips = self.rewatches = 0
        self.watch_s = 0.0
        self.hour_s = [0.0] * 24
        self.weekday_s = [0.0] * 7
        self.devices: dict[str, int] = {}
        self.countries: dict[str, int] = {}
        self.recent: list[str] = []
        self.sessions = self.session_titles = 0
        self.session_s = 0.0
        # current session: [session_id or "", start_ts, last_ts, [title_ids played], device]
        self.sess: list[Any] | None = None
        self.titles: dict[str, list[Any]] = {}
        self.last_ts = 0

    # --- pieces ---------------------------------------------------------------------

    def _session(self, ev: dict[str, Any], ts: int) -> None:
        sid = ev.get("session_id") or ""
        s = self.sess
        if s is not None:
            same = sid == s[0] if sid else ts - s[2] <= SESSION_GAP_MS
            if same or ts < s[1]:  # a late event of an earlier session does not reopen it
                if ts > s[2]:
                    self.session_s += (ts - s[2]) / 1000
                    s[2] = ts
                elif ts < s[1] and same:
                    self.session_s += (s[1] - ts) / 1000
                    s[1] = ts
                return
            if ts < s[2]:
                return
        self.sessions += 1
        self.sess = [sid, ts, ts, [], ev.get("device")]

    def _credit(self, seconds: float, end_ts: int, country: str | None) -> None:
        """Add watched seconds, split across the local hours/weekdays they span."""
        if seconds <= 0:
            return
        self.watch_s += seconds
        end = local_ms(end_ts, country)
        if end is None:
            return
        start = end - int(seconds * 1000)
        while start < end:
            bound = min(end, (start // HOUR_MS + 1) * HOUR_MS)
            part = (bound - start) / 1000
            self.hour_s[(start // HOUR_MS) % 24] += part
            self.weekday_s[(start // 86_400_000 + 3) % 7] += part
            start = bound

    def _entry(self, tid: str, duration: float, ts: int) -> tuple[list[Any], bool]:
        e = self.titles.get(tid)
        if e is not None:
            return e, False
        if len(self.titles) >= USER_TITLES_MAX:
            del self.titles[min(self.titles, key=lambda k: self.titles[k][LAST_SEEN])]
        e = self.titles[tid] = [0.0, duration, 0.0, 0, 0, 0, ts, 0]
        return e, True

    # --- the update -----------------------------------------------------------------

    def update(self, ev: dict[str, Any], runtime_s: float | None) -> dict[str, Any] | None:
        """Fold one admitted event in; returns the compact title-side record, if any.

        The record (``t`` title, ``e`` type, ``ts``, ``c`` country, ``f`` first view
        of this title by this user, ``r`` the view's watched ratio at its end,
        ``v`` thumbs value) is what the title owner needs and all it gets.
        """
        ts = ev["ts"]
        etype = ev["event_type"]
        tid = ev["title_id"]
        country = ev.get("country")
        if ts > self.last_ts:
            self.last_ts = ts
        self._session(ev, ts)
        rec: dict[str, Any] | None = None
        if etype in TITLE_EVENTS:
            rec = {"t": tid, "e": etype, "ts": ts, "c": country}
        pos = ev.get("position_s")
        if etype == "play":
            duration = float(ev.get("duration_s") or runtime_s or 0.0)
            e, new = self._entry(tid, duration, ts)
            if e[FINISHED]:
                e[REWATCHES] += 1
                self.rewatches += 1
            self.plays += 1
            e[VIEWS] += 1
            e[RESUME] = float(pos if pos is not None else e[RESUME])
            if duration:
                e[DURATION] = duration
            e[RATIO] = e[RESUME] / e[DURATION] if e[DURATION] else 0.0
            e[LAST_SEEN] = max(e[LAST_SEEN], ts)
            rec["f"] = 1 if new else 0  # type: ignore[index]
            if ev.get("device"):
                _bump(self.devices, ev["device"])
            if country:
                _bump(self.countries, country)
            if tid in self.recent:
                self.recent.remove(tid)
            self.recent.insert(0, tid)
            del self.recent[RECENT_MAX:]
            s = self.sess
            if s is not None and tid not in s[3]:
                s[3].append(tid)
                self.session_titles += 1
            return rec
        if pos is None:
            if etype == "thumbs":
                rec["v"] = ev.get("value")  # type: ignore[index]
            return rec
        duration = float(ev.get("duration_s") or runtime_s or 0.0)
        e, new = self._entry(tid, duration, ts)
        if duration and not e[DURATION]:
            e[DURATION] = duration
        dur = e[DURATION]
        if etype in CREDIT_EVENTS and not new:
            self._credit(min(max(0.0, pos - e[RESUME]), MAX_CREDIT_S), ts, country)
        e[RESUME] = float(pos)
        e[LAST_SEEN] = max(e[LAST_SEEN], ts)
        if dur:
            e[RATIO] = max(e[RATIO], min(1.0, pos / dur))
        if etype == "pause":
            self.pauses += 1
        elif etype == "seek":
            self.seeks += 1
            back_from = ev.get("from_position_s")
            if back_from is not None and pos < back_from:
                self.seeks_back += 1
        elif etype == "intro_skip":
            self.intro_skips += 1
        elif etype == "complete":
            self.completes += 1
            self.ended += 1
            e[COMPLETES] += 1
            e[RATIO] = 1.0
            e[FINISHED] = 1
            rec["r"] = 1.0  # type: ignore[index]
        elif etype == "stop":
            self.ended += 1
            if e[RATIO] < EARLY_ABANDON_RATIO:
                self.early_abandons += 1
            if e[RATIO] >= FINISHED_RATIO:
                e[FINISHED] = 1
            rec["r"] = round(e[RATIO], 4)  # type: ignore[index]
        elif dur and e[RATIO] >= FINISHED_RATIO:
            e[FINISHED] = 1
        return rec

    # --- reading --------------------------------------------------------------------

    def rates(self) -> dict[str, float]:
        """The derived rates (0 when their denominator is 0)."""

        def ratio(a: float, b: float) -> float:
            return round(a / b, 6) if b else 0.0

        return {
            "completion_rate": ratio(self.completes, self.ended),
            "early_abandon_rate": ratio(self.early_abandons, self.ended),
            "pauses_per_hour": ratio(self.pauses, self.watch_s / 3600),
            "seeks_per_play": ratio(self.seeks, self.plays),
            "intro_skip_rate": ratio(self.intro_skips, self.plays),
            "titles_per_session": ratio(self.session_titles, self.sessions),
            "session_s_mean": ratio(self.session_s, self.sessions),
        }

    def continue_watching(self, n: int = 10) -> list[tuple[str, float, float]]:
        """(title, resume position s, watched ratio) of started, unfinished titles, latest first."""
        rows = [(k, e) for k, e in self.titles.items() if not e[FINISHED] and e[RESUME] > 0]
        rows.sort(key=lambda kv: -kv[1][LAST_SEEN])
        return [(k, e[RESUME], round(e[RATIO], 4)) for k, e in rows[:n]]

    def finished(self) -> list[str]:
        return [k for k, e in self.titles.items() if e[FINISHED]]

    def serving_fields(self) -> dict[str, str | int | float]:
        """Flat fields for the Redis features hash (``features_key``)."""
        import orjson

        top_hour = max(range(24), key=self.hour_s.__getitem__) if self.watch_s else -1
        s = self.sess
        return {
            "plays": self.plays,
            "watch_s": round(self.watch_s, 1),
            **self.rates(),
            "rewatches": self.rewatches,
            "sessions": self.sessions,
            "top_local_hour": top_hour,
            "hour_profile": orjson.dumps([round(x) for x in self.hour_s]).decode(),
            "weekday_profile": orjson.dumps([round(x) for x in self.weekday_s]).decode(),
            "devices": orjson.dumps(self.devices).decode(),
            "countries": orjson.dumps(self.countries).decode(),
            "recent": ",".join(self.recent),
            "continue_watching": orjson.dumps(self.continue_watching()).decode(),
            "session_id": (s[0] if s else "") or "",
            "session_titles": len(s[3]) if s else 0,
            "last_ts": self.last_ts,
        }

    # --- persistence ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> UserFeatures:
        f = cls()
        for k, v in (d or {}).items():
            if k in cls.__slots__:
                setattr(f, k, v)
        return f
