"""Stand-ins for a Faust event and its message: the two fields the profile store and the
replay guard read (the partition and offset a row is bound to)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Msg:
    partition: int
    offset: int
    topic: str = "events"


@dataclass
class Event:
    message: Msg
