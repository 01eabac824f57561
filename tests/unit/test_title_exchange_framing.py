"""The worker side of the sharded exchange without a broker: what it sends, reassembled by
the aggregating and the following sides exactly as they read it from Kafka."""

from __future__ import annotations

import numpy as np
import pytest

from online_models.engine import Engine
from streams.adapters.kafka_admin import kafka_partition
from streams.adapters.title_exchange import TitleFactorExchange
from streams.settings import Settings
from streams.tools.synthetic import SimConfig, Simulation

SHARDS = 3


class Wire:
    """The records sent, per topic, in order (what a broker would hold)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes, int | None]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes, part: int | None) -> None:
        self.records.append((topic, key, value, part))

    def take(self, topic: str) -> list[tuple[bytes, bytes, int]]:
        out = [(k, v, p) for t, k, v, p in self.records if t == topic]
        self.records = [r for r in self.records if r[0] != topic]
        return out


@pytest.fixture
def pair():
    sim = Simulation(SimConfig(users=40, titles=30, seed=3))
    wire = Wire()
    engines, sides = [], []
    for w in ("wa", "wb"):
        settings = Settings(worker_id=w, partitions=SHARDS, app_id="unit")
        engine = Engine(catalog=sim.title_catalog())
        engines.append(engine)
        sides.append(TitleFactorExchange(settings, engine, wire.send))
    for ev in sim.events(limit=1500):
        engines[kafka_partition(ev["user_id"], 2)].ingest(ev)
    return wire, engines, sides


def mass(model, to):
    return model.raw(None) * np.exp((model.clock.ref_ts - to.clock.ref_ts) * to.clock.inv_tau)


async def test_contributions_and_snapshots_travel_by_shard_and_are_merged(pair):
    wire, (ea, eb), (a, b) = pair
    settings = a.settings
    owner = {0: a, 1: b, 2: a}  # the holders of title-events partitions 0, 1, 2
    for s, side in owner.items():
        side.contributions.gain(s, end=0)
    for side in (a, b):
        await side.tick(owned=None)  # nothing to merge yet; publishes its contribution
    # a gained shard is snapshotted once caught up, folded or not
    first = wire.take(settings.title_global_topic)
    assert sorted(p for k, _, p in first if k.endswith(b"/m")) == list(range(SHARDS))
    contributions = wire.take(settings.title_contributions_topic)
    manifests = sorted((k.decode(), p) for k, _, p in contributions if k.endswith(b"/m"))
    assert manifests == [(f"{w}/m", s) for w in ("wa", "wb") for s in range(SHARDS)]
    for key, value, part in contributions:  # each partition read by its aggregator
        assert owner[part].contributions.apply(part, key, value) is None
    assert all(len(owner[s].contributions.aggregators[s].included) == 2 for s in owner)
    for side in (a, b):
        await side.publish_snapshots()
    snapshots = wire.take(settings.title_global_topic)
    assert sorted(p for k, _, p in snapshots if k.endswith(b"/m")) == list(range(SHARDS))
    for side in (a, b):
        for key, value, _ in snapshots:
            assert side.snapshots.apply(key, value) is None
        assert side.merge_inbox() == SHARDS
    assert a.exchange.peers() == {"wb"} and b.exchange.peers() == {"wa"}
    pa, pb = ea.models.popular, eb.models.popular
    np.testing.assert_allclose(mass(pb, pa), pa.raw(None), rtol=1e-9)
    assert not [r for r in wire.records if r[0] == settings.title_global_topic]
    # nothing new folded: no snapshot is sent again
    assert await a.publish_snapshots() == 0 and await b.publish_snapshots() == 0
    # a record that is not one is refused, not folded
    assert a.contributions.apply(0, b"wb/m", b"junk") is not None
    assert a.snapshots.apply(b"0/m", b"{}") is not None
