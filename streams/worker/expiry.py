"""Per-user expiry: the rows of idle users leave the ``user-profiles`` table.

A user whose last event is older than ``REELSTREAM_USER_TTL_S`` is deleted: a
tombstone in the table's changelog (compaction then drops the record), the row out
of the local RocksDB store, the record out of the worker's cache, and the user's
Redis keys (score list and features hash, which expire by their own TTLs anyway)
deleted too, so the serving copy never outlives the record.

**Activity is judged in event time.** A row's last activity is the latest event
time folded into it (``last_ts``, or the gate's high-water); it is compared with
the latest event time the worker has admitted *on the same partition*. Not the wall
clock, because:

* every other part of the record is in event time (decay, the lateness gate), and
  a replay or a backfill of old traffic (``reelstream replay``, a worker catching
  up on a backlog after an outage) sees the same verdicts as the live worker: a
  worker reading a two-day backlog does not delete the rows of users whose events
  are still in it (with the wall clock it would, and those events would then
  rebuild the rows from nothing: history, MF vector and dedupe ids lost);
* a partition's own clock: a partition that lags behind the others is judged by
  its own position.

The cost: a partition that receives no events expires nothing (its rows do not grow
either), and a producer clock ahead of time moves the clock by at most the gate's
future allowance (5 min).

**A bounded slice per tick.** Each second the sweep reads at most
``REELSTREAM_USER_EXPIRY_SCAN`` rows of one owned partition, from where the last
slice stopped, between two batches (under the agent's batch lock), so a full pass
over N rows takes about N / scan seconds and batches keep flowing. After a pass over
every partition it rests ``REELSTREAM_USER_EXPIRY_PAUSE_S`` (an expiry measured in days
needs no continuous scan; each row read is a decode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

# (partition, after key or None, at most n) -> [(key bytes, user id, row)], in key order
ReadSlice = Callable[[int, bytes | None, int], list[tuple[bytes, str, Any]]]


def last_activity(row: Any) -> int:
    """The latest event time a stored row holds (0 for none: such a row is idle)."""
    if not isinstance(row, Mapping):
        return 0
    ts = row.get("last_ts")
    gate = row.get("gate")
    hw = gate[0] if isinstance(gate, list) and gate else 0
    return max(ts if isinstance(ts, int) else 0, hw if isinstance(hw, int) else 0)


class ExpirySweep:
    """Which rows are idle, a slice at a time, round robin over the owned partitions.

    >>> rows = {0: [(b"a", "a", {"last_ts": 10}), (b"b", "b", {"last_ts": 90})]}
    >>> def read(p, after, n):
    ...     keys = [r for r in rows.get(p, []) if after is None or r[0] > after]
    ...     return keys[:n]
    >>> sweep = ExpirySweep(ttl_ms=50, scan=10, pause_s=60)
    >>> sweep.observe({0: 100})
    >>> sweep.tick(read, now=0.0)  # idle since 10, the partition is at 100: older than 50
    [(0, 'a')]
    >>> sweep.tick(read, now=59.0), sweep.tick(read, now=60.0)  # a pass done: it rests
    ([], [(0, 'a')])
    """

    def __init__(self, ttl_ms: int, scan: int, pause_s: float = 0.0) -> None:
        self.ttl_ms = ttl_ms
        self.scan = scan
        self.pause_s = pause_s
        self.rest_until = 0.0  # (monotonic seconds) no slice before, after a full pass
        self.clock: dict[int, int] = {}  # partition -> latest event time admitted
        self.cursor: dict[int, bytes] = {}  # partition -> last key read this pass
        self.passes = 0  # full passes completed (all partitions)
        self._next = 0  # the partition to read at the next tick (round robin)

    @property
    def enabled(self) -> bool:
        return self.ttl_ms > 0

    def observe(self, event_time: Mapping[int, int]) -> None:
        """A batch's latest admitted event time per partition."""
        for p, ts in event_time.items():
            if ts > self.clock.get(p, -1):
                self.clock[p] = ts

    def keep_partitions(self, owned: Iterable[int]) -> None:
        """After a rebalance: forget the partitions this worker no longer owns (their
        clock restarts with their next batch here, if they come back)."""
        mine = set(owned)
        for d in (self.clock, self.cursor):
            for p in [p for p in d if p not in mine]:
                del d[p]

    def tick(self, read: ReadSlice, now: float) -> list[tuple[int, str]]:
        """Read one slice of the next partition with a clock; (partition, user) idle.
        ``now``: monotonic seconds, for the rest between passes."""
        if not self.enabled or not self.clock or now < self.rest_until:
            return []
        parts = sorted(self.clock)
        p = next((q for q in parts if q >= self._next), parts[0])
        self._next = p + 1
        cutoff = self.clock[p] - self.ttl_ms
        rows = read(p, self.cursor.get(p), self.scan)
        if len(rows) < self.scan:  # the end of the partition: the next pass starts over
            self.cursor.pop(p, None)
            if p == parts[-1]:
                self.passes += 1
                self.rest_until = now + self.pause_s
        else:
            self.cursor[p] = rows[-1][0]
        return [(p, uid) for _, uid, row in rows if last_activity(row) < cutoff]
