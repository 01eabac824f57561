"""Every worker follows ``<app_id>-experiment-allocation``: bandit shares and kill switches.

One partition, compacted, two kinds of keys per bandit experiment
(online_models/bandit_live.py): ``allocation/<id>`` holds the latest batch's
``{experiment, batch, shares, killed, as_of}``, written by the allocating worker (the
owner of events partition 0); ``switch/<id>`` holds the operator's kill switch,
written by ``reelstream experiments kill|resume``. Separate keys, so a batch the
allocator publishes never overwrites the operator's switch. Each record is checked
against the experiments file (ids from the file only, shares that sum to 1 and
respect the minimum share) and handed to the worker's ``Assigner``; a refused one is
dead-lettered with its reason. ``ready`` is set once the topic is read to its end at
start: the events agent waits for it, so a restarted worker never assigns with
stale shares.
"""

from __future__ import annotations

import orjson
from aiokafka import ConsumerRecord

from online_models.bandit_live import Allocation, parse_record
from online_models.experiments import Assigner
from streams.adapters.topic_follower import CompactedTopicFollower, Reject
from streams.contract import Rejection
from streams.settings import Settings


class AllocationFollower(CompactedTopicFollower):
    def __init__(
        self, settings: Settings, assigner: Assigner, reject: Reject | None = None
    ) -> None:
        super().__init__(settings, settings.experiment_allocation_topic, reject)
        self.assigner = assigner

    def apply(self, key: bytes | None, value: bytes | None) -> Rejection | None:
        if value is None:  # a tombstone: the last record stays in force
            return None
        if not key:
            return Rejection(
                "missing_key", "an allocation record needs allocation/<id> or switch/<id>"
            )
        try:
            rec = parse_record(
                key.decode("utf-8", "replace"), orjson.loads(value), self.assigner.experiments
            )
        except orjson.JSONDecodeError as exc:
            return Rejection("invalid_json", str(exc)[:200])
        except ValueError as exc:
            return Rejection("bad_allocation", str(exc)[:200])
        if isinstance(rec, Allocation):
            self.assigner.set_allocation(rec)
        else:
            self.assigner.set_switch(rec.experiment, rec.killed)
        return None

    def on_record(self, record: ConsumerRecord) -> Rejection | None:
        return self.apply(record.key, record.value)
