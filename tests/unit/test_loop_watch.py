"""The loop watch: a stop is reported once, with the stack that holds the loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.worker.loop_watch import BlockWatch, LoopWatch


def test_a_stop_is_reported_once_when_it_starts_and_once_when_it_ends():
    w = BlockWatch(blocked_s=1.0)
    w.beat = 10.0
    assert w.check(10.5) is None
    assert w.check(11.0) == "started"
    assert w.check(12.0) is None  # still held: not reported again
    w.beat = 12.4  # the loop ran again
    assert w.check(12.5) == "ended"
    assert w.ended() == pytest.approx(2.4)
    assert w.check(12.6) is None


def _holds_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # the blocking call the watch must name


def test_the_watch_names_the_call_that_holds_the_loop():
    async def run() -> LoopWatch:
        watch = LoopWatch(blocked_s=0.2, period_s=0.02)
        beat = asyncio.create_task(watch.run())
        await asyncio.sleep(0.05)
        _holds_the_loop(0.6)
        while not watch.stops:  # the thread reports the end after the next beat
            await asyncio.sleep(0.02)
        beat.cancel()
        return watch

    watch = asyncio.run(run())
    held, stack = watch.stops[0]
    assert held >= 0.5
    assert "_holds_the_loop" in stack
