"""The title publisher's take of changed titles (streams/worker/title_store.py)."""

from __future__ import annotations

from features.title_stats import TitleStats
from streams.worker.title_store import TableTitleStore


def test_changed_titles_are_taken_in_chunks_and_none_is_lost():
    table = {"t3": TitleStats().to_dict()}  # t3: in the table only, read on take
    store = TableTitleStore(table)
    store.cache = {"t1": TitleStats(), "t2": TitleStats()}
    store.changed = {"t1", "t2", "t3", "gone"}  # "gone": neither cached nor stored
    first = store.take_changed(2)
    assert len(store.changed) == 2  # two names taken (one may be "gone"), two left
    assert 1 <= len(first) <= 2
    rest = store.take_changed()
    assert store.changed == set()
    taken = {t for t, _ in first} | {t for t, _ in rest}
    assert taken == {"t1", "t2", "t3"}
    assert all(isinstance(s, TitleStats) for _, s in first + rest)
    assert store.take_changed(5) == []
