"""Per-user online state: decayed tag affinity, viewing progress, recent and finished titles.

Updated in event time: decay uses the events' ``ts``, never the clock, so a replay
and the live worker compute the same values. The state round-trips through
``to_dict``/``from_dict`` for Faust tables and Redis.

>>> from features.catalog import Title
>>> t = Title("t1", "X", tag_keys=("genre:drama", "tone:dark"), runtime_s=1000)
>>> p = UserProfile()
>>> p.update({"event_type": "play", "title_id": "t1", "ts": 0, "position_s": 0}, t)
True
>>> p.update({"event_type": "progress", "title_id": "t1", "ts": 300_000,
...           "position_s": 300, "duration_s": 1000}, t)
False
>>> round(p.affinity["genre:drama"], 3)
0.212
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from features.catalog import Title
from features.decay import decay_factor, rate
from features.event_gate import EventGate
from features.user_features import FINISHED_RATIO, MAX_CREDIT_S, RECENT_MAX, UserFeatures

AFFINITY_HALF_LIFE_MS = 14 * 86_400_000
_DECAY_PER_MS = rate(AFFINITY_HALF_LIFE_MS)
IN_PROGRESS_MAX = 50
FINISHED_MAX = 500
# Events after which the user's recommendations should be recomputed.
REFRESH_EVENTS = frozenset({"play", "complete", "stop", "thumbs", "click", "intro_skip"})


class ModelState(Protocol):
    """The models' per-user state (online_models/user_state.py), opaque to features."""

    def to_dict(self) -> dict[str, Any]: ...


class UserProfile:
    """One viewer's record, the row of the user-profiles table: online features (see
    docs/features.md), the event gate, and the models' per-user state (``model``)."""

    __slots__ = (
        "affinity",
        "country",
        "device",
        "events",
        "features",
        "finished",
        "gate",
        "in_progress",
        "last_ts",
        "model",
        "recent",
    )

    def __init__(self) -> None:
        self.affinity: dict[str, float] = {}
        self.last_ts = 0
        self.events = 0
        self.country: str | None = None
        self.device: str | None = None
        self.recent: list[str] = []  # most recent first
        # title_id -> [position_s, duration_s, ts]
        self.in_progress: dict[str, list[float]] = {}
        self.finished: dict[str, int] = {}  # title_id -> ts finished
        # Behavioural features and per-title state (features/user_features.py), and the
        # dedupe/lateness gate (features/event_gate.py): in the same row, so one read and
        # one write per user per batch, and they survive restarts together.
        self.features = UserFeatures()
        self.gate = EventGate()
        # The models' part of the record: their object once read (online_models reads the
        # stored dict on first use, it knows the catalog numbering), else the stored dict.
        self.model: ModelState | dict[str, Any] | None = None

    def _decay_to(self, ts: int) -> None:
        if ts > self.last_ts and self.affinity:
            factor = decay_factor(ts - self.last_ts, _DECAY_PER_MS)
            for tag in self.affinity:
                self.affinity[tag] *= factor
        if ts > self.last_ts:
            self.last_ts = ts

    def _credit(self, title: Title | None, seconds_or_weight: float, duration: float) -> None:
        """Add watched share of a title to each of its tags, normalised by tag count."""
        if title is None or not title.tag_keys:
            return
        share = seconds_or_weight / duration if duration > 0 else seconds_or_weight
        w = share / math.sqrt(len(title.tag_keys))
        for tag in title.tag_keys:
            self.affinity[tag] = self.affinity.get(tag, 0.0) + w

    def update(self, ev: dict[str, Any], title: Title | None) -> bool:
        """Fold one validated event in; returns True when recommendations should refresh."""
        ts = ev["ts"]
        self._decay_to(ts)
        self.events += 1
        self.country = ev.get("country") or self.country
        self.device = ev.get("device") or self.device
        etype = ev["event_type"]
        tid = ev["title_id"]
        duration = float(ev.get("duration_s") or (title.runtime_s if title else 0.0) or 0.0)
        pos = ev.get("position_s")
        if etype == "play":
            if tid in self.recent:
                self.recent.remove(tid)
            self.recent.insert(0, tid)
            del self.recent[RECENT_MAX:]
            prev = self.in_progress.get(tid)
            self.in_progress[tid] = [float(pos or (prev[0] if prev else 0.0)), duration, ts]
            if len(self.in_progress) > IN_PROGRESS_MAX:
                oldest = min(self.in_progress, key=lambda k: self.in_progress[k][2])
                del self.in_progress[oldest]
        elif pos is not None and etype in (
            "progress",
            "stop",
            "complete",
            "pause",
            "seek",
            "intro_skip",
            "resume",
        ):
            state = self.in_progress.get(tid)
            last_pos = state[0] if state else 0.0
            if etype in ("progress", "stop", "complete"):
                watched = min(max(0.0, pos - last_pos), MAX_CREDIT_S)
                self._credit(title, watched, duration)
            if state is None:
                state = self.in_progress[tid] = [0.0, duration, ts]
            state[0], state[2] = float(pos), ts
            if duration and state[1] == 0.0:
                state[1] = duration
            if etype == "complete" or (duration and pos >= FINISHED_RATIO * duration):
                self._finish(tid, ts)
        elif etype == "thumbs":
            self._credit(title, 0.5 * float(ev.get("value") or 0), 0.0)
        elif etype == "click":
            self._credit(title, 0.05, 0.0)
        return etype in REFRESH_EVENTS

    def _finish(self, tid: str, ts: int) -> None:
        self.in_progress.pop(tid, None)
        self.finished[tid] = ts
        if len(self.finished) > FINISHED_MAX:
            oldest = min(self.finished, key=self.finished.__getitem__)
            del self.finished[oldest]

    def top_tags(self, n: int = 5) -> list[tuple[str, float]]:
        return sorted(self.affinity.items(), key=lambda kv: -kv[1])[:n]

    def to_dict(self) -> dict[str, Any]:
        return {
            "affinity": self.affinity,
            "last_ts": self.last_ts,
            "events": self.events,
            "country": self.country,
            "device": self.device,
            "recent": self.recent,
            "in_progress": self.in_progress,
            "finished": self.finished,
            "features": self.features.to_dict(),
            "gate": self.gate.to_list(),
            "model": self.model if isinstance(self.model, dict | None) else self.model.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UserProfile:
        p = cls()
        p.affinity = dict(d.get("affinity", {}))
        p.last_ts = int(d.get("last_ts", 0))
        p.events = int(d.get("events", 0))
        p.country = d.get("country")
        p.device = d.get("device")
        p.recent = list(d.get("recent", []))
        p.in_progress = {k: list(v) for k, v in d.get("in_progress", {}).items()}
        p.finished = dict(d.get("finished", {}))
        p.features = UserFeatures.from_dict(d.get("features"))
        p.gate = EventGate.from_list(d.get("gate"))
        p.model = d.get("model")
        return p
