"""The checkpoint codec refuses anything but its own safe format; the ledger skips replays."""

import base64
import pickle

import numpy as np
import orjson
import pytest

from online_models import checkpoint as codec
from online_models.checkpoint import CheckpointError, OffsetLedger, decode, encode
from online_models.cowatch import CoWatch
from online_models.mf import ImplicitMF


def test_round_trip_of_model_state_with_offsets():
    mf = ImplicitMF(k=4, seed=1)
    mf.resize(6)
    mf.learn(mf.new_user("u1"), 2, 1.0, popularity=None)
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


def test_title_factors_keep_only_the_rows_that_moved_and_restore_the_rest_from_seeds():
    mf = ImplicitMF(k=4, seed=1)
    mf.resize(3000)
    p = mf.new_user("u1")
    for t in (5, 17, 2999):
        mf.learn(p, t, 1.0, popularity=None)
    st = mf.title_state()
    moved = st["q_rows"].tolist()
    assert 3 <= len(moved) <= 3 + 3 * mf.negatives and {5, 17, 2999} <= set(moved)
    blob = encode({"mf": st}, offsets={})
    assert len(blob) < 3000 * 4 * 4  # far below the dense factors' own bytes
    fresh = ImplicitMF(k=4, seed=9)  # holds no rows yet: the seeds give every one back
    fresh.load_title_state(decode(blob).state["mf"])
    assert np.array_equal(fresh.q, mf.q)


def test_title_factors_of_a_dense_checkpoint_still_load():
    mf = ImplicitMF(k=4, seed=1)
    mf.resize(6)
    mf.learn(mf.new_user("u1"), 2, 1.0, popularity=None)
    dense = {"q": mf.q.copy(), "bias": mf.bias, "updates": mf.updates}
    mf2 = ImplicitMF(k=4, seed=2)
    mf2.load_title_state(decode(encode({"mf": dense}, offsets={})).state["mf"])
    assert np.array_equal(mf2.q, mf.q)


@pytest.mark.parametrize(
    "bad",
    [
        {"n": 4, "q_rows": np.array([2, 1]), "q_at": np.zeros((2, 4), np.float32)},
        {"n": 4, "q_rows": np.array([1, 4]), "q_at": np.zeros((2, 4), np.float32)},
        {"n": 4, "q_rows": np.array([-1]), "q_at": np.zeros((1, 4), np.float32)},
        {"n": 4, "q_rows": np.array([1.0]), "q_at": np.zeros((1, 4), np.float32)},
        {"n": 4, "q_rows": np.array([1]), "q_at": np.zeros((2, 4), np.float32)},
        {"n": True, "q_rows": np.array([0]), "q_at": np.zeros((1, 4), np.float32)},
        {"n": -1, "q_rows": np.array([], np.int64), "q_at": np.zeros((0, 4), np.float32)},
        {"q": np.zeros((3, 5), np.float32)},
    ],
)
def test_malformed_title_factors_are_refused(bad):
    with pytest.raises(ValueError):
        ImplicitMF(k=4).full_q(bad)


def _b64(values, dtype):
    return base64.b64encode(np.array(values, dtype=dtype).tobytes()).decode()


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
        orjson.dumps({"format": "reelstream-model-checkpoint", "v": 3, "offsets": {}, "state": {}}),
        orjson.dumps(
            {"format": "reelstream-model-checkpoint", "v": 1, "offsets": {"e:0": -1}, "state": {}}
        ),
        _doc({"x": {"__sp__": ["float64", [4], _b64([0, 9], "<i8"), _b64([1, 2], "<f8")]}}),
        _doc({"x": {"__sp__": ["float64", [4], _b64([2, 1], "<i8"), _b64([1, 2], "<f8")]}}),
        _doc({"x": {"__sp__": ["float64", [4], _b64([1, 1], "<i8"), _b64([1, 2], "<f8")]}}),
        _doc({"x": {"__sp__": ["float64", [4], _b64([-1], "<i8"), _b64([1], "<f8")]}}),
        _doc({"x": {"__sp__": ["float64", [4], _b64([1, 2], "<i8"), _b64([1], "<f8")]}}),
        _doc({"x": {"__sp__": ["object", [4], _b64([1], "<i8"), _b64([1], "<f8")]}}),
        _doc({"x": {"__sp__": ["float64", [4], _b64([1], "<i8")]}}),
        _doc({"x": {"__sp__": ["float64", [4], _b64([1], "<i8"), _b64([1], "<f8")], "y": 1}}),
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
    with pytest.raises(CheckpointError):  # in a list of otherwise plain values too
        encode({"x": ["a", 1, object()]}, offsets={})


def test_lists_of_plain_values_and_of_mixed_ones_round_trip():
    state = {
        "ids": ["t1", "t2", "t3"],
        "plain": [1, 2.5, True, None, "s"],
        "mixed": [np.float32(0.5), np.arange(3, dtype=np.int32), [1, "a"], ("x", 2)],
    }
    back = decode(encode(state, offsets={})).state
    assert back["ids"] == ["t1", "t2", "t3"] and back["plain"] == [1, 2.5, True, None, "s"]
    assert back["mixed"][0] == 0.5 and back["mixed"][2:] == [[1, "a"], ["x", 2]]
    assert np.array_equal(back["mixed"][1], np.arange(3)) and back["mixed"][1].dtype == np.int32


def test_ledger_restored_from_a_checkpoint_learns_each_offset_once():
    learned = []
    ledger = OffsetLedger(decode(encode({}, offsets={"ev:0": 3})).offsets)
    # The consumer's committed offset was older: records 1..5 come again after restart.
    for off in range(1, 6):
        if ledger.take("ev", 0, off):
            learned.append(off)
    assert learned == [3, 4, 5]
    assert ledger.seek_positions() == {("ev", 0): 6}


def test_records_that_arrive_before_the_ones_below_them_are_all_learned_once():
    """Seen on the real broker (tests/integration/test_scale_out.py): after a restore at
    587, Faust handed over 602-657 first (fetched from the previous owner's commit), and
    587-601 came only after the next rebalance's seek. A high-water mark skipped them."""
    ledger = OffsetLedger({"ev:0": 587})
    order = [*range(602, 658), *range(587, 658), *range(658, 700)]
    learned = [off for off in order if ledger.take("ev", 0, off)]
    assert sorted(learned) == list(range(587, 700))
    assert len(learned) == len(set(learned))
    assert ledger.offsets == {"ev:0": 700} and ledger.ahead == {}


def test_ranges_ahead_survive_a_checkpoint_and_a_hole_is_given_up_when_it_never_fills():
    from streams.worker.checkpoints import ranges_ahead

    ledger = OffsetLedger({"ev:0": 10})
    for off in (12, 13, 20):
        ledger.take("ev", 0, off)
    ck = decode(encode({"ahead": ledger.ahead["ev:0"]}, offsets=dict(ledger.offsets)))
    restored = OffsetLedger(ck.offsets, {"ev:0": ranges_ahead(ck.state["ahead"], 10)})
    assert [o for o in range(8, 22) if restored.take("ev", 0, o)] == [
        10,
        11,
        14,
        15,
        16,
        17,
        18,
        19,
        21,
    ]
    for bad in ([[5, 7]], [[12, 11]], [[12, 14], [13, 15]], [["a", 1]], "x"):
        with pytest.raises(CheckpointError):
            ranges_ahead(bad, 10)

    small = OffsetLedger({"ev:0": 0})
    small.MAX_AHEAD = 3
    assert all(small.take("ev", 0, o) for o in (1, 2, 3, 4))  # offset 0 never arrives
    assert small.abandoned == [("ev:0", 0, 1)] and small.offsets == {"ev:0": 5}


def test_without_a_checkpoint_records_below_the_first_one_are_still_learned():
    """Records handed over early (from the old committed offset) come before the ones the
    seek brings: nothing below the first arrival may count as already learned."""
    ledger = OffsetLedger()
    learned = [o for o in (602, 603, 587, 588, 602, 604) if ledger.take("ev", 0, o)]
    assert learned == [602, 603, 587, 588, 604]
    assert ledger.known("ev:0") and not ledger.known("ev:1")
    assert ledger.covered("ev:0") == (589, [[602, 605]])


def test_the_ledger_says_which_records_arrived_after_higher_offsets():
    ledger = OffsetLedger({"ev:0": 10})
    flags = []
    for off in (12, 13, 10, 11, 14):
        ledger.take("ev", 0, off)
        flags.append(ledger.last_reordered)
    assert flags == [False, False, True, True, False]


def test_the_pieces_of_an_encode_are_one_document_equal_to_the_state():
    state = {
        "ids": ["a", "b"],
        "mf": {"q": np.ones((2, 3), dtype=np.float32), "rng": {"s": [1, 2]}, "empty": {}},
        "n": 3,
        "none": None,
    }
    pieces = list(codec.encode_pieces(state, {"ev:0": 4}, "m1", 9))
    assert len(pieces) > 4  # split at the state's entries
    ck = codec.decode(b"".join(pieces))
    assert ck.offsets == {"ev:0": 4} and ck.model_version == "m1" and ck.created_ts == 9
    assert ck.state["mf"]["q"].tolist() == state["mf"]["q"].tolist()
    assert ck.state["ids"] == ["a", "b"] and ck.state["n"] == 3 and ck.state["none"] is None
    assert ck.state["mf"]["rng"] == {"s": [1, 2]} and ck.state["mf"]["empty"] == {}
    assert b"".join(pieces) == codec.encode(state, {"ev:0": 4}, "m1", 9)


def test_a_snapshot_shares_nothing_the_models_go_on_changing():
    live = {"q": np.zeros(3), "counts": {"1h": np.zeros(2)}, "ids": ["a"], "rows": [[1, 2]]}
    snap = codec.snapshot(live)
    live["q"][0] = 5.0
    live["counts"]["1h"][1] = 2.0
    live["ids"].append("b")
    live["rows"][0].append(3)
    ck = codec.decode(codec.encode(snap, {}))
    assert ck.state["q"].tolist() == [0.0, 0.0, 0.0]
    assert ck.state["counts"]["1h"].tolist() == [0.0, 0.0]
    assert ck.state["ids"] == ["a"] and ck.state["rows"] == [[1, 2]]


def test_pieces_refuse_keys_that_are_not_strings():
    with pytest.raises(CheckpointError):
        b"".join(codec.encode_pieces({1: 2}, {}))  # type: ignore[dict-item]


def test_mostly_zero_arrays_are_stored_sparse_and_come_back_equal():
    rng = np.random.default_rng(3)
    counts = np.zeros(50_000)
    counts[rng.choice(50_000, 2_000, replace=False)] = rng.random(2_000) * 10
    grid = np.zeros((100, 40), dtype=np.float32)
    grid[3, 7] = 1.5
    state = {
        "counts": counts,
        "grid": grid,
        "flags": counts > 5,
        "empty": np.zeros(4096, dtype=np.int64),
        "dense": rng.random(5_000),
        "short": np.zeros(10),
    }
    blob = encode(state, offsets={})
    doc = orjson.loads(blob)["state"]
    assert {k for k, v in doc.items() if "__sp__" in v} == {"counts", "grid", "flags", "empty"}
    # 4 % non-zero: 16 bytes per non-zero item (index and value) instead of 8 per item.
    assert len(encode({"c": counts}, offsets={})) < counts.nbytes / 5
    back = decode(blob).state
    for k, v in state.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v)


def test_a_version_1_checkpoint_still_decodes():
    arr = np.zeros(2048)
    arr[5] = 1.0
    doc = {"x": {"__nd__": ["float64", [2048], base64.b64encode(arr.tobytes()).decode()]}}
    assert np.array_equal(decode(_doc(doc)).state["x"], arr)
    assert orjson.loads(encode({}, offsets={}))["v"] == codec.VERSION == 2
