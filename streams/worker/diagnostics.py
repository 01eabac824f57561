"""What the worker is waiting on: the asyncio task stacks, for a stall report or SIGUSR2.

``kill -USR2 <worker pid>`` writes them to the log (``reelstream.diagnostics``); the
stall watch (streams/worker/monitor.py) adds them to its report. Each task shows the
chain of coroutines it awaits, innermost last, so a wait that never ends is visible.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

log = logging.getLogger("reelstream.diagnostics")
_MAX_DEPTH = 40


def _frames(coro: Any) -> list[str]:
    out = []
    for _ in range(_MAX_DEPTH):
        if coro is None:
            break
        frame = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "gi_frame", None)
            or getattr(coro, "ag_frame", None)
        )
        if frame is not None:
            out.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        nxt = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
        coro = nxt
    return out


def task_stacks() -> str:
    """Every task of the running loop with the coroutine chain it is suspended in."""
    lines = []
    for task in asyncio.all_tasks():
        lines.append(f"task {task.get_name()}:")
        lines.extend(f"  {f}" for f in _frames(task.get_coro()))
    return "\n".join(lines)


def install_signal_dump() -> None:
    """SIGUSR2 logs the task stacks (call from inside the running loop)."""
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGUSR2, lambda: log.warning("asyncio tasks:\n%s", task_stacks())
    )
