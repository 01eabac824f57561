"""The event loop's lag, and what held it when it stopped for long.

Everything of a worker runs on one event loop: a callback that holds it for a second
delays every batch, score and API answer by that second, and leaves no trace in a
profile taken afterwards. Two parts:

* a beat on the loop every ``period_s`` that records how late it ran
  (``reelstream_event_loop_lag_seconds``);
* a daemon thread that, when the beat has not run for ``blocked_s``, takes the loop
  thread's Python stack (``sys._current_frames``, documented in the standard library)
  and logs it once per stop, with how long the stop lasted once it ends
  (``reelstream_event_loop_blocked_total``).

Off with ``REELSTREAM_LOOP_BLOCKED_S=0``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

from streams import metrics as m

log = logging.getLogger("reelstream.loop")


class BlockWatch:
    """Decides, from the last beat and the clock, when a stop starts and ends (pure)."""

    def __init__(self, blocked_s: float) -> None:
        self.blocked_s = blocked_s
        self.beat = time.monotonic()
        self.since: float | None = None  # the last beat of the stop in progress

    def check(self, now: float) -> str | None:
        """``"started"`` once when the loop has been held for ``blocked_s``, ``"ended"``
        once when a beat came after such a stop, else None."""
        if self.since is None:
            if now - self.beat >= self.blocked_s:
                self.since = self.beat
                return "started"
            return None
        if self.beat > self.since:
            return "ended"
        return None

    def ended(self) -> float:
        """The stop's length (last beat before it to first beat after it)."""
        assert self.since is not None
        held, self.since = self.beat - self.since, None
        return held


class LoopWatch:
    def __init__(
        self,
        blocked_s: float = 1.0,
        period_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.watch = BlockWatch(blocked_s)
        self.period_s = period_s
        self.clock = clock
        self.loop_thread: int | None = None
        self.stops: list[tuple[float, str]] = []  # (seconds held, stack) of the last stops
        self._stop = threading.Event()

    async def run(self) -> None:
        """The beat; also starts the watching thread."""
        self.loop_thread = threading.get_ident()
        self.watch.beat = self.clock()
        threading.Thread(target=self._watch, name="reelstream-loop-watch", daemon=True).start()
        try:
            while True:
                due = self.clock() + self.period_s
                await asyncio.sleep(self.period_s)
                now = self.clock()
                m.EVENT_LOOP_LAG.observe(max(0.0, now - due))
                self.watch.beat = now
        finally:
            self._stop.set()

    def _watch(self) -> None:
        stack = ""
        while not self._stop.wait(self.watch.blocked_s / 4):
            state = self.watch.check(self.clock())
            if state == "started":
                stack = self.stack()
                m.EVENT_LOOP_BLOCKED.inc()
                log.warning(
                    "event loop held for %.1f s so far (no batch, score or API answer "
                    "meanwhile); what holds it:\n%s",
                    self.watch.blocked_s,
                    stack,
                )
            elif state == "ended":
                held = self.watch.ended()
                self.stops = [*self.stops[-9:], (held, stack)]
                log.warning("event loop was held for %.2f s", held)

    def stack(self) -> str:
        frame = sys._current_frames().get(self.loop_thread or 0)
        if frame is None:
            return "(the loop thread is gone)"
        return "".join(traceback.format_stack(frame, limit=25))
