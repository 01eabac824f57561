"""Every worker follows ``<app_id>-title-results``: released titles' 28-day results.

Each record (key: title id) is one released title's result in the forecaster's
ledger format, ``{"title_id", "attributes", "audience": {region: viewers}}``
(:func:`online_models.forecast.parse_result`), published by ``reelstream forecast
publish``. The follower waits until the worker's forecaster state file is loaded
(or refused), then hands each result to it: the greenlight forecaster learns the
titles it does not know yet, in topic order (one partition, so every worker learns
them in the same order). A malformed record, or one whose regions differ from the
model's, is dead-lettered with its reason and the follower moves on.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import orjson
from aiokafka import ConsumerRecord

from online_models.forecast import ForecastInputError, parse_result
from streams.adapters.topic_follower import CompactedTopicFollower, Reject
from streams.contract import Rejection
from streams.metrics import FORECAST_RESULTS
from streams.settings import Settings


class ResultSink(Protocol):
    settled: asyncio.Event

    def learn(self, title_id: str, attrs: dict[str, Any], audience: dict[str, float]) -> str: ...


class ResultsFollower(CompactedTopicFollower):
    def __init__(self, settings: Settings, sink: ResultSink, reject: Reject | None = None) -> None:
        super().__init__(settings, settings.title_results_topic, reject)
        self.sink = sink

    def apply(self, key: bytes | None, value: bytes | None) -> Rejection | None:
        if value is None:  # a tombstone: a result once learned stays learned
            return None
        try:
            tid, attrs, audience = parse_result(orjson.loads(value))
        except orjson.JSONDecodeError as exc:
            return Rejection("invalid_json", str(exc)[:200])
        except ForecastInputError as exc:
            return Rejection("bad_result", exc.detail[:200])
        if key is not None and key.decode("utf-8", "replace") != tid:
            return Rejection("bad_result", f"key {key[:40]!r} is not the title id {tid}")
        outcome = self.sink.learn(tid, attrs, audience)
        FORECAST_RESULTS.labels(outcome=outcome).inc()
        if outcome == "regions":
            return Rejection("bad_result", f"{tid}: regions differ from the forecaster's")
        return None

    def on_record(self, record: ConsumerRecord) -> Rejection | None:
        return self.apply(record.key, record.value)

    async def run(self) -> None:
        await self.sink.settled.wait()
        await super().run()
