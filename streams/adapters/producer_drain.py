"""Wait until everything handed to Faust's producer is with the broker.

Faust's ``Producer.flush`` drains its send buffer by waiting for one message at a
time, and returns as soon as 0.1 s pass without one being sent, messages still
buffered or not. Under load that left table changelog records in the buffer when a
batch's offsets were released for commit; a worker lost right then would commit
offsets whose rows never reached the changelog. :func:`drain` flushes again while
the buffer (``ProducerBufferT.size``, part of Faust's declared types) holds messages.
"""

from __future__ import annotations

from typing import Any


async def drain(producer: Any) -> int:
    """Flush until the producer's buffer is empty; returns how many flushes it took."""
    flushes = 1
    await producer.flush()
    while producer.buffer.size:
        await producer.flush()
        flushes += 1
    return flushes
