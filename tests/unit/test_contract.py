import orjson
import pytest

from streams.contract import ContractError, Rejection, dead_letter, decode_record, validate_event


def ev(**over):
    base = {
        "event_id": "e1",
        "user_id": "u1",
        "title_id": "t1",
        "event_type": "progress",
        "ts": 1_767_571_200_000,
        "position_s": 120.0,
        "duration_s": 3000,
    }
    base.update(over)
    return base


def reason_of(raw: bytes) -> str:
    events, rejects = decode_record(raw)
    assert events == []
    assert len(rejects) == 1
    return rejects[0].reason


def test_valid_event_passes_and_unknown_fields_are_kept():
    events, rejects = decode_record(orjson.dumps(ev(extra_field={"x": 1})))
    assert rejects == []
    assert events[0]["extra_field"] == {"x": 1}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty_record"),
        (b"{not json", "invalid_json"),
        (b"[1,2]", "not_an_object"),
        (orjson.dumps({k: v for k, v in ev().items() if k != "ts"}), "missing_field"),
        (orjson.dumps(ev(user_id="u 1")), "bad_id"),
        (orjson.dumps(ev(user_id="a}b")), "bad_id"),
        (orjson.dumps(ev(user_id="../etc/passwd")), "bad_id"),
        (orjson.dumps(ev(event_type="teleport")), "unknown_event_type"),
        (orjson.dumps(ev(ts=1_767_571_200)), "bad_timestamp"),
        (orjson.dumps(ev(ts="1767571200000")), "bad_type"),
        (orjson.dumps(ev(ts=True)), "bad_type"),
        (orjson.dumps(ev(position_s=-1)), "out_of_range"),
        (orjson.dumps(ev(position_s=5000)), "out_of_range"),
        (orjson.dumps({k: v for k, v in ev().items() if k != "position_s"}), "missing_field"),
        (orjson.dumps(ev(event_type="thumbs", value=5)), "bad_value"),
        (orjson.dumps(ev(country="fr")), "bad_country"),
        (orjson.dumps(ev(device="x" * 40)), "bad_type"),
        (orjson.dumps(ev(v=2)), "unsupported_version"),
        (b"x" * 300_000, "too_large"),
    ],
)
def test_rejections_carry_a_machine_readable_reason(raw, reason):
    assert reason_of(raw) == reason


def test_envelope_keeps_valid_events_and_rejects_bad_ones_by_index():
    batch = [ev(event_id="a"), ev(event_id="b", ts=5), ev(event_id="c")]
    raw = orjson.dumps({"v": 1, "events": batch})
    events, rejects = decode_record(raw)
    assert [e["event_id"] for e in events] == ["a", "c"]
    assert rejects == [Rejection("bad_timestamp", rejects[0].detail, 1)]


@pytest.mark.parametrize("doc", [{"events": []}, {"events": "x"}, {"v": 9, "events": [ev()]}])
def test_bad_envelopes_are_rejected_whole(doc):
    assert reason_of(orjson.dumps(doc)) in {"bad_envelope", "unsupported_version"}


def test_validate_event_raises_for_producers():
    with pytest.raises(ContractError) as info:
        validate_event(ev(event_type="nope"))
    assert info.value.reason == "unknown_event_type"


def test_dead_letter_keeps_original_bytes_reason_and_origin():
    raw = b'{"event_id": "x"}'
    rec = orjson.loads(
        dead_letter(
            raw,
            Rejection("missing_field", "user_id is required"),
            topic="t",
            partition=2,
            offset=7,
            now_ms=123,
        )
    )
    assert rec["original"] == raw.decode()
    assert rec["reason"] == "missing_field"
    assert rec["rejected_at"] == 123
    assert rec["source"] == {"topic": "t", "partition": 2, "offset": 7}


def test_dead_letter_base64_for_binary():
    rec = orjson.loads(
        dead_letter(
            b"\xff\xfe", Rejection("invalid_json", "x"), topic="t", partition=0, offset=0, now_ms=0
        )
    )
    assert rec["original_encoding"] == "base64"
    assert rec["original"] == "//4="
