"""Each partition's records reach the agents in offset order, without holes.

The consumer adapter (streams/adapters/kafka_internals.py) hands records over in order,
but a record can still vanish between the consumer and an agent during a rebalance:
Faust's stream skips (and acks) a record fetched in an older consumer generation, and
clears its queues when flow resumes. A partition kept through the rebalance then went
on with later records; the missing ones were folded in late, out of order (the head-gap
re-read), or never, and order-dependent state (sessions, the title side's per-source
high-water mark) differed from an uninterrupted run (issue 11,
tests/integration/test_fault_join_leave.py).

:class:`PartitionOrder` sits at the agent: a record past its partition's next offset
opens a *hole*; it and the partition's later records are held (neither processed nor
acked) and the partition is read again from the hole, until the record at the hole
arrives or the consumer reports a real gap there (a transaction's markers). After a
rebalance each partition's next offset is where the consumer sought it. Pure
bookkeeping: the worker asks the consumer to read again.

>>> from collections import namedtuple
>>> Ev = namedtuple("Ev", "message"); Msg = namedtuple("Msg", "tp offset")
>>> o = PartitionOrder()
>>> batch = [Ev(Msg("e-2", off)) for off in (7, 8, 11, 12)]
>>> ready, held, again = o.split(batch, no_gap, now=0.0)
>>> [e.message.offset for e in ready], [e.message.offset for e in held], again
([7, 8], [11, 12], {'e-2': 9})
>>> ready, held, again = o.split([Ev(Msg("e-2", off)) for off in (9, 10, 11)], no_gap, 0.1)
>>> [e.message.offset for e in ready], held, again
([9, 10, 11], [], {})
"""

from __future__ import annotations

from collections.abc import Callable, Container, Hashable, Sequence
from typing import Any

#: Seconds a hole may wait for its records before the partition is read again once more
#: (the first request can be lost to a rebalance's own seek).
ASK_AGAIN_S = 2.0

# (partition, hole start, offset past it) -> whether the consumer reported a real gap
RealGap = Callable[[Hashable, int, int], bool]


def no_gap(tp: Hashable, start: int, end: int) -> bool:
    return False


def of_assigned(batch: Sequence[Any], assigned: Container[Hashable]) -> tuple[list, list]:
    """(events of partitions this worker holds, events of partitions it no longer holds).

    Faust's ``take_events`` buffer outlives a rebalance: a batch gathered before a
    revocation still holds records of the revoked partitions. Folded in after the
    revocation's final checkpoint they were written to rows, changelog and Redis beside
    the new owner's (Faust then discards their commit), a split brain over those users.
    ``assigned`` leaves out partitions whose revocation has begun; their records are read
    again from the commit by whoever holds them after the rebalance.

    >>> from collections import namedtuple
    >>> Ev = namedtuple("Ev", "message"); Msg = namedtuple("Msg", "tp offset")
    >>> mine, gone = of_assigned([Ev(Msg("e-1", 5)), Ev(Msg("e-2", 9))], {"e-2"})
    >>> [e.message.tp for e in mine], [e.message.tp for e in gone]
    (['e-2'], ['e-1'])
    """
    mine: list[Any] = []
    gone: list[Any] = []
    for event in batch:
        (mine if event.message.tp in assigned else gone).append(event)
    return mine, gone


class PartitionOrder:
    """The next offset each partition's agent expects, and the holes it waits on."""

    def __init__(self) -> None:
        self.next: dict[Hashable, int] = {}
        self.holes: dict[Hashable, int] = {}  # partition -> first missing offset
        self.asked: dict[Hashable, float] = {}  # partition -> when it was last read again

    def split(
        self, batch: Sequence[Any], real_gap: RealGap, now: float
    ) -> tuple[list[Any], list[Any], dict[Hashable, int]]:
        """(events to process, events held, partitions to read again from an offset)."""
        ready: list[Any] = []
        held: list[Any] = []
        again: dict[Hashable, int] = {}
        for event in batch:
            msg = event.message
            tp, off = msg.tp, msg.offset
            hole = self.holes.get(tp)
            if hole is not None:
                if off > hole and not real_gap(tp, hole, off):
                    held.append(event)
                    if now - self.asked.get(tp, now) >= ASK_AGAIN_S:
                        again[tp] = hole
                        self.asked[tp] = now
                    continue
                if off >= hole:  # the missing record, or a real gap: in order again
                    del self.holes[tp]
                    self.asked.pop(tp, None)
            nxt = self.next.get(tp)
            if nxt is not None and off > nxt and not real_gap(tp, nxt, off):
                self.holes[tp] = nxt
                self.asked[tp] = now
                again[tp] = nxt
                held.append(event)
                continue
            if nxt is None or off >= nxt:
                self.next[tp] = off + 1
            ready.append(event)  # below ``nxt``: read again, the gates drop what was learned
        return ready, held, again

    def floor(self, committed: dict[Hashable, int]) -> None:
        """Nothing below a partition's committed offset is missing: it was processed, here
        or by the partition's previous owner. A next offset left from an earlier
        assignment must not ask for those records again (the models would learn them a
        second time)."""
        for tp, at in committed.items():
            nxt = self.next.get(tp)
            if nxt is not None and nxt < at:
                self.next[tp] = at
            hole = self.holes.get(tp)
            if hole is not None and hole < at:
                del self.holes[tp]
                self.asked.pop(tp, None)

    def forget(self) -> None:
        """A revocation: every partition restarts where the rebalance seeks it."""
        self.next.clear()
        self.holes.clear()
        self.asked.clear()

    def seeked(self, positions: dict[Hashable, int | None]) -> None:
        """The consumer sought these partitions (a rebalance restarts each at its commit):
        the next offset is the position (None: unknown, the next record sets it). Records
        fetched before the seek that still arrive past it are held like a hole's."""
        for tp, at in positions.items():
            self.holes.pop(tp, None)
            self.asked.pop(tp, None)
            if at is None:
                self.next.pop(tp, None)
            else:
                self.next[tp] = at
