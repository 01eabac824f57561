"""The Redis key layout (docs/redis-keys.md). Ids are checked before they touch a key.

Per-user keys carry the user id as a Redis Cluster hash tag, so one user's keys
live in one slot.

>>> recs_key("rs", "u42")
'rs:recs:{u42}'
>>> recs_key("rs", "u42}x")
Traceback (most recent call last):
...
ValueError: invalid user id for a Redis key
"""

from __future__ import annotations

from streams.contract import is_valid_id


def _checked(value: str, what: str) -> str:
    if not is_valid_id(value):
        raise ValueError(f"invalid {what} for a Redis key")
    return value


def recs_key(prefix: str, user_id: str) -> str:
    """SET of the user's latest score message (JSON), with a TTL."""
    return f"{prefix}:recs:{{{_checked(user_id, 'user id')}}}"


def features_key(prefix: str, user_id: str) -> str:
    """HASH of the user's serving features."""
    return f"{prefix}:feat:{{{_checked(user_id, 'user id')}}}"


def title_key(prefix: str, title_id: str) -> str:
    """HASH of a title's serving statistics."""
    return f"{prefix}:title:{_checked(title_id, 'title id')}"


def trending_key(prefix: str, country: str, window: str) -> str:
    """JSON blob of the top titles in ``country`` (ISO alpha-2 or ``ALL``) over ``window``."""
    if not (country == "ALL" or (len(country) == 2 and country.isalpha() and country.isupper())):
        raise ValueError("invalid country for a Redis key")
    if window not in ("1h", "1d"):
        raise ValueError("invalid trending window")
    return f"{prefix}:trending:{country}:{window}"


def experiment_key(prefix: str, experiment_id: str) -> str:
    """HASH of an experiment's per-arm sums: field ``p<partition>``, value
    ``redis_values.ExperimentShard`` (bounded: one field per events-topic partition)."""
    return f"{prefix}:experiment:{_checked(experiment_id, 'experiment id')}"


def epoch_key(prefix: str) -> str:
    """STRING the workers set once the serving copy is complete; its absence after a
    reconnect means Redis lost its data (streams/adapters/redis_recovery.py)."""
    return f"{prefix}:epoch"


def rebuild_lock_key(prefix: str) -> str:
    """STRING (worker id, with a TTL): the one worker rebuilding the serving copy."""
    return f"{prefix}:rebuild-lock"
