"""Public viewing logs -> contract-v1 events and catalog records (pure: rows in, dicts out).

Two logs are supported (``../shared/datasets/README.md``); file handling, progress
and writing live in :mod:`streams.tools.import_logs`. Every input row either becomes a
viewing or is counted in :attr:`ImportReport.bad` by reason: nothing is dropped
silently, and every produced event passes :func:`streams.contract.validate_event`.

**A viewing** (:class:`Viewing`) becomes, for one user and one title: an optional
``impression`` at ``t``, a ``play`` at ``t + 1`` ms (position 0), then ``complete``
(position = runtime) or ``stop`` (position = watched seconds) at the viewing's end,
then an optional ``thumbs``. Scheduling (:func:`viewing_events`) keeps a viewer's
viewings in log order and, by default, **sequential**: a viewing ends 1 ms before
the viewer's next one starts at the latest (so the next play sees the previous
outcome). With ``overlap=True`` every viewing lasts its full wall-clock watch time,
so plays of a bulk session start before the earlier ones end, as a viewer with
many titles in flight would produce.

**MovieLens** (ratings.csv, movies.csv, tags.csv): a rating is a viewing of a movie
with a nominal runtime of :data:`ML_RUNTIME_S` (the log has none). Rating >= 4 is a
``complete``; a lower rating is a ``stop`` at ``rating / 6`` of the runtime (3.5 ->
58 %, 3 -> 50 %, 0.5 -> 8 %), below the 70 % positive threshold, so its watched
ratio is graded by the rating. Timestamps (1995-2016, before the contract's year
2000 floor) are shifted by :data:`ML_SHIFT_MS`, a whole number of days (20 years),
so hour of day and weekday are kept. Users ``u<userId>``, titles ``m<movieId>``.

**KuaiRand** (interactions.tsv): every row is an exposure of a short video
(``impression``); a row with ``is_click`` 1 and ``play_time_ms`` > 0 is also a
viewing with the real watch time. The runtime is the row's ``duration_ms``, else
the largest known for the video; watched >= runtime is a ``complete`` (a loop or
rewatch), less a ``stop`` at the watched position. When no runtime is known at
all, ``long_view`` 1 is a ``complete`` and 0 a ``stop`` without a runtime (an
abandon). ``label`` (1 like, 0 hate) becomes ``thumbs`` +1/-1 after the row.
Times are real epoch milliseconds (April 2022). Users ``k<user_id>``, videos
``v<video_id>``.

>>> rep = ImportReport()
>>> evs = movielens_events([{"userId": "1", "movieId": "7", "rating": "5",
...     "timestamp": "1260759144"}], {"m7"}, rep)
>>> [e["event_type"] for e in evs], evs[0]["ts"] - 1260759144000 == ML_SHIFT_MS + 1
(['play', 'complete'], True)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.contract import ContractError, validate_event

ML_RUNTIME_S = 6000.0  # MovieLens carries no runtimes: a nominal 100-minute movie
ML_SHIFT_MS = 7305 * 86_400_000  # 20 years (whole days: hour and weekday kept)
ML_POSITIVE_RATING = 4.0
ML_STOP_DIVISOR = 6.0  # a rating r < 4 stops at r / 6 of the runtime
ML_TAGS_PER_TITLE = 10
_YEAR_RE = re.compile(r"\((\d{4})\)\s*$")
_SLUG_RE = re.compile(r"[^a-z0-9]+")

Progress = Callable[[int], None]


@dataclass
class ImportReport:
    """What an import read and produced; ``bad`` counts refused rows by reason."""

    rows: int = 0
    viewings: int = 0
    impressions: int = 0
    events: int = 0
    titles: int = 0
    bad: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "viewings": self.viewings,
            "impressions": self.impressions,
            "events": self.events,
            "titles": self.titles,
            "bad_rows": sum(self.bad.values()),
            "bad_by_reason": dict(self.bad),
        }


@dataclass(frozen=True, slots=True)
class Viewing:
    """One row of a log as a viewing: where it started, how far it got, how it ended."""

    user_id: str
    title_id: str
    start_ms: int
    watch_ms: int  # wall-clock length of the viewing
    position_s: float  # final position
    duration_s: float | None  # runtime, None when unknown
    complete: bool
    played: bool = True
    shown: bool = False  # emit an impression first
    thumbs: int | None = None
    key: str = ""  # unique per source row, for event ids


def slug(text: str) -> str:
    """A catalog tag value (``features.catalog.TAG_RE``) from free text; '' if nothing is left.

    >>> slug("Sci-Fi"), slug("  Dark  humor!"), slug("(no genres listed)")
    ('sci-fi', 'dark-humor', 'no-genres-listed')
    """
    s = _SLUG_RE.sub("-", text.lower()).strip("-")
    return s[:48].rstrip("-")


def viewing_events(
    viewings: Iterable[Viewing], overlap: bool = False, prefix: str = "ev"
) -> list[dict[str, Any]]:
    """Contract events of viewings, in event-time order (ties keep log order).

    Sequential (default): a viewer's viewing starts after the previous one ended and
    ends before the next one's log time. ``overlap``: each lasts its full watch time.
    """
    by_user: dict[str, list[Viewing]] = {}
    for v in viewings:
        by_user.setdefault(v.user_id, []).append(v)
    out: list[tuple[int, int, dict[str, Any]]] = []
    seq = 0
    for uid, vs in by_user.items():
        vs.sort(key=lambda v: v.start_ms)  # stable: same-time rows keep log order
        free = 0  # earliest ts the next viewing may use
        for i, v in enumerate(vs):
            t = max(v.start_ms, free)
            evs: list[tuple[int, dict[str, Any]]] = []
            base = {"user_id": uid, "title_id": v.title_id}
            if v.shown:
                evs.append((t, {**base, "event_type": "impression"}))
            end = t + 1
            if v.played:
                play_ts = t + 1
                evs.append((play_ts, {**base, "event_type": "play", "position_s": 0.0}))
                end = play_ts + max(1, v.watch_ms)
                if not overlap and i + 1 < len(vs):
                    end = min(end, max(play_ts + 1, vs[i + 1].start_ms - 1))
                last = {**base, "position_s": round(v.position_s, 3)}
                last["event_type"] = "complete" if v.complete else "stop"
                if v.duration_s:
                    last["duration_s"] = round(v.duration_s, 3)
                evs.append((end, last))
            if v.thumbs is not None:
                evs.append((end, {**base, "event_type": "thumbs", "value": v.thumbs}))
            for n, (ts, ev) in enumerate(evs):
                ev["event_id"] = f"{prefix}-{v.key or seq}-{n}"
                ev["ts"] = ts
                out.append((ts, seq, ev))
                seq += 1
            free = (end if not overlap else t + 1) + 1
    out.sort(key=lambda r: (r[0], r[1]))
    return [ev for _, _, ev in out]


def _validated(events: list[dict[str, Any]], report: ImportReport) -> list[dict[str, Any]]:
    ok = []
    for ev in events:
        try:
            ok.append(validate_event(ev))
        except ContractError as exc:
            report.bad[f"event_{exc.reason}"] += 1
    report.events += len(ok)
    return ok


# --- MovieLens ------------------------------------------------------------------------


def movielens_catalog(
    movies: Iterable[dict[str, str]], tags: Iterable[dict[str, str]], report: ImportReport
) -> list[dict[str, Any]]:
    """Catalog records of movies.csv rows, with the most used tags.csv tags per movie."""
    counts: dict[str, Counter[str]] = {}
    for row in tags:
        mid, tag = (row.get("movieId") or "").strip(), slug(row.get("tag") or "")
        if not mid.isdigit() or not tag:
            report.bad["tag_bad_row"] += 1
            continue
        counts.setdefault(mid, Counter())[tag] += 1
    out = []
    for row in movies:
        mid, name = (row.get("movieId") or "").strip(), (row.get("title") or "").strip()
        if not mid.isdigit() or not name:
            report.bad["movie_bad_row"] += 1
            continue
        rec: dict[str, Any] = {"title_id": f"m{mid}", "name": name, "kind": "movie"}
        year = _YEAR_RE.search(name)
        if year and 1880 <= int(year.group(1)) <= 2100:
            rec["release_year"] = int(year.group(1))
            rec["name"] = name[: year.start()].strip() or name
        genres = [slug(g) for g in (row.get("genres") or "").split("|")]
        rec["genres"] = [g for g in dict.fromkeys(genres) if g and g != "no-genres-listed"]
        top = counts.get(mid)
        if top:
            rec["tags"] = {"user_tag": [t for t, _ in top.most_common(ML_TAGS_PER_TITLE)]}
        out.append(rec)
    report.titles += len(out)
    return out


def movielens_viewing(row: dict[str, str]) -> Viewing:
    """One ratings.csv row as a viewing; ValueError(reason) for a bad row."""
    uid, mid = (row.get("userId") or "").strip(), (row.get("movieId") or "").strip()
    if not uid.isdigit() or not mid.isdigit():
        raise ValueError("bad_id")
    try:
        rating, ts_s = float(row.get("rating") or ""), float(row.get("timestamp") or "")
    except ValueError:
        raise ValueError("bad_number") from None
    if not 0.5 <= rating <= 5.0:
        raise ValueError("rating_out_of_range")
    if not math.isfinite(ts_s) or ts_s < 0:
        raise ValueError("bad_timestamp")
    complete = rating >= ML_POSITIVE_RATING
    ratio = 1.0 if complete else rating / ML_STOP_DIVISOR
    watched = ratio * ML_RUNTIME_S
    return Viewing(
        user_id=f"u{uid}",
        title_id=f"m{mid}",
        start_ms=int(ts_s * 1000) + ML_SHIFT_MS,
        watch_ms=int(watched * 1000),
        position_s=watched,
        duration_s=ML_RUNTIME_S,
        complete=complete,
        key=f"{uid}-{mid}",
    )


def movielens_events(
    ratings: Iterable[dict[str, str]],
    known_titles: set[str] | frozenset[str],
    report: ImportReport,
    overlap: bool = False,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Events of ratings.csv rows (see the module docstring for the mapping)."""
    viewings: list[Viewing] = []
    seen: set[tuple[str, str]] = set()
    for row in ratings:
        report.rows += 1
        if progress is not None and report.rows % 10_000 == 0:
            progress(report.rows)
        try:
            v = movielens_viewing(row)
        except ValueError as exc:
            report.bad[str(exc)] += 1
            continue
        if v.title_id not in known_titles:
            report.bad["unknown_title"] += 1
            continue
        if (v.user_id, v.title_id) in seen:
            report.bad["duplicate_rating"] += 1
            continue
        seen.add((v.user_id, v.title_id))
        viewings.append(v)
    report.viewings += len(viewings)
    return _validated(viewing_events(viewings, overlap, prefix="ml"), report)


# --- KuaiRand ---------------------------------------------------------------------------


def _int(row: dict[str, str], name: str) -> int:
    value = (row.get(name) or "").strip()
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"bad_{name}") from None


def kuairand_import(
    rows: Iterable[dict[str, str]],
    report: ImportReport,
    overlap: bool = False,
    progress: Progress | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(events, catalog) of interactions.tsv rows (see the module docstring)."""
    parsed: list[tuple[str, str, int, int, int, int, int, int, int]] = []
    runtime_ms: dict[str, int] = {}
    for row in rows:
        report.rows += 1
        if progress is not None and report.rows % 10_000 == 0:
            progress(report.rows)
        try:
            uid, vid = _int(row, "user_id"), _int(row, "video_id")
            ts, click = _int(row, "time_ms"), _int(row, "is_click")
            play, dur = _int(row, "play_time_ms"), _int(row, "duration_ms")
            long_view, label = _int(row, "long_view"), _int(row, "label")
        except ValueError as exc:
            report.bad[str(exc)] += 1
            continue
        if uid < 0 or vid < 0 or click not in (0, 1) or label not in (0, 1):
            report.bad["bad_value"] += 1
            continue
        if play < 0 or dur < 0:
            report.bad["negative_time"] += 1
            continue
        tid = f"v{vid}"
        if dur > 0:
            runtime_ms[tid] = max(runtime_ms.get(tid, 0), dur)
        parsed.append((f"k{uid}", tid, ts, click, play, dur, long_view, label, report.rows))
    viewings = []
    for uid, tid, ts, click, play, dur, long_view, label, line in parsed:
        runtime = dur or runtime_ms.get(tid, 0)
        played = click == 1 and play > 0
        if runtime:
            complete = play >= runtime
            position = min(play, runtime) / 1000
        else:
            complete = long_view == 1
            position = play / 1000
        viewings.append(
            Viewing(
                user_id=uid,
                title_id=tid,
                start_ms=ts,
                watch_ms=play,
                position_s=position,
                duration_s=runtime / 1000 if runtime else None,
                complete=complete,
                played=played,
                shown=True,
                thumbs=1 if label == 1 else -1,
                key=str(line),
            )
        )
    report.viewings += sum(v.played for v in viewings)
    report.impressions += len(viewings)
    titles = sorted({v.title_id for v in viewings})
    catalog = []
    for tid in titles:
        rec: dict[str, Any] = {"title_id": tid, "name": f"video {tid[1:]}", "kind": "movie"}
        if runtime_ms.get(tid):
            rec["runtime_s"] = runtime_ms[tid] / 1000
        catalog.append(rec)
    report.titles += len(catalog)
    return _validated(viewing_events(viewings, overlap, prefix="kr"), report), catalog
