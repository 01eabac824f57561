"""The log filter that keeps a reconnect loop from flooding the operator's log pipeline."""

import logging

from streams.logs import RepeatFilter


def record(msg: str, *args: object, name: str = "aiokafka") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_a_burst_passes_then_repeats_are_held_and_counted(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("streams.logs.time.monotonic", lambda: clock[0])
    f = RepeatFilter(burst=3, window_s=10.0)
    passed = [f.filter(record("Unable connect to node %s", i)) for i in range(1000)]
    assert passed.count(True) == 3
    other = record("Unable to update metadata from %s", 1)
    assert f.filter(other)  # another template is not held back
    clock[0] += 10.0
    nxt = record("Unable connect to node %s", 5)
    assert f.filter(nxt)
    assert nxt.suppressed == 997


def test_a_different_logger_with_the_same_text_is_its_own_kind():
    f = RepeatFilter(burst=1, window_s=60.0)
    assert f.filter(record("x", name="a"))
    assert not f.filter(record("x", name="a"))
    assert f.filter(record("x", name="b"))
