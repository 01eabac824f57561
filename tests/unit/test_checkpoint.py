"""The checkpoint codec refuses anything but its own safe format; the ledger skips replays."""

import base64
import pickle

import numpy as np
import orjson
import pytest

from online_models.checkpoint import CheckpointError, OffsetLedger, decode, encode
from online_models.cowatch import CoWatch
from online_models.mf import ImplicitMF


def test_round_trip_of_model_state_with_offsets():
    mf = ImplicitMF(k=4, seed=1)
    mf.resize(6)
    mf.learn("u1", 2, 1.0, popularity=None)
    cw = CoWatch()
    cw.resize(6)
    cw.observe(1, [], 5)
    cw.observe(2, [1], 6)
    blob = encode(
        {"mf": mf.title_state(), "cowatch": cw.state()},
        offsets={"events:0": 120, "events:3": 7},
        model_version="hybrid-lr-1",
        created_ts=99,
    )
    ck = decode(blob)
    assert ck.offsets == {"events:0": 120, "events:3": 7} and ck.model_version == "hybrid-lr-1"
    mf2 = ImplicitMF(k=4, seed=2)
    mf2.load_title_state(ck.state["mf"])
    assert np.array_equal(mf2.q, mf.q) and mf2.q.dtype == np.float32
    cw2 = CoWatch()
    cw2.resize(6)
    cw2.load(ck.state["cowatch"])
    assert np.allclose(cw2.scores([1])[0], cw.scores([1])[0])


def _doc(state):
    return orjson.dumps(
        {"format": "reelstream-model-checkpoint", "v": 1, "offsets": {}, "state": state}
    )


@pytest.mark.parametrize(
    "raw",
    [
        pickle.dumps({"a": 1}),  # never unpickled
        b"{}",
        _doc({"x": {"__nd__": ["object", [1], base64.b64encode(b"12345678").decode()]}}),
        _doc({"x": {"__nd__": ["float32", [3], base64.b64encode(b"1234").decode()]}}),
        _doc({"x": {"__nd__": ["float32", [-1], ""]}}),
        _doc({"x": {"__nd__": ["float32", [1], "!!not base64!!"]}}),
        orjson.dumps({"format": "reelstream-model-checkpoint", "v": 2, "offsets": {}, "state": {}}),
        orjson.dumps(
            {"format": "reelstream-model-checkpoint", "v": 1, "offsets": {"e:0": -1}, "state": {}}
        ),
    ],
)
def test_decode_rejects_unsafe_or_malformed(raw):
    with pytest.raises(CheckpointError):
        decode(raw)


def test_encode_refuses_objects_it_cannot_represent_safely():
    with pytest.raises(CheckpointError):
        encode({"x": np.array([object()], dtype=object)}, offsets={})
    with pytest.raises(CheckpointError):
        encode({"x": {1: 2}}, offsets={})


def test_ledger_restored_from_a_checkpoint_learns_each_offset_once():
    learned = []
    ledger = OffsetLedger(decode(encode({}, offsets={"ev:0": 3})).offsets)
    # The consumer's committed offset was older: records 1..5 come again after restart.
    for off in range(1, 6):
        if ledger.take("ev", 0, off):
            learned.append(off)
    assert learned == [3, 4, 5]
    assert ledger.seek_positions() == {("ev", 0): 6}
