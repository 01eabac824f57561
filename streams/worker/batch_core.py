"""One batch of event records in, everything to publish out: the worker's per-batch logic.

Free of I/O so the events agent and the unit tests run the same code: the agent moves
records in and the result out (dead letters, title records, scores, feature writes);
this module decides what they are. Rules kept here, in order of the record stream:

- a record the models already hold (``hooks.admit`` is False) is skipped entirely;
- a stand-in for an undecodable batch (:mod:`streams.poison`) becomes a dead letter;
- each contract rejection, in a record or inside an envelope, becomes a dead letter;
- an event whose handling raises becomes a ``processing_error`` dead letter, and the
  rest of the batch goes on;
- duplicates are counted and dropped, late and future events dead-lettered;
- each touched user is refreshed once per batch, at the latest triggering event time
  (debounce), carrying the ``traceparent`` of the last traced record that triggered it;
- with experiments on, each admitted event and each score message's arms feed the
  per-arm sums of the event's partition (``engine.experiment_fold``), and for bandit
  experiments the per-batch units with the shares in force (their propensities).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from features.event_gate import DUPLICATE, OK
from online_models.engine import Engine
from streams import poison
from streams.contract import Rejection, decode_record, traceparent


class RecordHooks(Protocol):
    """What the worker's durability and table layer need to see of each record."""

    def admit(self, msg: Any) -> bool: ...

    def bind(self, event: Any) -> None: ...

    def before_event(self, msg: Any, user_id: str) -> None: ...

    def reordered(self, msg: Any, user_id: str) -> bool:
        """Whether the consumer handed this record over after later ones of its partition
        (this process's, or those already folded into the user's stored row): its event
        time then says nothing about the producer's lateness."""
        ...


class Health(Protocol):
    def play(self, user_id: str, title_id: str) -> None: ...

    def served(self, user_id: str, title_ids: list[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A refused record or event with its coordinates; ``raw`` is None for a stand-in."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes | None
    rejection: Rejection


@dataclass(frozen=True, slots=True)
class Score:
    user_id: str
    blob: bytes
    event_ts: int
    trace: str | None


@dataclass
class BatchOutput:
    dead_letters: list[DeadLetter] = field(default_factory=list)
    title_records: list[tuple[bytes, bytes]] = field(default_factory=list)  # (title key, record)
    scores: list[Score] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    consumed: Counter[str] = field(default_factory=Counter)  # valid events by type
    updated: Counter[str] = field(default_factory=Counter)  # events that changed state
    rejected: Counter[str] = field(default_factory=Counter)  # events_rejected by reason
    time_rejects: Counter[str] = field(default_factory=Counter)
    # partition -> latest event time admitted (the expiry sweep's clock, worker/expiry.py)
    event_time: dict[int, int] = field(default_factory=dict)
    duplicates: int = 0
    debounced: int = 0
    feature_s: float = 0.0


def process_batch(
    events: list[Any],
    engine: Engine,
    hooks: RecordHooks,
    health: Health,
    now_ms: int | None,
    score: bool = True,
) -> BatchOutput:
    """Fold a batch of Faust events (``.message``, ``.value``) into the engine.

    ``now_ms`` is the wall clock (None: judge by event time only, as ``reelstream replay``
    does); ``score=False`` leaves out the score messages (the replay asks for its own
    lists, before each play, and publishes nothing).
    """
    out = BatchOutput()
    refresh: dict[str, int] = {}
    traces: dict[str, str] = {}
    fold = engine.experiment_fold
    partition_of: dict[str, int] = {}
    for event in events:
        msg = event.message
        if not hooks.admit(msg):
            continue
        unreadable = poison.rejection(msg.headers)
        if unreadable is not None:
            out.dead_letters.append(_dead(msg, None, unreadable))
            continue
        decoded, rejects = decode_record(event.value)
        for rej in rejects:
            out.rejected[rej.reason] += 1
            out.dead_letters.append(_dead(msg, event.value, rej))
        trace = traceparent(msg.headers)
        hooks.bind(event)
        for idx, ev in enumerate(decoded):
            etype, uid = ev["event_type"], ev["user_id"]
            try:
                out.consumed[etype] += 1
                hooks.before_event(msg, uid)
                if etype == "play":
                    health.play(uid, ev["title_id"])
                t0 = time.perf_counter()
                res = engine.ingest(ev, now_ms, hooks.reordered(msg, uid))
                out.feature_s += time.perf_counter() - t0
            except Exception as exc:  # one event's failure must not stop the partition
                out.rejected[poison.PROCESSING_ERROR] += 1
                out.dead_letters.append(_dead(msg, orjson.dumps(ev), poison.processing_error(exc)))
                continue
            if res.status != OK:
                if res.status == DUPLICATE:
                    out.duplicates += 1
                else:
                    out.time_rejects[res.status] += 1
                    out.rejected[res.status] += 1
                    detail = (
                        f"event_id={ev['event_id']} ts={ev['ts']} "
                        "(allowed lateness 1 h, future 5 min)"
                    )
                    out.dead_letters.append(
                        _dead(msg, orjson.dumps(ev), Rejection(res.status, detail))
                    )
                continue
            out.updated[etype] += 1
            out.touched.add(uid)
            if ev["ts"] > out.event_time.get(msg.partition, -1):
                out.event_time[msg.partition] = ev["ts"]
            if fold is not None:
                fold.observe(ev)
                partition_of[uid] = msg.partition
            if res.title_record is not None:
                # The source position makes the title side idempotent under replays.
                res.title_record["src"] = (msg.partition, msg.offset, idx)
                out.title_records.append((ev["title_id"].encode(), orjson.dumps(res.title_record)))
            if res.refresh:
                if uid in refresh:
                    out.debounced += 1
                refresh[uid] = max(ev["ts"], refresh.get(uid, 0))
                if trace is not None:
                    traces[uid] = trace
    if not score:
        return out
    served_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    for uid, ev_ts in refresh.items():
        scored = engine.score_message(uid, ev_ts, served_ms)
        trace = traces.get(uid)
        if trace is not None:
            scored["traceparent"] = trace
        health.served(uid, [it["title_id"] for it in scored["items"][:10]])
        if fold is not None and uid in partition_of:
            pre_s = engine.profile(uid).features.watch_s
            assigner = engine.experiments
            units = assigner.bandit_units(uid) if assigner and assigner.allocations else ()
            fold.expose(uid, scored["experiment_arm"], partition_of[uid], pre_s, served_ms, units)
        out.scores.append(Score(uid, orjson.dumps(scored), ev_ts, trace))
    return out


def _dead(msg: Any, raw: bytes | None, rej: Rejection) -> DeadLetter:
    return DeadLetter(msg.topic, msg.partition, msg.offset, msg.key, raw, rej)
