"""The plain-language parser against the query set (tests/unit/query_set.py)."""

import pytest

from online_models.intent import TitleRef, Vocabulary, parse
from tests.unit.query_set import NOW_YEAR, QUERIES, TITLES

VOCAB = Vocabulary.default(NOW_YEAR, [TitleRef(*t) for t in TITLES])
SUBSET_KEYS = {"wanted", "mood"}


def check(text: str, expected: dict) -> list[str]:
    intent = parse(text, VOCAB)
    d = intent.to_dict()
    got = {**d["hard"], **d["soft"], "answerable": intent.answerable}
    got["similar"] = intent.similar_to[0].name if intent.similar_to else None
    got["corrections"] = intent.corrections
    problems = []
    for key, want in expected.items():
        have = got[key]
        if key in SUBSET_KEYS:
            ok = set(want) <= set(have)
        elif isinstance(want, list):
            ok = set(want) == set(have)
        else:
            ok = want == have
        if not ok:
            problems.append(f"{key}: expected {want!r}, parsed {have!r}")
    if expected.get("answerable", True) and not intent.answerable:
        problems.append(f"unanswerable: {intent.reason}")
    return problems


def test_the_query_set_has_at_least_60_requests():
    assert len(QUERIES) >= 60


@pytest.mark.parametrize(("text", "expected"), QUERIES, ids=[q or "<empty>" for q, _ in QUERIES])
def test_request_parses_to_the_expected_constraints(text, expected):
    assert check(text, expected) == []


def test_unknown_words_are_reported_not_fatal():
    intent = parse("a zorblax comedy", VOCAB)
    assert intent.answerable and intent.genres_any == ["genre:comedy"]
    assert "zorblax" in intent.unknown


def test_unanswerable_says_why():
    intent = parse("what is the weather in Paris", VOCAB)
    assert not intent.answerable and "nothing in the request" in intent.reason
    intent = parse("a comedy but no comedy", VOCAB)
    assert not intent.answerable and "genre:comedy" in intent.reason


def test_an_unknown_title_is_noted():
    intent = parse("something like Zebra Quartz", VOCAB)
    assert not intent.similar_to and any("Zebra" in n or "zebra" in n for n in intent.notes)


def test_parse_is_pure():
    a = parse("no horror, under 2 hours, for the kids", VOCAB).to_dict()
    b = parse("no horror, under 2 hours, for the kids", VOCAB).to_dict()
    assert a == b
