"""The agents' per-partition order (streams/worker/offset_order.py): holes are held and
read again, real gaps and reads again go through."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka import TopicPartition
from faust.types import TP as FaustTP

from streams.worker.offset_order import ASK_AGAIN_S, PartitionOrder, no_gap, of_assigned

TP = ("events", 2)


def events(*offsets, tp=TP):
    return [SimpleNamespace(message=SimpleNamespace(tp=tp, offset=o)) for o in offsets]


def offsets(evs):
    return [e.message.offset for e in evs]


def test_records_past_a_hole_are_held_until_the_partition_is_read_again_in_order():
    # As seen in test_fault_join_leave (2026-12-05): a kept partition restarted at 2537,
    # 2543-2550 never reached the agent, 2551 on did.
    order = PartitionOrder()
    order.seeked({TP: 2537})
    ready, held, again = order.split(events(*range(2537, 2543), 2551, 2552), no_gap, 0.0)
    assert offsets(ready) == list(range(2537, 2543))
    assert offsets(held) == [2551, 2552] and again == {TP: 2543}
    # Records still on their way are held too, without asking again at once ...
    ready, held, again = order.split(events(2553), no_gap, 0.5)
    assert ready == [] and offsets(held) == [2553] and again == {}
    # ... and asked again once the hole has waited ASK_AGAIN_S.
    _, _, again = order.split(events(2554), no_gap, 0.5 + ASK_AGAIN_S)
    assert again == {TP: 2543}
    # The read from 2543: everything in order.
    ready, held, again = order.split(events(*range(2543, 2556)), no_gap, 3.0)
    assert offsets(ready) == list(range(2543, 2556)) and held == [] and again == {}
    assert order.holes == {}


def test_a_gap_the_consumer_reported_goes_through():
    order = PartitionOrder()
    order.seeked({TP: 10})
    gaps = {(10, 14)}  # e.g. a transaction's markers: [10, 14) never arrive

    def real(tp, start, end):
        return any(a <= start and end <= b for a, b in gaps)

    ready, held, again = order.split(events(14, 15), real, 0.0)
    assert offsets(ready) == [14, 15] and held == [] and again == {}
    # The same gap found only after a hole was opened (reported by the read again).
    order2 = PartitionOrder()
    order2.seeked({TP: 10})
    assert order2.split(events(14), no_gap, 0.0)[2] == {TP: 10}
    ready, held, _ = order2.split(events(14, 15), real, 0.1)
    assert offsets(ready) == [14, 15] and order2.holes == {}


def test_reads_again_below_the_next_offset_go_through_and_do_not_move_it_back():
    order = PartitionOrder()
    ready, _, _ = order.split(events(5, 6, 7), no_gap, 0.0)  # no seek known: 5 is the base
    ready, held, again = order.split(events(3, 4, 5, 6, 7, 8), no_gap, 0.1)
    assert offsets(ready) == [3, 4, 5, 6, 7, 8] and held == [] and again == {}
    assert order.next[TP] == 9


def test_a_rebalance_seek_resets_the_partition_and_holds_records_fetched_before_it():
    order = PartitionOrder()
    order.split(events(*range(100, 120)), no_gap, 0.0)
    order.seeked({TP: 110, ("events", 3): None})
    # 125-126 were fetched before the seek back to 110: held, read again from 110.
    ready, held, again = order.split(events(125, 126, 110, 111), no_gap, 0.1)
    assert offsets(held) == [125, 126] and offsets(ready) == [110, 111]
    assert again == {TP: 110} and order.holes == {}
    # Partitions are independent; one without a known position starts at its first record.
    other = ("events", 3)
    ready, held, _ = order.split(events(40, 41, tp=other), no_gap, 0.2)
    assert offsets(ready) == [40, 41] and held == []


def test_a_next_offset_left_from_an_earlier_assignment_never_asks_below_the_commit():
    # Seen in the fault loop (2026-12-05): a worker lost events-0 at 26 and regained it
    # when another worker had committed 249; its records came before the new seek, and a
    # stale next offset asked for 26-248 again (the models would learn them twice).
    order = PartitionOrder()
    order.split(events(24, 25), no_gap, 0.0)
    order.floor({TP: 249})
    ready, held, again = order.split(events(249, 250), no_gap, 0.1)
    assert offsets(ready) == [249, 250] and held == [] and again == {}
    # A hole the commit has passed is closed.
    order.split(events(255), no_gap, 0.2)  # hole at 251
    assert order.holes == {TP: 251}
    order.floor({TP: 256})
    assert order.holes == {} and order.next[TP] == 256
    # A revocation forgets every partition: the next record (or seek) sets the base.
    order.forget()
    assert order.split(events(900), no_gap, 0.3)[0] != [] and order.next[TP] == 901


def test_records_of_a_revoked_partition_are_left_to_its_new_owner():
    """A batch gathered before a revocation (Faust's take buffer outlives the rebalance):
    only the partitions the consumer still holds go on, whatever type names them (Faust's
    TP in the message, aiokafka's TopicPartition in an assignment)."""
    kept, revoked = FaustTP("events", 2), FaustTP("events", 1)
    batch = [*events(1368, 1369, tp=revoked), *events(1439, 1440, tp=kept)]
    mine, gone = of_assigned(batch, {TopicPartition("events", 2)})
    assert offsets(mine) == [1439, 1440] and offsets(gone) == [1368, 1369]
    assert of_assigned(batch, set()) == ([], batch)  # between a revocation and its assignment
