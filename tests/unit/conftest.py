"""Fixtures shared by unit tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def profile_table(tmp_path) -> Any:
    """A ``user-profiles`` table with the worker's schema (raw keys and values; four
    partitions) over real Faust RocksDB stores in ``tmp_path``, so store tests see what
    RocksDB does. No broker is needed: changelog sends stay in the producer's buffer."""
    import faust

    app = faust.App("unit", store="rocksdb://", datadir=str(tmp_path), broker="kafka://x:1")
    schema = faust.Schema(
        key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    return app.Table("user-profiles", schema=schema, partitions=4)


@pytest.fixture
def profile_store(profile_table) -> Any:
    """The worker's profile store, default cache, over :func:`profile_table`."""
    from streams.worker.profile_store import TableProfileStore

    return TableProfileStore(profile_table)
