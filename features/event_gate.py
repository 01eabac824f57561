"""Per-user admission in event time: exact dedupe by ``event_id``, allowed lateness, future guard.

Why per user: events are keyed by user, so one user's events all reach one
partition, one worker and one table row. A bounded set of the user's most recent
event ids, stored in that row, makes dedupe exact and durable: it survives
restarts and rebalances with the rest of the profile, and it turns a replay after
a crash (Faust commits offsets asynchronously, after the table write) into a no-op.

Verdicts, checked in this order:

* ``duplicate``: the id is among the user's last :data:`DEDUPE_IDS_MAX` ids. Not
  bad input (at-least-once delivery produces it): counted and dropped, never a
  dead letter.
* ``from_future``: ``ts`` is more than :data:`MAX_FUTURE_MS` ahead of ``now_ms``
  (the wall clock in the worker; ``None`` in a replay, where the check is off).
* ``too_late``: ``ts`` is more than :data:`ALLOWED_LATENESS_MS` behind the user's
  high-water event time. Within that bound a late event is applied normally and
  lands in the windows of its own ``ts``. The ids of the last :data:`LATE_IDS_MAX`
  refused events are remembered too, so a replay gives them the same verdict even
  when it is not judged on lateness (a record the consumer reordered).

>>> g = EventGate()
>>> g.check("e1", 10_000_000, now_ms=10_000_000), g.check("e1", 10_000_000, now_ms=None)
('ok', 'duplicate')
>>> g.check("e2", 10_000_000 - ALLOWED_LATENESS_MS - 1, now_ms=None)
'too_late'
>>> g.check("e3", 20_000_000, now_ms=20_000_000 - MAX_FUTURE_MS - 1)
'from_future'
>>> EventGate.from_list(g.to_list()).check("e1", 10_000_000, None)
'duplicate'
>>> g.check("e2", 0, now_ms=None, reordered=True)  # refused before: refused again
'too_late'

Ids are remembered as 12-character digests (72 bits of BLAKE2b), not as sent: a row's
size does not depend on how long producers make their ids (a UUID is 36 characters; the
contract allows longer), and 256 UUIDs were a third of a long-lived viewer's row. Two ids
of one viewer's last 256 share a digest with odds of about 2^-57.
"""

from __future__ import annotations

import base64
import hashlib

ALLOWED_LATENESS_MS = 3_600_000  # 1 h behind the user's high-water event time
MAX_FUTURE_MS = 300_000  # 5 min ahead of the wall clock
DEDUPE_IDS_MAX = 256  # most recent event ids remembered per user
LATE_IDS_MAX = 32  # most recent too-late ids remembered per user

GATE_FORMAT = 2  # ids as digests; rows written before it hold the ids as sent

OK = "ok"
DUPLICATE = "duplicate"
TOO_LATE = "too_late"
FROM_FUTURE = "from_future"


def digest(event_id: str) -> str:
    """The 12-character form of an event id the gate remembers."""
    raw = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=9).digest()
    return base64.b64encode(raw).decode("ascii")


class EventGate:
    """The user's recent event ids (insertion ordered) and high-water event time."""

    __slots__ = ("high_water", "ids", "late")

    def __init__(self) -> None:
        self.ids: dict[str, None] = {}
        self.late: dict[str, None] = {}
        self.high_water = 0

    def check(self, event_id: str, ts: int, now_ms: int | None, reordered: bool = False) -> str:
        """Admit or refuse one event; an admitted event's id is remembered.

        ``reordered``: the record reached the worker after records behind it in its
        partition (a handover replays a range late); its producer was not late, so the
        lateness bound does not apply.
        """
        ids = self.ids
        key = digest(event_id)
        if key in ids:
            return DUPLICATE
        if key in self.late:
            return TOO_LATE
        if now_ms is not None and ts > now_ms + MAX_FUTURE_MS:
            return FROM_FUTURE
        if not reordered and ts < self.high_water - ALLOWED_LATENESS_MS:
            self.late[key] = None
            if len(self.late) > LATE_IDS_MAX:
                del self.late[next(iter(self.late))]
            return TOO_LATE
        ids[key] = None
        if len(ids) > DEDUPE_IDS_MAX:
            del ids[next(iter(ids))]
        if ts > self.high_water:
            self.high_water = ts
        return OK

    def to_list(self) -> list:
        return [self.high_water, list(self.ids), list(self.late), GATE_FORMAT]

    @classmethod
    def from_list(cls, raw: list | None) -> EventGate:
        g = cls()
        if raw:
            g.high_water = int(raw[0])
            late = raw[2] if len(raw) > 2 else ()  # older rows: none
            if len(raw) > 3 and raw[3] == GATE_FORMAT:
                g.ids, g.late = dict.fromkeys(raw[1]), dict.fromkeys(late)
            else:  # a row written before the digests: the ids as sent
                g.ids = dict.fromkeys(digest(i) for i in raw[1])
                g.late = dict.fromkeys(digest(i) for i in late)
        return g
