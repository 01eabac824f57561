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

import numpy as np
from scipy import sparse

from features.catalog import Catalog, Title


def stable_seed(key: str) -> int:
    """A seed that is the same in every process (``hash()`` is salted per process)."""
    return zlib.crc32(key.encode())


class TitleIndex:
    """title_id <-> row, tag vectors, availability, series links; rebuilt on catalog change."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.version = -1
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.titles: list[Title | None] = []
        self.tags: list[str] = []
        self.tag_index: dict[str, int] = {}
        # Sparse: a title has a handful of tags out of a vocabulary that can run into the
        # thousands (user tags), and a dense product per request cost ~10 ms at 9k titles.
        self.tag_matrix: sparse.csr_matrix = sparse.csr_matrix((0, 0), dtype=np.float32)
        self.active = np.zeros(0, dtype=bool)
        self.is_episode = np.zeros(0, dtype=np.float32)
        self.long_runtime = np.zeros(0, dtype=np.float32)
        self.next_episode: dict[int, int] = {}
        self.primary_genre: list[str] = []
        self._regions: dict[str | None, np.ndarray] = {}
        self.listeners: list = []  # callables(n) told when the index grows

    @property
    def n(self) -> int:
        return len(self.ids)

    def sync(self) -> bool:
        """Bring the index up to the catalog; True when it changed."""
        if self.catalog.version == self.version:
            return False
        for tid in self.catalog.titles:
            if tid not in self.index:
                self.index[tid] = len(self.ids)
                self.ids.append(tid)
                self.titles.append(None)
        for tid, i in self.index.items():
            self.titles[i] = self.catalog.titles.get(tid)
        n = len(self.ids)
        live = [t for t in self.titles if t is not None]
        self.tags = sorted({k for t in live for k in t.tag_keys})
        self.tag_index = {k: j for j, k in enumerate(self.tags)}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        self.active = np.zeros(n, dtype=bool)
        self.is_episode = np.zeros(n, dtype=np.float32)
        self.long_runtime = np.zeros(n, dtype=np.float32)
        self.primary_genre = [""] * n
        series: dict[str, list[tuple[int, int]]] = {}
        for i, t in enumerate(self.titles):
            if t is None:
                continue
            self.active[i] = True
            if t.tag_keys:
                w = 1.0 / math.sqrt(len(t.tag_keys))
                for k in t.tag_keys:
                    rows.append(i)
                    cols.append(self.tag_index[k])
                    vals.append(w)
            self.is_episode[i] = 1.0 if t.series_id else 0.0
            self.long_runtime[i] = 1.0 if t.runtime_s >= 5400 else 0.0
            self.primary_genre[i] = t.genres[0] if t.genres else ""
            if t.series_id and t.episode is not None:
                series.setdefault(t.series_id, []).append(((t.season or 1) * 10_000 + t.episode, i))
        self.next_episode = {}
        for eps in series.values():
            eps.sort()
            for (_, a), (_, b) in itertools.pairwise(eps):
                self.next_episode[a] = b
        self.tag_matrix = sparse.csr_matrix(
            (np.asarray(vals, dtype=np.float32), (rows, cols)),
            shape=(n, len(self.tags)),
            dtype=np.float32,
        )
        self._regions = {}
        self.version = self.catalog.version
        for listener in self.listeners:
            listener(n)
        return True

    def available(self, country: str | None) -> np.ndarray:
        """Active titles that can be shown in ``country`` (cached per country)."""
        mask = self._regions.get(country)
        if mask is None:
            mask = self.active.copy()
            for i, t in enumerate(self.titles):
                if t is not None and not t.available_in(country):
                    mask[i] = False
            self._regions[country] = mask
        return mask


def grow(arr: np.ndarray, n: int, fill: float = 0.0) -> np.ndarray:
    """``arr`` extended along axis 0 to ``n`` rows (unchanged when already long enough)."""
    if arr.shape[0] >= n:
        return arr
    extra = np.full((n - arr.shape[0], *arr.shape[1:]), fill, dtype=arr.dtype)
    return np.concatenate([arr, extra])
