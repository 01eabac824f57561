"""Property-based fuzzing of the record decoder and the envelope path (hypothesis).

Whatever bytes arrive, :func:`decode_record` returns; every event it accepts passes the
validator again, every rejection has a known reason, an envelope accounts for each of its
items exactly once, and an accepted id can never break out of its Redis key.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import poison
from streams.contract import ID_RE, decode_record, validate_event

REASONS = {
    "empty_record",
    "too_large",
    "invalid_json",
    "not_an_object",
    "bad_envelope",
    "missing_field",
    "bad_id",
    "unknown_event_type",
    "bad_type",
    "bad_timestamp",
    "out_of_range",
    "bad_value",
    "bad_country",
    "unsupported_version",
    "schema_registry_framed",
}
FIELDS = ["event_id", "user_id", "title_id", "event_type", "ts", "position_s", "duration_s"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
plausible_ids = st.one_of(
    st.from_regex(ID_RE, fullmatch=True),
    st.text(max_size=20),  # control characters, separators, braces, empty
    st.integers(),
)
plausible_events = st.fixed_dictionaries(
    {},
    optional={
        "event_id": plausible_ids,
        "user_id": plausible_ids,
        "title_id": plausible_ids,
        "event_type": st.sampled_from(["play", "stop", "complete", "thumbs", "warp", "", None]),
        "ts": st.one_of(
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.integers(min_value=946_684_800_000, max_value=4_102_444_800_000),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(max_size=5),
        ),
        "position_s": st.one_of(
            st.floats(allow_nan=False, allow_infinity=False), st.integers(), st.text(max_size=3)
        ),
        "duration_s": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers()),
        "value": json_values,
        "country": st.one_of(st.text(max_size=3), st.none()),
        "v": st.one_of(st.just(1), st.integers(), st.text(max_size=2)),
    },
)


def encode(doc: object) -> bytes:
    """The stdlib encoder: unlike orjson it writes integers beyond 64 bits, as other
    producers may."""
    return json.dumps(doc).encode()


def check(raw: bytes) -> None:
    events, rejects = decode_record(raw)
    for ev in events:
        assert validate_event(dict(ev)) == ev
        for name in ("event_id", "user_id", "title_id"):
            assert ID_RE.match(ev[name]) and not any(c in ev[name] for c in "{}/ \n\r\t*?[]")
    for rej in rejects:
        assert rej.reason in REASONS, rej
        assert isinstance(rej.detail, str)
    assert events or rejects  # nothing vanishes without a word


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(raw):
    check(raw)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_never_raises(doc):
    check(encode(doc))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(plausible_events)
def test_near_miss_events_are_accepted_only_when_valid(ev):
    check(encode(ev))


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(plausible_events, min_size=1, max_size=20))
def test_an_envelope_accounts_for_each_item_once(items):
    events, rejects = decode_record(encode({"v": 1, "events": items}))
    assert len(events) + len(rejects) == len(items)
    assert sorted(r.index for r in rejects) == sorted(set(r.index for r in rejects))
    assert all(0 <= r.index < len(items) for r in rejects)


@settings(max_examples=100)
@given(st.binary(max_size=200), st.text(max_size=50))
def test_poison_header_verdicts_round_trip(detail_bytes, detail):
    header = poison.header(poison.CORRUPT_BATCH, detail + detail_bytes.hex())
    rej = poison.rejection([("other", detail_bytes), header])
    assert rej is not None and rej.reason == poison.CORRUPT_BATCH
