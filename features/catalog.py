"""Catalog contract v1 and the in-memory title index the core scores against.

A title record is validated here so the worker, the loader and the replay tool
share one definition. Tags are flattened to ``dimension:value`` strings
(``genre:drama``, ``pacing:slow``) that the features and models use as a vocabulary.

>>> t = parse_title({"title_id": "t1", "name": "Dark Water", "genres": ["thriller"],
...     "tags": {"tone": ["dark"]}, "runtime_s": 5400})
>>> t.tag_keys
('genre:thriller', 'tone:dark')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from features.ids import ID_RE

TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,47}$")
KINDS = frozenset({"movie", "episode", "special"})


class CatalogError(ValueError):
    """A catalog record that does not follow the contract."""


@dataclass(frozen=True, slots=True)
class Title:
    title_id: str
    name: str
    kind: str = "movie"
    genres: tuple[str, ...] = ()
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    runtime_s: float = 0.0
    release_year: int | None = None
    regions: tuple[str, ...] = ()  # empty: available everywhere
    cast: tuple[str, ...] = ()
    synopsis: str = ""
    series_id: str | None = None
    season: int | None = None
    episode: int | None = None
    artwork: tuple[str, ...] = ()
    tag_keys: tuple[str, ...] = ()
    # Tags a model derived from the synopsis (online_models/tagger.py), for dimensions the
    # editors left empty: dimension -> ((value, confidence), ...). Also in ``tag_keys``.
    derived_tags: dict[str, tuple[tuple[str, float], ...]] = field(default_factory=dict)

    def available_in(self, country: str | None) -> bool:
        return not self.regions or country is None or country in self.regions


def _str_list(
    rec: dict[str, Any], name: str, pattern: re.Pattern[str] | None = None
) -> tuple[str, ...]:
    value = rec.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogError(f"{name} must be a list of strings")
    if pattern is not None:
        for v in value:
            if not pattern.match(v):
                raise CatalogError(f"{name} value {v[:40]!r} does not match {pattern.pattern}")
    return tuple(value)


def parse_title(rec: object) -> Title:
    """Validate one catalog record (a decoded JSON object) and build its :class:`Title`."""
    if not isinstance(rec, dict):
        raise CatalogError("a catalog record must be a JSON object")
    tid = rec.get("title_id")
    if not isinstance(tid, str) or not ID_RE.match(tid):
        raise CatalogError(f"title_id must match {ID_RE.pattern}")
    name = rec.get("name")
    if not isinstance(name, str) or not name:
        raise CatalogError("name is required")
    kind = rec.get("kind", "movie")
    if kind not in KINDS:
        raise CatalogError(f"kind must be one of {sorted(KINDS)}")
    genres = _str_list(rec, "genres", TAG_RE)
    raw_tags = rec.get("tags") or {}
    if not isinstance(raw_tags, dict):
        raise CatalogError("tags must be an object of dimension -> list of values")
    tags: dict[str, tuple[str, ...]] = {}
    for dim, _values in raw_tags.items():
        if not TAG_RE.match(dim):
            raise CatalogError(f"tag dimension {dim[:40]!r} does not match {TAG_RE.pattern}")
        tags[dim] = _str_list(raw_tags, dim, TAG_RE)
    runtime = rec.get("runtime_s", 0)
    if isinstance(runtime, bool) or not isinstance(runtime, int | float) or runtime < 0:
        raise CatalogError("runtime_s must be a non-negative number")
    year = rec.get("release_year")
    if year is not None and (not isinstance(year, int) or not 1880 <= year <= 2100):
        raise CatalogError("release_year must be an integer year")
    series_id = rec.get("series_id")
    if series_id is not None and (not isinstance(series_id, str) or not ID_RE.match(series_id)):
        raise CatalogError("series_id must match the id pattern")
    artwork = rec.get("artwork") or []
    if not isinstance(artwork, list):
        raise CatalogError("artwork must be a list")
    art_ids = []
    for a in artwork:
        aid = a.get("artwork_id") if isinstance(a, dict) else a
        if not isinstance(aid, str) or not ID_RE.match(aid):
            raise CatalogError("artwork entries need an artwork_id matching the id pattern")
        art_ids.append(aid)
    keys = tuple(f"genre:{g}" for g in genres) + tuple(
        f"{dim}:{v}" for dim, values in tags.items() if dim != "genre" for v in values
    )
    editorial = {dim for dim, values in tags.items() if values} | ({"genre"} if genres else set())
    derived = _derived_tags(rec.get("derived_tags"), editorial)
    keys += tuple(f"{dim}:{v}" for dim, pairs in derived.items() for v, _ in pairs)
    return Title(
        title_id=tid,
        name=name,
        kind=kind,
        genres=genres,
        tags=tags,
        runtime_s=float(runtime),
        release_year=year,
        regions=_str_list(rec, "regions"),
        cast=_str_list(rec, "cast"),
        synopsis=str(rec.get("synopsis", ""))[:2000],
        series_id=series_id,
        season=rec.get("season"),
        episode=rec.get("episode"),
        artwork=tuple(art_ids),
        tag_keys=tuple(dict.fromkeys(keys)),
        derived_tags=derived,
    )


def _derived_tags(raw: object, editorial: set[str]) -> dict[str, tuple[tuple[str, float], ...]]:
    """``derived_tags`` of a record ({dim: [{"value", "confidence"}]}); editorial dims win."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CatalogError("derived_tags must be an object of dimension -> list of tags")
    out: dict[str, tuple[tuple[str, float], ...]] = {}
    for dim, entries in raw.items():
        if not isinstance(dim, str) or not TAG_RE.match(dim) or not isinstance(entries, list):
            raise CatalogError("derived_tags: dimension -> list of {value, confidence}")
        pairs = []
        for e in entries:
            value = e.get("value") if isinstance(e, dict) else None
            conf = e.get("confidence") if isinstance(e, dict) else None
            if not isinstance(value, str) or not TAG_RE.match(value):
                raise CatalogError(f"derived_tags value must match {TAG_RE.pattern}")
            if isinstance(conf, bool) or not isinstance(conf, int | float) or not 0 <= conf <= 1:
                raise CatalogError("derived_tags confidence must be a number from 0 to 1")
            pairs.append((value, float(conf)))
        if pairs and dim not in editorial:
            out[dim] = tuple(pairs)
    return out


class Catalog:
    """Titles by id, with a version and a short log of which titles changed.

    Indexes built over the catalog ask :meth:`changed_since` for the titles to update
    instead of rebuilding: one catalog record costs one row, at any catalog size.
    """

    CHANGE_LOG_MAX = 100_000

    def __init__(self) -> None:
        self.titles: dict[str, Title] = {}
        self.version = 0  # bumped on every change
        self._log: list[str] = []  # title ids changed, one per version since _log_base
        self._log_base = 0

    def _changed(self, title_id: str) -> None:
        self.version += 1
        self._log.append(title_id)
        if len(self._log) > self.CHANGE_LOG_MAX:
            cut = len(self._log) // 2
            del self._log[:cut]
            self._log_base += cut

    def changed_since(self, version: int) -> list[str] | None:
        """Titles changed after ``version``, first change first, each once; None when the
        log no longer reaches back."""
        if version < self._log_base:
            return None
        return list(dict.fromkeys(self._log[version - self._log_base :]))

    def __len__(self) -> int:
        return len(self.titles)

    def __contains__(self, title_id: object) -> bool:
        return title_id in self.titles

    def get(self, title_id: str) -> Title | None:
        return self.titles.get(title_id)

    def upsert(self, title: Title) -> None:
        self.titles[title.title_id] = title
        self._changed(title.title_id)

    def remove(self, title_id: str) -> None:
        if self.titles.pop(title_id, None) is not None:
            self._changed(title_id)
