"""Faust's aiokafka transport with a shorter fetch wait for the group consumer.

Faust hard-codes ``fetch_max_wait_ms=1500``. When the worker falls briefly behind,
fetches for quiet partitions wait out those 1.5 s and freshness sits on a
1-1.7 s plateau; with 100 ms, p99 at half load fell from 1.6 s to 0.1-0.5 s
(docs/performance.md). Selected by the broker URL scheme ``reelstream+kafka://``.
"""

from __future__ import annotations

from typing import Any

from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "reelstream+kafka"


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    fetch_max_wait_ms = 100

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its Fetcher in start(), which has not run yet.
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


def install(fetch_max_wait_ms: int) -> str:
    """Register the scheme; returns the broker URL prefix to use."""
    _ConsumerThread.fetch_max_wait_ms = fetch_max_wait_ms
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
    return f"{SCHEME}://"
