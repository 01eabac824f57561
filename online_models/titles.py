"""A stable, append-only numbering of catalog titles shared by every model.

Models keep per-title state in numpy arrays indexed by this numbering. Indexes
never move: a removed title keeps its row and is masked out, so arrays and
checkpoints stay valid while the catalog changes.

>>> from features.catalog import Catalog, parse_title
>>> cat = Catalog()
>>> cat.upsert(parse_title({"title_id": "a", "name": "A", "genres": ["drama"]}))
>>> ix = TitleIndex(cat)
>>> ix.sync()
True
>>> ix.index["a"], ix.n, ix.tag_matrix.shape
(0, 1, (1, 1))
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Callable

import numpy as np
from scipy import sparse

from features.catalog import Catalog, Title


def stable_seed(key: str) -> int:
    """A seed that is the same in every process (``hash()`` is salted per process)."""
    return zlib.crc32(key.encode())


class TitleIndex:
    """title_id <-> row, tag vectors, availability, series links; updated per changed title.

    A catalog change costs the changed rows only: arrays keep spare capacity (doubled
    when full), the tag vocabulary only grows (a tag's column never moves), and the
    per-country availability masks are patched in place. The public arrays are views of
    the first ``n`` rows. Tags are kept per row (fixed width, -1 = none) and served as
    a sparse CSR matrix, rebuilt with a few vectorised numpy operations on the first
    read after a change: a title has a handful of tags out of a vocabulary that can run
    into the thousands, and a dense product per request cost ~10 ms at 9k titles.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.version = -1
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.titles: list[Title | None] = []
        self.tags: list[str] = []
        self.tag_index: dict[str, int] = {}
        self.next_episode: dict[int, int] = {}
        self.primary_genre: list[str] = []
        self._regions: dict[str | None, np.ndarray] = {}
        self._series: dict[str, dict[int, int]] = {}  # series -> row -> episode order
        self._series_of: dict[int, str] = {}
        self._tag_cols = np.full((0, 0), -1, dtype=np.int32)  # row -> tag columns
        self._tag_vals = np.zeros((0, 0), dtype=np.float32)
        self._csr: sparse.csr_matrix | None = None
        self._active = np.zeros(0, dtype=bool)
        self._is_episode = np.zeros(0, dtype=np.float32)
        self._long_runtime = np.zeros(0, dtype=np.float32)
        # Inverted tag index: tag column -> the title's tag count -> rows (insertion order).
        # A title's weight in a tag is 1/sqrt(its tag count), so walking counts upwards
        # (newest rows first within one count) reads a tag's titles best first.
        self._postings: dict[int, dict[int, dict[int, None]]] = {}
        self._posting_arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.listeners: list = []  # callables(n) told when the index grows
        self._views()

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def tag_matrix(self) -> sparse.csr_matrix:
        """Titles x tags, a title's tags weighted 1/sqrt(count); removed titles: empty rows."""
        if self._csr is None:
            n = self.n
            cols, vals = self._tag_cols[:n], self._tag_vals[:n]
            mask = cols >= 0
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(mask.sum(axis=1), out=indptr[1:])
            self._csr = sparse.csr_matrix(
                (vals[mask], cols[mask], indptr), shape=(n, len(self.tags)), dtype=np.float32
            )
        return self._csr

    def _views(self) -> None:
        n = self.n
        self._csr = None
        self.active = self._active[:n]
        self.is_episode = self._is_episode[:n]
        self.long_runtime = self._long_runtime[:n]

    def _reserve(self, n: int, width: int) -> None:
        rows, cols = self._tag_cols.shape
        if n <= rows and width <= cols:
            return
        rows2 = max(rows, 16) if n <= rows else max(n, 2 * rows, 16)
        cols2 = max(cols, 8) if width <= cols else max(width, 2 * cols)
        tc = np.full((rows2, cols2), -1, dtype=np.int32)
        tv = np.zeros((rows2, cols2), dtype=np.float32)
        tc[:rows, :cols] = self._tag_cols
        tv[:rows, :cols] = self._tag_vals
        self._tag_cols, self._tag_vals = tc, tv
        self._active = grow(self._active, rows2, False)
        self._is_episode = grow(self._is_episode, rows2)
        self._long_runtime = grow(self._long_runtime, rows2)

    def sync(self) -> bool:
        """Bring the index up to the catalog; True when it changed."""
        if self.catalog.version == self.version:
            return False
        changed = self.catalog.changed_since(self.version)
        if changed is None:  # rows follow catalog order, as a fresh build
            changed = list(dict.fromkeys([*self.catalog.titles, *self.ids]))
        n0 = self.n
        for tid in changed:
            i = self.index.get(tid)
            if i is None:
                if tid not in self.catalog.titles:
                    continue  # added and removed since the last sync
                i = self.index[tid] = len(self.ids)
                self.ids.append(tid)
                self.titles.append(None)
                self.primary_genre.append("")
            self._set_row(i, self.catalog.titles.get(tid))
        self.version = self.catalog.version
        self._views()
        if self.n != n0:
            for listener in self.listeners:
                listener(self.n)
        return True

    def _set_row(self, i: int, t: Title | None) -> None:
        """Write one title's row (None: tombstone) and patch what depends on it."""
        new_tags = [k for k in (t.tag_keys if t is not None else ()) if k not in self.tag_index]
        for k in new_tags:
            self.tag_index[k] = len(self.tags)
            self.tags.append(k)
        keys = t.tag_keys if t is not None else ()
        if i < self._tag_cols.shape[0]:
            self._unpost(i)
        self._reserve(i + 1, len(keys))
        self.titles[i] = t
        self._tag_cols[i, :] = -1
        self._tag_vals[i, :] = 0.0
        self._active[i] = t is not None
        self._is_episode[i] = 1.0 if t is not None and t.series_id else 0.0
        self._long_runtime[i] = 1.0 if t is not None and t.runtime_s >= 5400 else 0.0
        self.primary_genre[i] = t.genres[0] if t is not None and t.genres else ""
        if keys:
            self._tag_cols[i, : len(keys)] = [self.tag_index[k] for k in keys]
            self._tag_vals[i, : len(keys)] = 1.0 / math.sqrt(len(keys))
            for k in keys:
                col = self.tag_index[k]
                self._postings.setdefault(col, {}).setdefault(len(keys), {})[i] = None
                self._posting_arrays.pop(col, None)
        for country, mask in self._regions.items():
            if len(mask) <= i:
                mask = self._regions[country] = grow(mask, i + 1, False)
            mask[i] = t is not None and t.available_in(country)
        self._link_episode(i, t)

    def _unpost(self, i: int) -> None:
        cols = self._tag_cols[i]
        cols = cols[cols >= 0].tolist()
        for col in cols:
            self._postings[col][len(cols)].pop(i, None)
            self._posting_arrays.pop(col, None)

    def posting(self, col: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, weights) of one tag's titles, best weight first (newest first on ties)."""
        arrs = self._posting_arrays.get(col)
        if arrs is None:
            rows: list[int] = []
            wts: list[float] = []
            for count, members in sorted(self._postings.get(col, {}).items()):
                rows.extend(reversed(members))
                wts.extend([1.0 / math.sqrt(count)] * len(members))
            arrs = self._posting_arrays[col] = (
                np.asarray(rows, dtype=np.int64),
                np.asarray(wts, dtype=np.float64),
            )
        return arrs

    def tag_vector(self, weights: dict[str, float]) -> np.ndarray:
        """A tag -> weight mapping as a dense vector over the vocabulary, plus a trailing 0
        that the empty tag slots (-1) of :meth:`tag_scores` read."""
        vec = np.zeros(len(self.tags) + 1, dtype=np.float64)
        for tag, w in weights.items():
            j = self.tag_index.get(tag)
            if j is not None:
                vec[j] = w
        return vec

    def tag_scores(self, rows: np.ndarray, vec: np.ndarray) -> np.ndarray:
        """``tag_matrix[rows] @ vec[:-1]`` from the rows' own tag slots: the cost of the rows
        asked for, not of the catalog (``vec`` from :meth:`tag_vector`)."""
        return (vec[self._tag_cols[rows]] * self._tag_vals[rows]).sum(axis=1)

    def content_top(
        self,
        vec: np.ndarray,
        k: int,
        keep: Callable[[np.ndarray], np.ndarray] | None = None,
        tags: int = 16,
        budget: int = 4096,
        block: int = 64,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows with the highest :meth:`tag_scores` against ``vec`` among those
        ``keep`` accepts, read from the posting lists of the ``tags`` heaviest positive tags.

        Fagin's threshold algorithm: lists are read ``block`` rows at a time, candidates
        scored exactly, and reading stops once ``k`` scores reach the best any unread row
        could still get (exact), or after ``budget`` rows (approximate: ties between
        equally weighted titles are the usual reason to go that far).
        """
        pos = np.flatnonzero(vec[:-1] > 0)
        if len(pos) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        pos = pos[np.argsort(-vec[pos], kind="stable")[:tags]]
        lists = [(float(vec[c]), *self.posting(int(c))) for c in pos.tolist()]
        at = [0] * len(lists)
        seen: set[int] = set()
        found_rows: list[np.ndarray] = []
        found_scores: list[np.ndarray] = []
        best = np.zeros(0)
        read = 0
        while read < budget:
            fresh = []
            for j, (_, rows, _) in enumerate(lists):
                if at[j] < len(rows):
                    fresh.append(rows[at[j] : at[j] + block])
                    at[j] += block
            if not fresh:
                break
            batch = np.unique(np.concatenate(fresh))
            read += len(batch)
            batch = np.array([r for r in batch.tolist() if r not in seen], dtype=np.int64)
            seen.update(batch.tolist())
            if keep is not None and len(batch):
                batch = batch[keep(batch)]
            if len(batch):
                found_rows.append(batch)
                found_scores.append(self.tag_scores(batch, vec))
                best = np.concatenate([best, found_scores[-1]])
            bound = sum(
                w * wts[a] for (w, _, wts), a in zip(lists, at, strict=True) if a < len(wts)
            )
            if len(best) >= k and np.partition(best, len(best) - k)[len(best) - k] >= bound:
                break
        if not found_rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        rows = np.concatenate(found_rows)
        scores = np.concatenate(found_scores)
        top = np.argsort(-scores, kind="stable")[:k]
        return rows[top], scores[top]

    def _link_episode(self, i: int, t: Title | None) -> None:
        self.next_episode.pop(i, None)
        old = self._series_of.pop(i, None)
        if old is not None:
            self._series[old].pop(i, None)
        if t is not None and t.series_id and t.episode is not None:
            order = (t.season or 1) * 10_000 + t.episode
            self._series.setdefault(t.series_id, {})[i] = order
            self._series_of[i] = t.series_id
        for sid in {old, t.series_id if t is not None else None} - {None}:
            self._relink(sid)  # type: ignore[arg-type]

    def _relink(self, series_id: str) -> None:
        eps = self._series.get(series_id, {})
        for row in eps:
            self.next_episode.pop(row, None)
        ordered = sorted((order, row) for row, order in eps.items())
        for (_, a), (_, b) in itertools.pairwise(ordered):
            self.next_episode[a] = b

    def available(self, country: str | None) -> np.ndarray:
        """Active titles that can be shown in ``country`` (cached per country)."""
        mask = self._regions.get(country)
        if mask is None or len(mask) < self.n:
            mask = self.active.copy()
            for i, t in enumerate(self.titles):
                if t is not None and not t.available_in(country):
                    mask[i] = False
            self._regions[country] = mask
        return mask[: self.n]


def grow(arr: np.ndarray, n: int, fill: float = 0.0) -> np.ndarray:
    """``arr`` extended along axis 0 to ``n`` rows (unchanged when already long enough)."""
    if arr.shape[0] >= n:
        return arr
    extra = np.full((n - arr.shape[0], *arr.shape[1:]), fill, dtype=arr.dtype)
    return np.concatenate([arr, extra])
