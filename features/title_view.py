"""Every worker's read-only view of all titles' statistics, fed by the owners' snapshots.

Why: a title's statistics have one owner (:mod:`features.title_stats`), but every
worker scores every title. The owners publish changed titles' snapshots about
once a second; each worker folds them in here, so its API sees global
popularity a second or two late instead of the popularity of its own users only.

It is a :class:`~features.title_popularity.TitlePopularity` (``counts`` and
``scale(now)``, what popularity readers use) whose counts are *set* from snapshots;
``observe`` does nothing, since the owners do the counting.

>>> from features.title_stats import TitleStats
>>> s = TitleStats()
>>> _ = s.update({"t": "t1", "e": "play", "ts": 1_000_000, "c": "FR", "f": 1})
>>> view = GlobalTitleView()
>>> view.apply("t1", s.snapshot())
>>> round(view.value("t1", 1_000_000), 6), view.trending("FR", "1h", 5)
(1.0, [('t1', 1)])
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Any

from features.title_popularity import TitlePopularity
from features.title_stats import ALL, POP_HALF_LIFE_MS, WINDOWS, window_count

TOP_KEPT = 64  # titles kept per (window, country) list; longer lists are scanned
RECOUNT_CHUNK = 2_000  # titles recounted per read after a window moved (~20 ms)


def _rank(kv: tuple[str, int]) -> tuple[int, str]:
    return (-kv[1], kv[0])  # most plays first, then by id


def _countries_of(snap: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for per in snap.get("buckets", {}).values():
        out.update(c for c in per if len(c) == 2 and c.isalpha())
    return out


class _WindowTop:
    """One window's counts per country and title, and each country's top list, valid
    for the window ending at hop ``hi``."""

    __slots__ = ("counts", "dirty", "hi", "next", "per_title", "todo", "top")

    def __init__(self, hi: int | None = None) -> None:
        self.hi = hi
        self.counts: dict[str, dict[str, int]] = {}  # country -> title -> plays (> 0)
        self.per_title: dict[str, dict[str, int]] = {}  # title -> country -> plays (> 0)
        self.top: dict[str, list[tuple[str, int]]] = {}  # country -> best TOP_KEPT
        self.dirty: set[str] = set()  # titles whose snapshot changed since the last read
        self.todo: list[str] = []  # titles still to count (a recount in progress)
        self.next: _WindowTop | None = None  # the recount for the window's next hop


class GlobalTitleView(TitlePopularity):
    """Latest snapshot per title, plus the popularity interface over them.

    Trending lists are kept incrementally: a read recounts only the titles whose
    snapshot changed since the previous read, and merges them into the kept top lists.
    When a window moves to its next hop (every 5 minutes for ``1h``, every hour for
    ``1d``) every title is recounted, ``RECOUNT_CHUNK`` titles per read, while reads keep
    returning the previous hop's lists; at 50,000 titles that is 25 reads of about 20 ms
    instead of one 1 s stop of the worker's event loop. Before, every read scanned every
    title for every country: 0.36 s a second at 10,000 titles (docs/performance.md,
    "Freshness at 10,000 and 50,000 titles").
    """

    __slots__ = ("_countries", "_title_countries", "_windows", "high_water", "snapshots")

    def __init__(self) -> None:
        super().__init__(half_life_ms=POP_HALF_LIFE_MS)
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.high_water = 0
        self._countries: Counter[str] = Counter()  # country -> titles whose buckets name it
        self._title_countries: dict[str, set[str]] = {}
        self._windows = {w: _WindowTop() for w in WINDOWS}

    def observe(self, ev: dict) -> None:
        """No-op: popularity is counted by the title owners."""

    def apply(self, title_id: str, snap: dict[str, Any] | None) -> None:
        """Replace a title's snapshot (``None``: forget the title)."""
        for wt in self._windows.values():
            wt.dirty.add(title_id)
            if wt.next is not None:
                wt.next.dirty.add(title_id)
        old = self._title_countries.pop(title_id, set())
        self._countries.subtract(old)
        if snap is None:
            self.snapshots.pop(title_id, None)
            self.counts.pop(title_id, None)
            return
        new = _countries_of(snap)
        self._countries.update(new)
        self._title_countries[title_id] = new
        self.snapshots[title_id] = snap
        hw = int(snap.get("high_water", 0))
        if hw > self.high_water:
            self.high_water = hw
        self.set_decayed(title_id, float(snap.get("pop", 0.0)), int(snap.get("pop_ts", 0)))

    def trending(
        self, country: str, window: str, n: int = 20, now_ts: int | None = None
    ) -> list[tuple[str, int]]:
        """Top ``n`` titles by plays in ``window`` in ``country`` (or ``ALL``) at ``now_ts``.

        ``now_ts`` defaults to the highest event time any owner has reported, so a
        title that stopped being watched falls out of the window.
        """
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}")
        if (now_ts is not None and now_ts != self.high_water) or n > TOP_KEPT:
            return self.scan(country, window, n, now_ts)
        return self._refreshed(window).top.get(country, [])[:n]

    def lists(self, n: int = 20) -> list[tuple[str, str, list[tuple[str, int]]]]:
        """(country, window, top ``n``) for every country with plays and ``ALL``, each
        window brought up to date once (one recount chunk per window per call)."""
        if n > TOP_KEPT:
            return [(c, w, self.scan(c, w, n)) for c in sorted(self.countries()) for w in WINDOWS]
        tops = {w: self._refreshed(w).top for w in WINDOWS}
        return [(c, w, tops[w].get(c, [])[:n]) for c in sorted(self.countries()) for w in WINDOWS]

    def scan(
        self, country: str, window: str, n: int = 20, now_ts: int | None = None
    ) -> list[tuple[str, int]]:
        """:meth:`trending` by counting every title (the reference the kept lists equal)."""
        now = self.high_water if now_ts is None else now_ts
        rows = []
        for tid, snap in self.snapshots.items():
            c = window_count(snap.get("buckets", {}), window, country, now)
            if c > 0:
                rows.append((tid, c))
        rows.sort(key=_rank)
        return rows[:n]

    def countries(self) -> set[str]:
        """Countries with any windowed plays, plus ``ALL``."""
        return {ALL} | {c for c, n in self._countries.items() if n > 0}

    def _counted(self, title_id: str, window: str, hi: int) -> dict[str, int]:
        """The title's plays in ``window`` ending at hop ``hi``, per country and ``ALL``
        (what :func:`~features.title_stats.window_count` gives each, in one pass)."""
        snap = self.snapshots.get(title_id)
        if snap is None:
            return {}
        size, hop = WINDOWS[window]
        lo = hi - size // hop
        out = {}
        total = 0
        for c, per in snap.get("buckets", {}).get(window, {}).items():
            n = sum(v for k, v in per.items() if lo < int(k) <= hi)
            if n > 0:
                out[c] = n
                total += n
        if total:
            out[ALL] = total
        return out

    def _refreshed(self, window: str) -> _WindowTop:
        """The window's lists, brought up to date (or the previous hop's while a recount
        for the current hop is in progress)."""
        wt = self._windows[window]
        hi = self.high_water // WINDOWS[window][1]
        if wt.hi is None:  # the first read: count everything at once
            wt.hi, wt.dirty = hi, set(self.snapshots)
        if wt.hi == hi:
            self._fold(wt, window)
            return wt
        nxt = wt.next
        if nxt is None or nxt.hi != hi:  # the window moved (again): start a recount
            nxt = wt.next = _WindowTop(hi)
            nxt.todo = list(self.snapshots)
        chunk = nxt.todo[-RECOUNT_CHUNK:]
        del nxt.todo[-RECOUNT_CHUNK:]
        nxt.dirty.update(chunk)
        if nxt.todo:  # not done: count this chunk only, keep serving the old lists
            self._count(nxt, window)
            return wt
        self._fold(nxt, window)
        self._windows[window] = nxt
        return nxt

    def _count(self, wt: _WindowTop, window: str) -> tuple[dict[str, list[str]], set[str]]:
        """Recount ``wt.dirty`` into ``wt.counts``; the titles touched per country, and
        the countries where a count fell."""
        touched: dict[str, list[str]] = {}
        fell: set[str] = set()
        assert wt.hi is not None
        for tid in wt.dirty:
            old = wt.per_title.pop(tid, {})
            new = self._counted(tid, window, wt.hi)
            if new:
                wt.per_title[tid] = new
            for c in old.keys() | new.keys():
                n = new.get(c, 0)
                if n < old.get(c, 0):
                    fell.add(c)
                per = wt.counts.setdefault(c, {})
                if n:
                    per[tid] = n
                else:
                    per.pop(tid, None)
                touched.setdefault(c, []).append(tid)
        wt.dirty.clear()
        return touched, fell

    def _fold(self, wt: _WindowTop, window: str) -> None:
        """Recount the changed titles and bring the touched countries' lists up to date."""
        if not wt.dirty and wt.top:
            return
        touched, fell = self._count(wt, window)
        if not wt.top:  # a new recount: every country's list from its counts
            touched = {c: [] for c in wt.counts}
        for c, tids in touched.items():
            per = wt.counts.get(c, {})
            if c in fell or c not in wt.top:
                # a count fell (or a first list): a title outside the list may now enter
                best = heapq.nsmallest(TOP_KEPT, per.items(), key=_rank)
            else:
                # counts only grew: the new list is within the old one and the changed titles
                pool = {t: per[t] for t, _ in wt.top[c] if t in per}
                pool.update((t, per[t]) for t in tids if t in per)
                best = heapq.nsmallest(TOP_KEPT, pool.items(), key=_rank)
            if best:
                wt.top[c] = best
            else:
                wt.top.pop(c, None)
                wt.counts.pop(c, None)
