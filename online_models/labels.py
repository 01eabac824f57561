"""Implicit labels derived from playback events, shared by the models and the replay.

A viewing is *positive* (the user watched the title) at the first ``complete``
event, or the first ``progress``/``stop`` whose position reaches
``POSITIVE_RATIO`` (70 %) of the runtime. A ``stop`` below that ratio ends the
viewing as an *early abandon* (a negative for the play->completion ranker).
Runtime comes from the event's ``duration_s`` or else the catalog's ``runtime_s``.

>>> watched_ratio({"event_type": "progress", "position_s": 700, "duration_s": 1000}, None)
0.7
>>> outcome({"event_type": "progress", "position_s": 700, "duration_s": 1000}, None)
'positive'
>>> outcome({"event_type": "stop", "position_s": 60, "duration_s": 1000}, None)
'abandon'
>>> outcome({"event_type": "complete", "position_s": 10}, None)
'positive'
"""

from __future__ import annotations

from typing import Any

from features.catalog import Title

POSITIVE_RATIO = 0.7


def watched_ratio(ev: dict[str, Any], title: Title | None) -> float | None:
    pos = ev.get("position_s")
    duration = ev.get("duration_s") or (title.runtime_s if title else 0.0)
    if pos is None or not duration:
        return None
    return min(1.0, float(pos) / float(duration))


def outcome(ev: dict[str, Any], title: Title | None) -> str | None:
    """'positive', 'abandon' or None (the event does not end or qualify a viewing)."""
    etype = ev["event_type"]
    if etype == "complete":
        return "positive"
    if etype in ("progress", "stop"):
        r = watched_ratio(ev, title)
        if r is not None and r >= POSITIVE_RATIO:
            return "positive"
        if etype == "stop":
            return "abandon"
    return None
