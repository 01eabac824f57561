"""Handing freed heap pages back to the OS: glibc's ``malloc_trim`` on a timer.

Why: glibc keeps memory that was freed inside its arenas for reuse, and returns it to
the OS only from the top of the main heap. A worker churns through short-lived buffers
of every size (fetched record batches, decoded events, profile rows read from RocksDB
and written back, Redis pipelines), so the freed space ends up scattered in the middle
of the arenas and RSS climbs while the live heap stays flat. ``malloc_trim(0)`` also
releases every whole free page inside the arenas (``madvise``), which is what a soak
needs to stay flat. It runs in a thread (ctypes drops the GIL), so batches go on.

Only with glibc; on other C libraries (musl, macOS) :func:`load` returns None and the
worker logs once that trimming is off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable

from streams import metrics as m

PAGE = os.sysconf("SC_PAGE_SIZE")


def load() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def rss_bytes() -> int:
    """Resident set size of this process (``/proc/self/statm``; 0 where absent)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def trim_once(trim: Callable[[int], int]) -> int:
    """Trim every arena; returns the bytes RSS went down by (counted in the metrics)."""
    before = rss_bytes()
    t0 = time.perf_counter()
    trim(0)
    m.HEAP_TRIM_SECONDS.observe(time.perf_counter() - t0)
    released = max(0, before - rss_bytes())
    m.HEAP_TRIM_RELEASED.inc(released)
    return released
