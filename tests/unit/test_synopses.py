"""Synthetic synopses carry the tags in paraphrase; the simulated events do not change."""

import hashlib
import re

import orjson

from streams.tools.synopses import PHRASES
from streams.tools.synthetic import TAG_DIMENSIONS, SimConfig, Simulation

# sha256 of the first 20,000 events (sorted-key JSON lines) before synopses existed.
EVENTS_DIGEST = {
    7: ("aa9056c6b1573dd3aea45fc3f9680191de4e267ff86e20fb9ed1e063ebb80f01", 50, 120),
}


def test_events_are_byte_identical_to_before_synopses():
    for seed, (digest, users, titles) in EVENTS_DIGEST.items():
        sim = Simulation(SimConfig(users=users, titles=titles, seed=seed))
        h = hashlib.sha256()
        for ev in sim.events(limit=20_000):
            h.update(orjson.dumps(ev, option=orjson.OPT_SORT_KEYS))
            h.update(b"\n")
        assert h.hexdigest() == digest


def test_no_phrase_names_its_own_tag():
    for dim, values in PHRASES.items():
        for value, phrases in values.items():
            for p in phrases:
                words = set(re.findall(r"[a-z\-]+", p.lower()))
                assert value not in words, (dim, value, p)


def test_phrase_bank_covers_every_catalog_tag():
    for dim, values in TAG_DIMENSIONS.items():
        assert set(values) <= set(PHRASES[dim]), dim


def test_catalog_has_audience_and_a_synopsis_per_title():
    sim = Simulation(SimConfig(users=5, titles=60, seed=3))
    for rec in sim.catalog:
        assert rec["tags"]["audience"][0] in PHRASES["audience"]
        assert len(rec["synopsis"]) > 30
        if "horror" in rec["genres"]:
            assert rec["tags"]["audience"] == ["adult"]
    again = Simulation(SimConfig(users=5, titles=60, seed=3))
    assert [r["synopsis"] for r in again.catalog] == [r["synopsis"] for r in sim.catalog]
