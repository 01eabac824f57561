"""The worker's per-batch logic (streams/worker/batch_core.py) without Kafka, real engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from online_models.engine import Engine
from streams import poison
from streams.tools.synthetic import SimConfig, Simulation
from streams.worker.batch_core import process_batch

TS = 1_767_571_200_000
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class FakeEvent:
    """A unit-test stand-in for a Faust event: ``.message`` and ``.value``."""

    message: FakeMessage
    value: bytes | None


class RecordingHooks:
    def __init__(self, skip: set[int] | None = None, reordered: set[int] | None = None) -> None:
        self.skip = skip or set()
        self.reordered_offsets = reordered or set()
        self.bound: list[int] = []
        self.seen: list[tuple[int, str]] = []

    def admit(self, msg: Any) -> bool:
        return msg.offset not in self.skip

    def bind(self, event: Any) -> None:
        self.bound.append(event.message.offset)

    def reordered(self, msg: Any, user_id: str) -> bool:
        return msg.offset in self.reordered_offsets

    def before_event(self, msg: Any, user_id: str) -> None:
        self.seen.append((msg.offset, user_id))


class NoHealth:
    def play(self, user_id: str, title_id: str) -> None:
        pass

    def served(self, user_id: str, title_ids: list[str]) -> None:
        pass


@pytest.fixture
def engine() -> Engine:
    sim = Simulation(SimConfig(users=10, titles=30, seed=3))
    return Engine(catalog=sim.title_catalog())


def play(i: int, user: str = "u1", title: str = "t00001", ts: int = TS) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "user_id": user,
        "title_id": title,
        "event_type": "play",
        "ts": ts,
        "position_s": 0,
    }


def records(*values: Any, headers: list | None = None) -> list[FakeEvent]:
    out = []
    for off, v in enumerate(values):
        raw = v if isinstance(v, bytes) or v is None else orjson.dumps(v)
        out.append(FakeEvent(FakeMessage("events", 2, off, b"u1", list(headers or [])), raw))
    return out


def run(engine: Engine, batch: list[FakeEvent], hooks: RecordingHooks | None = None):
    return process_batch(batch, engine, hooks or RecordingHooks(), NoHealth(), TS + 60_000)


def test_one_refresh_per_user_per_batch_at_the_latest_event_time(engine):
    out = run(engine, records(play(1, ts=TS), play(2, ts=TS + 500), play(3, user="u2")))
    assert sorted(s.user_id for s in out.scores) == ["u1", "u2"]
    assert out.debounced == 1
    by_user = {s.user_id: s for s in out.scores}
    assert by_user["u1"].event_ts == TS + 500
    assert orjson.loads(by_user["u1"].blob)["event_ts"] == TS + 500
    assert out.consumed["play"] == 3 and out.touched == {"u1", "u2"}


def test_envelope_keeps_good_events_and_dead_letters_the_bad_one_by_index(engine):
    envelope = {"v": 1, "events": [play(1), {**play(2), "ts": 12}, play(3, title="t00002")]}
    out = run(engine, records(envelope))
    assert [(d.rejection.reason, d.rejection.index) for d in out.dead_letters] == [
        ("bad_timestamp", 1)
    ]
    assert (out.dead_letters[0].partition, out.dead_letters[0].offset) == (2, 0)
    assert out.consumed["play"] == 2 and out.rejected["bad_timestamp"] == 1


def test_duplicates_are_counted_and_dropped(engine):
    out = run(engine, records(play(1), play(1), play(1)))
    assert out.duplicates == 2
    assert out.updated["play"] == 1 and out.dead_letters == []


def test_an_event_whose_handling_raises_is_dead_lettered_and_the_batch_goes_on(engine, monkeypatch):
    real = engine.ingest

    def ingest(ev, now_ms=None, reordered=False):
        if ev["event_id"] == "e2":
            raise ZeroDivisionError("boom")
        return real(ev, now_ms, reordered)

    monkeypatch.setattr(engine, "ingest", ingest)
    out = run(engine, records(play(1), play(2, user="u2"), play(3, user="u3")))
    assert [d.rejection.reason for d in out.dead_letters] == [poison.PROCESSING_ERROR]
    assert "ZeroDivisionError: boom" in out.dead_letters[0].rejection.detail
    assert orjson.loads(out.dead_letters[0].raw)["event_id"] == "e2"
    assert sorted(s.user_id for s in out.scores) == ["u1", "u3"]


def test_undecodable_stand_ins_and_schema_registry_records_become_dead_letters(engine):
    stand_in = records(None, headers=[poison.header(poison.UNSUPPORTED_CODEC, "lz4 missing")])
    framed = records(b"\x00\x00\x00\x00\x07{}")
    framed[0].message.offset = 1
    out = run(engine, stand_in + framed + records(play(5)))
    assert [(d.offset, d.rejection.reason, d.raw) for d in out.dead_letters] == [
        (0, "unsupported_codec", None),
        (1, "schema_registry_framed", b"\x00\x00\x00\x00\x07{}"),
    ]
    assert out.consumed["play"] == 1


def test_records_the_models_already_hold_are_skipped_entirely(engine):
    hooks = RecordingHooks(skip={0})
    out = run(engine, records(play(1), play(2, user="u2")), hooks)
    assert hooks.bound == [1] and hooks.seen == [(1, "u2")]
    assert [s.user_id for s in out.scores] == ["u2"]


def test_traceparent_of_the_triggering_record_reaches_its_score(engine):
    traced = records(play(1), headers=[("traceparent", TRACE.encode())])
    untraced = records(play(2, user="u2"), headers=[("traceparent", b"garbage")])
    out = run(engine, traced + untraced)
    by_user = {s.user_id: s for s in out.scores}
    assert by_user["u1"].trace == TRACE == orjson.loads(by_user["u1"].blob)["traceparent"]
    assert by_user["u2"].trace is None and "traceparent" not in orjson.loads(by_user["u2"].blob)


def test_late_and_future_events_are_dead_lettered_with_their_reason(engine):
    hour = 3_600_000
    out = run(engine, records(play(1), play(2, ts=TS - 2 * hour), play(3, ts=TS + 10 * hour)))
    assert [d.rejection.reason for d in out.dead_letters] == ["too_late", "from_future"]
    assert out.time_rejects == {"too_late": 1, "from_future": 1}
    assert out.updated["play"] == 1


def test_a_record_the_consumer_reordered_is_not_judged_late(engine):
    """A handover can deliver a partition's later records first (seen on the real broker):
    the earlier ones are not late events, and must be counted, not dead-lettered."""
    hour = 3_600_000
    batch = records(play(1), play(2, ts=TS - 2 * hour), play(3, ts=TS - 2 * hour))
    out = run(engine, batch, RecordingHooks(reordered={1}))
    assert [(d.offset, d.rejection.reason) for d in out.dead_letters] == [(2, "too_late")]
    assert out.updated["play"] == 2


def test_the_latest_admitted_event_time_per_partition_is_reported(engine):
    """The expiry sweep's clock (streams/worker/expiry.py): admitted events only."""
    out = run(engine, records(play(1, ts=TS + 9), play(2, ts=TS + 3), play(1, ts=TS + 50)))
    assert out.event_time == {2: TS + 9}  # the third is a duplicate of the first
