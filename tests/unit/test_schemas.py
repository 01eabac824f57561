"""The JSON Schemas under streams/schemas agree with the executable validators."""

import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from features.catalog import parse_title
from online_models.engine import Engine
from streams.contract import decode_record
from streams.tools.synthetic import SimConfig, Simulation

SCHEMAS = Path(__file__).resolve().parents[2] / "streams" / "schemas"


def schema(name: str) -> jsonschema.Draft202012Validator:
    doc = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(doc)
    return jsonschema.Draft202012Validator(doc)


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return Simulation(SimConfig(users=40, titles=60, seed=8))


def test_synthetic_events_and_envelopes_match_the_event_schema(sim):
    v = schema("event-v1.json")
    events = list(sim.events(limit=3000))
    for ev in events:
        v.validate(ev)
    v.validate({"v": 1, "events": events[:3]})


BAD = [
    {"event_id": "e", "user_id": "u", "title_id": "t", "event_type": "warp", "ts": 1767571200000},
    {"event_id": "e", "user_id": "u x", "title_id": "t", "event_type": "play", "ts": 1767571200000},
    {"event_id": "e", "user_id": "u", "title_id": "t", "event_type": "play", "ts": 1767571200},
    {"event_id": "e", "user_id": "u", "title_id": "t", "event_type": "stop", "ts": 1767571200000},
    {
        "event_id": "e",
        "user_id": "u",
        "title_id": "t",
        "event_type": "thumbs",
        "ts": 1767571200000,
        "value": 3,
    },
    {
        "event_id": "e",
        "user_id": "u",
        "title_id": "t",
        "event_type": "play",
        "ts": 1767571200000,
        "country": "fr",
    },
    {"user_id": "u", "title_id": "t", "event_type": "play", "ts": 1767571200000},
]


@pytest.mark.parametrize("doc", BAD)
def test_schema_and_validator_both_reject(doc):
    assert not schema("event-v1.json").is_valid(doc)
    events, rejects = decode_record(orjson.dumps(doc))
    assert events == [] and len(rejects) == 1


def test_catalog_records_match_the_catalog_schema(sim):
    v = schema("catalog-v1.json")
    for rec in sim.catalog:
        v.validate(rec)
        parse_title(rec)


def test_score_messages_match_the_score_schema(sim):
    eng = Engine(catalog=sim.title_catalog())
    events = list(sim.events(limit=2000))
    for ev in events:
        eng.ingest(ev)
    v = schema("score-v1.json")
    for user in list(eng.profiles)[:20]:
        v.validate(eng.score_message(user, events[-1]["ts"], events[-1]["ts"] + 5))
