"""The inverted-file index (online_models/ann.py) against exact inner-product search."""

from __future__ import annotations

import numpy as np

from online_models.ann import EXACT_BELOW, DenseVectors, IVFIndex


def exact_top(m: np.ndarray, q: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-(m @ q), kind="stable")[:k].tolist())


def recall(index: IVFIndex, m: np.ndarray, queries: np.ndarray, k: int, **kw) -> float:
    hits = 0
    for q in queries:
        rows, _ = index.search(DenseVectors(m), q, k, **kw)
        hits += len(exact_top(m, q, k) & set(rows.tolist()))
    return hits / (k * len(queries))


def clustered(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    """Taste-like vectors: a few dozen directions plus noise (what trained factors look like)."""
    centres = rng.standard_normal((40, d))
    return (centres[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, d))).astype(np.float32)


def test_small_catalogs_are_searched_exactly():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((EXACT_BELOW - 1, 16)).astype(np.float32)
    index = IVFIndex()
    assert recall(index, m, rng.standard_normal((10, 16)).astype(np.float32), 60) == 1.0


def test_recall_at_60_against_exact_search():
    rng = np.random.default_rng(1)
    m = clustered(rng, 20_000)
    queries = clustered(rng, 40)
    index = IVFIndex()  # default scan: about 4,096 of the 20,000 rows per query
    r = recall(index, m, queries, 60)
    assert r >= 0.9, r
    assert recall(index, m, queries, 60, scan=len(m)) == 1.0  # every list: exact


def test_changed_and_new_rows_are_found_at_once():
    rng = np.random.default_rng(2)
    m = clustered(rng, 5_000)
    index = IVFIndex()
    q = rng.standard_normal(16).astype(np.float32)
    index.search(DenseVectors(m), q, 10)  # trains
    worst = int(np.argmin(m @ q))
    m[worst] = 10 * q  # now the best match by far
    index.mark([worst], len(m))
    rows, _ = index.search(DenseVectors(m), q, 10)
    assert rows[0] == worst
    grown = np.concatenate([m, (20 * q)[None, :]])  # a new row, never marked
    rows, _ = index.search(DenseVectors(grown), q, 10)
    assert rows[0] == len(m)


def test_keep_filters_before_the_top_k():
    rng = np.random.default_rng(3)
    m = clustered(rng, 3_000)
    q = rng.standard_normal(16).astype(np.float32)
    index = IVFIndex()
    rows, scores = index.search(DenseVectors(m), q, 50, keep=lambda r: r % 2 == 0)
    assert len(rows) == 50 and (rows % 2 == 0).all()
    assert np.all(np.diff(scores) <= 0)
