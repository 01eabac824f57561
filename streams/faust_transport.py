"""Faust's aiokafka transport with two fixes: a shorter fetch wait, complete producer metadata.

Fetch wait: Faust hard-codes ``fetch_max_wait_ms=1500``. When the worker falls briefly behind,
fetches for quiet partitions wait out those 1.5 s and freshness sits on a
1-1.7 s plateau; with 100 ms, p99 at half load fell from 1.6 s to 0.1-0.5 s
(docs/performance.md). Producer metadata: see :class:`Producer`. Selected by the
broker URL scheme ``reelstream+kafka://``.
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


class Producer(faust_aiokafka.Producer):
    """Keeps every topic it sends to in the aiokafka client's metadata topic list.

    aiokafka's client starts with an empty list, which means "all topics": a send to a
    topic already in that first answer never adds it to the list. Once any topic is added
    (a send to a topic created later, such as this app's title snapshots), each refresh
    asks for the listed topics only and *replaces* the cluster metadata, so unlisted
    topics (scores, changelogs) vanish from it. Batches already queued for them then have
    no known leader; the sender keeps forcing refreshes that never ask for their topic,
    and ``flush()`` (ours after each batch, Faust's before a commit or on revoke) waits
    forever: the two-worker stall (docs/performance.md). Listing each topic before its
    first send keeps it in every refresh.
    """

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        producer = self._producer
        if producer is not None and topic not in producer.client._topics:
            producer.client.add_topic(topic)  # schedules a refresh; the send waits if needed
        return await super().send(topic, *args, **kwargs)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer


def install(fetch_max_wait_ms: int) -> str:
    """Register the scheme; returns the broker URL prefix to use."""
    _ConsumerThread.fetch_max_wait_ms = fetch_max_wait_ms
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
    return f"{SCHEME}://"
