"""malloc_trim hands freed pages in the middle of the heap back to the OS
(streams/worker/heap_trim.py), with real glibc allocations."""

from __future__ import annotations

import ctypes
import ctypes.util

from streams import metrics as m
from streams.worker import heap_trim


def _released_total() -> float:
    return m.REGISTRY.get_sample_value("reelstream_heap_trim_released_bytes_total") or 0.0


def test_trim_releases_freed_pages_that_glibc_would_keep() -> None:
    trim = heap_trim.load()
    assert trim is not None  # glibc (the supported Linux images)
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size, n = 4096, 20_000  # 80 MB of heap blocks (below the mmap threshold)
    blocks = [libc.malloc(size) for _ in range(n)]
    for b in blocks:
        ctypes.memset(b, 1, size)  # resident
    for b in blocks[:-1]:
        libc.free(b)  # the last block pins the top: free() alone returns nothing
    before = _released_total()
    released = heap_trim.trim_once(trim)
    libc.free(blocks[-1])
    assert released > 40 * 2**20
    assert _released_total() - before == released


def test_rss_is_read_from_proc() -> None:
    assert heap_trim.rss_bytes() > 10 * 2**20
