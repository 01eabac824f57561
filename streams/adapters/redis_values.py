"""What each Redis value holds: one encoder for the worker, one decoder for the API.

``streams/adapters/redis_keys.py`` says *where* a value lives; this module says *what* it is.
The worker (streams/adapters/feature_sink.py) and the API (streams/api/web.py) are different
code paths over the same bytes. When each kept its own idea of a value, the API
served ``score: null`` for every trending item (the worker wrote ``plays`` and
``as_of``, the API read ``score`` and ``generated_at``) and looked up a user's
country in a field the worker never wrote. Both sides now go through the
functions below, and tests write through them too (docs/redis-keys.md).

The score message under ``recs_key`` is not here: it is the score contract
(streams/schemas/score-v1.json), the same bytes as the scores topic.

>>> blob = TrendingList("FR", "1h", as_of=5, generated_at=9, items=(("t1", 3),)).encode()
>>> TrendingList.decode(blob).items
(('t1', 3),)
>>> decode_user_features({b"plays": b"4", b"country": b"FR", b"recent": b"t1,t2"})
{'plays': 4, 'country': 'FR', 'recent': ['t1', 't2']}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from features.title_stats import TitleStats
from features.user_profile import UserProfile
from online_models.bandit_live import BatchSums
from online_models.experiment_live import ArmTotals
from streams.contract import COUNTRY_RE, is_valid_id

Kind = Literal["int", "float", "json", "csv", "str"]

# ---- user features HASH (features_key) ---------------------------------------------------

USER_COUNTRY = "country"
"""The field the API's cold start reads: the country of the user's latest event."""

USER_FIELDS: dict[str, Kind] = {
    "plays": "int",
    "watch_s": "float",
    "completion_rate": "float",
    "early_abandon_rate": "float",
    "pauses_per_hour": "float",
    "seeks_per_play": "float",
    "intro_skip_rate": "float",
    "titles_per_session": "float",
    "session_s_mean": "float",
    "rewatches": "int",
    "sessions": "int",
    "top_local_hour": "int",
    "hour_profile": "json",
    "weekday_profile": "json",
    "devices": "json",
    "countries": "json",
    "recent": "csv",
    "continue_watching": "json",
    "session_id": "str",
    "session_titles": "int",
    "last_ts": "int",
    USER_COUNTRY: "str",
}
"""Every field of the hash and how its text decodes; the writer writes exactly these."""


def _text(value: object) -> str:
    """One spelling per value: what redis-py would store, made explicit (repr for floats)."""
    if isinstance(value, bool):
        raise TypeError("booleans have no Redis hash spelling here")
    return repr(value) if isinstance(value, float) else str(value)


def user_features_fields(profile: UserProfile) -> dict[str, str]:
    """The user's hash as written: the behavioural features plus the latest country."""
    fields: dict[str, object] = dict(profile.features.serving_fields())
    fields[USER_COUNTRY] = profile.country or ""
    return {k: _text(v) for k, v in fields.items()}


def _decode(kind: Kind, text: str) -> Any:
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "json":
        return orjson.loads(text)
    if kind == "csv":
        return [t for t in text.split(",") if t]
    return text


def decode_user_features(raw: Mapping[bytes, bytes]) -> dict[str, Any]:
    """The hash as typed values. A field this version does not define, or cannot read
    (written by another version during a rolling upgrade), is left out, not guessed."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        name = k.decode("utf-8", "replace")
        kind = USER_FIELDS.get(name)
        if kind is None:
            continue
        try:
            out[name] = _decode(kind, v.decode("utf-8", "replace"))
        except (ValueError, orjson.JSONDecodeError):
            continue
    if USER_COUNTRY in out:
        out[USER_COUNTRY] = user_country(raw.get(USER_COUNTRY.encode()))
    return out


def user_country(value: bytes | None) -> str | None:
    """The ``country`` field as an ISO alpha-2 code, or None (absent, empty or invalid)."""
    if not value:
        return None
    cc = value.decode("utf-8", "replace")
    return cc if COUNTRY_RE.match(cc) else None


# ---- title statistics HASH (title_key) ---------------------------------------------------


def title_stats_fields(stats: TitleStats) -> dict[str, str]:
    """The title's hash as written: counters, rates and window counts, all numbers."""
    return {k: _text(v) for k, v in stats.serving_fields().items()}


def decode_title_stats(raw: Mapping[bytes, bytes]) -> dict[str, int | float]:
    """Every field is a number: an int when it is spelled as one, else a float."""
    out: dict[str, int | float] = {}
    for k, v in raw.items():
        name, text = k.decode("utf-8", "replace"), v.decode("ascii", "replace")
        try:
            out[name] = int(text)
        except ValueError:
            try:
                out[name] = float(text)
            except ValueError:
                continue  # not a number: not a field of this hash
    return out


# ---- experiment HASH (experiment_key) ----------------------------------------------------


@dataclass(frozen=True)
class ExperimentShard:
    """One partition's per-arm sums of one experiment (online_models/experiment_live.py).

    ``since`` is when the writing worker started folding the partition (wall clock,
    ms): sums cover users first exposed after it. ``written`` is the last write.
    """

    partition: int
    since: int
    written: int
    arms: dict[str, ArmTotals]
    batches: dict[int, BatchSums] = field(default_factory=dict)  # bandit experiments only

    @staticmethod
    def field(partition: int) -> str:
        return f"p{partition}"

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": 1,
                "partition": self.partition,
                "since": self.since,
                "written": self.written,
                "arms": {a: t.as_dict() for a, t in sorted(self.arms.items())},
                "batches": {str(b): s.as_dict() for b, s in sorted(self.batches.items())},
            }
        )

    @classmethod
    def decode(cls, blob: bytes) -> ExperimentShard:
        """The shard, or ValueError when the blob is not one (the API skips it and says so)."""
        try:
            doc = orjson.loads(blob)
            if doc["v"] != 1:
                raise ValueError(f"version {doc['v']!r}")
            ints = (doc["partition"], doc["since"], doc["written"])
            if not all(isinstance(n, int) and not isinstance(n, bool) for n in ints):
                raise ValueError("partition, since and written must be integers")
            arms = {str(a): ArmTotals.from_dict(t) for a, t in doc["arms"].items()}
            raw_batches = doc.get("batches", {})  # absent in shards written before bandits
            if not all(isinstance(b, str) and b.isdigit() and len(b) < 10 for b in raw_batches):
                raise ValueError("batch numbers must be decimal integers")
            batches = {int(b): BatchSums.from_dict(d) for b, d in raw_batches.items()}
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an experiment shard: {exc!r}") from exc
        return cls(doc["partition"], doc["since"], doc["written"], arms, batches)


# ---- trending STRING (trending_key) ------------------------------------------------------


@dataclass(frozen=True)
class TrendingList:
    """The top titles of one country (or ``ALL``) over one window, by plays.

    ``as_of`` is the event time (ms) the windows end at, the highest any title owner
    reported; ``generated_at`` the wall clock (ms) when the list was written.
    """

    country: str
    window: str
    as_of: int
    generated_at: int
    items: tuple[tuple[str, int], ...]  # (title_id, plays), most played first

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "country": self.country,
                "window": self.window,
                "as_of": self.as_of,
                "generated_at": self.generated_at,
                "items": [{"title_id": t, "plays": n} for t, n in self.items],
            }
        )

    @classmethod
    def decode(cls, blob: bytes) -> TrendingList:
        """The list, or ValueError when the blob is not one (the API then falls back)."""
        try:
            doc = orjson.loads(blob)
            items = tuple((i["title_id"], i["plays"]) for i in doc["items"])
            out = cls(doc["country"], doc["window"], doc["as_of"], doc["generated_at"], items)
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a trending list: {exc}") from exc
        ints = (out.as_of, out.generated_at, *(n for _, n in items))
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in ints) or not all(
            is_valid_id(t) for t, _ in items
        ):
            raise ValueError("not a trending list: wrong field types")
        return out
