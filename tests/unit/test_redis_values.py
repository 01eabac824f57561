"""The Redis values' one definition: what the writer encodes, the reader decodes, field
for field (streams/adapters/redis_values.py)."""

from __future__ import annotations

import time

import orjson
import pytest

from features.event_gate import OK
from features.title_stats import TitleStats
from online_models.engine import Engine
from streams.adapters.redis_values import (
    USER_FIELDS,
    TrendingList,
    decode_title_stats,
    decode_user_features,
    title_stats_fields,
    user_country,
    user_features_fields,
)
from streams.tools.synthetic import SimConfig, Simulation


def as_stored(fields: dict[str, str]) -> dict[bytes, bytes]:
    """What HGETALL returns for a hash written with ``fields``."""
    return {k.encode(): v.encode() for k, v in fields.items()}


@pytest.fixture(scope="module")
def engine() -> Engine:
    sim = Simulation(SimConfig(users=20, titles=30, seed=3))
    eng = Engine(catalog=sim.title_catalog())
    now = int(time.time() * 1000)
    for ev in sim.events(limit=1500):
        eng.ingest(ev, now)
    return eng


def test_the_writer_writes_exactly_the_fields_the_reader_defines(engine):
    for profile in engine.profiles.values():
        assert set(user_features_fields(profile)) == set(USER_FIELDS)


def test_user_features_round_trip_to_the_writers_values(engine):
    profile = max(engine.profiles.values(), key=lambda p: p.features.plays)
    written = user_features_fields(profile)
    got = decode_user_features(as_stored(written))
    want = profile.features.serving_fields()
    assert got["plays"] == want["plays"] > 0
    assert got["watch_s"] == want["watch_s"]
    assert got["recent"] == profile.features.recent and got["recent"]
    assert got["hour_profile"] == orjson.loads(str(want["hour_profile"]))
    assert got["country"] == profile.country and profile.country is not None
    assert isinstance(got["session_id"], str)


def test_user_country_is_the_latest_events_country_and_nothing_else():
    eng = Engine()
    now = int(time.time() * 1000)
    for i, cc in enumerate(("FR", "DE")):
        ev = {
            "event_id": f"e{i}",
            "user_id": "u1",
            "title_id": "t1",
            "event_type": "play",
            "ts": now + i,
            "position_s": 0,
            "country": cc,
        }
        assert eng.ingest(ev, now + i).status == OK
    stored = as_stored(user_features_fields(eng.profiles["u1"]))
    assert user_country(stored[b"country"]) == "DE"
    assert user_country(None) is None and user_country(b"") is None
    assert user_country(b'"FR"') is None and user_country(b"fr") is None


def test_a_field_from_another_version_is_left_out_not_guessed():
    got = decode_user_features({b"plays": b"x", b"legacy": b"1", b"sessions": b"2"})
    assert got == {"sessions": 2}


def test_title_stats_round_trip_as_numbers():
    stats = TitleStats()
    stats.plays, stats.completes, stats.ended, stats.ratio_sum = 4, 1, 2, 1.5
    got = decode_title_stats(as_stored(title_stats_fields(stats)))
    assert got == stats.serving_fields()
    assert isinstance(got["plays"], int) and isinstance(got["mean_watched_ratio"], float)


def test_trending_list_round_trips_and_names_plays_and_times():
    lst = TrendingList("US", "1h", as_of=1_000, generated_at=2_000, items=(("t1", 9), ("t2", 4)))
    doc = orjson.loads(lst.encode())
    assert doc["items"][0] == {"title_id": "t1", "plays": 9}
    assert (doc["as_of"], doc["generated_at"]) == (1_000, 2_000)
    assert TrendingList.decode(lst.encode()) == lst


@pytest.mark.parametrize(
    "blob",
    [
        b"not json",
        b'["t1", "t2"]',
        b'{"items": [{"title_id": "t1", "score": 3}], "generated_at": 1}',
        b'{"country": "US", "window": "1h", "as_of": 1, "generated_at": 2,'
        b' "items": [{"title_id": "t1", "plays": null}]}',
        b'{"country": "US", "window": "1h", "as_of": "1", "generated_at": 2, "items": []}',
        b'{"country": "US", "window": "1h", "as_of": 1, "generated_at": 2,'
        b' "items": [{"title_id": "bad id", "plays": 1}]}',
    ],
)
def test_anything_but_a_trending_list_is_refused(blob):
    with pytest.raises(ValueError, match="not a trending list"):
        TrendingList.decode(blob)
