"""The producer client other services import to send events and catalog records.

Idempotent aiokafka producer, keyed by ``user_id`` (events) or ``title_id``
(catalog), batched by the client's linger. Events are validated against the
contract before they leave, so a producer sees its mistake as a
:class:`~streams.contract.ContractError` instead of a dead letter.

    async with EventProducer(Settings.from_env()) as producer:
        await producer.send({"event_id": "e1", "user_id": "u1", ...})
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from features.catalog import parse_title
from streams.contract import validate_event
from streams.settings import Settings

Headers = list[tuple[str, bytes]]


class EventProducer:
    def __init__(self, settings: Settings, *, linger_ms: int = 5, validate: bool = True) -> None:
        self.settings = settings
        self.validate = validate
        self._producer = AIOKafkaProducer(
            **settings.kafka_client_kwargs(),
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            max_batch_size=256 * 1024,
            compression_type=settings.compression_type,
        )
        self._pending: list[asyncio.Future[Any]] = []
        self.sent = 0

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        try:
            await self.flush()
        finally:
            await self._producer.stop()

    async def send_raw(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> None:
        """Send bytes as they are (tests use it for malformed records)."""
        self._pending.append(await self._producer.send(topic, value, key=key, headers=headers))
        self.sent += 1
        if len(self._pending) >= 10_000:
            await self.flush()

    async def send(self, event: dict[str, Any], headers: Headers | None = None) -> None:
        """Validate and send one event, keyed by its user.

        ``headers`` may carry a W3C ``traceparent``: the score message the event triggers
        carries it on (docs/event-contract.md).
        """
        if self.validate:
            validate_event(event)
        await self.send_raw(
            self.settings.events_topic, event["user_id"].encode(), orjson.dumps(event), headers
        )

    async def send_envelope(
        self, events: list[dict[str, Any]], headers: Headers | None = None
    ) -> None:
        """Send several events of one user as one record: ``{"v": 1, "events": [...]}``."""
        users = {e["user_id"] for e in events}
        if len(users) != 1:
            raise ValueError("an envelope holds the events of exactly one user")
        if self.validate:
            for e in events:
                validate_event(e)
        await self.send_raw(
            self.settings.events_topic,
            users.pop().encode(),
            orjson.dumps({"v": 1, "events": events}),
            headers,
        )

    async def send_titles(self, records: Iterable[dict[str, Any]]) -> int:
        """Publish catalog records, keyed by title, to the compacted catalog topic."""
        n = 0
        for rec in records:
            title = parse_title(rec)
            await self.send_raw(
                self.settings.catalog_topic, title.title_id.encode(), orjson.dumps(rec)
            )
            n += 1
        return n

    async def send_results(self, records: Iterable[dict[str, Any]]) -> int:
        """Publish released titles' 28-day results, keyed by title, to the title-results
        topic every worker's forecaster learns from; each is validated first."""
        from online_models.forecast import parse_result

        n = 0
        for rec in records:
            tid, attrs, audience = parse_result(rec)
            doc = {"title_id": tid, "attributes": attrs, "audience": audience}
            await self.send_raw(self.settings.title_results_topic, tid.encode(), orjson.dumps(doc))
            n += 1
        return n

    async def flush(self) -> None:
        """Wait until every record sent so far is acknowledged by the broker."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)
