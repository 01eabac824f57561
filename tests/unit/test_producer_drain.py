"""drain() keeps flushing while Faust's buffer holds messages (a unit test: a stand-in
producer whose flush, like Faust's under load, gives up before the buffer is empty)."""

from __future__ import annotations

import asyncio

from streams.adapters.producer_drain import drain


class _Buffer:
    def __init__(self, size: int) -> None:
        self.size = size


class _GivesUpEarly:
    """Each flush sends at most two messages, then returns (Faust's 0.1 s give-up)."""

    def __init__(self, buffered: int) -> None:
        self.buffer = _Buffer(buffered)
        self.sent = 0

    async def flush(self) -> None:
        n = min(2, self.buffer.size)
        self.buffer.size -= n
        self.sent += n


def test_drain_flushes_until_the_buffer_is_empty() -> None:
    producer = _GivesUpEarly(buffered=7)
    flushes = asyncio.run(drain(producer))
    assert producer.buffer.size == 0
    assert producer.sent == 7
    assert flushes == 4


def test_drain_of_an_empty_buffer_flushes_once() -> None:
    producer = _GivesUpEarly(buffered=0)
    assert asyncio.run(drain(producer)) == 1
