"""Bandit traffic: batched Thompson allocation, floor, kill switch, valid AIPW analysis."""

import numpy as np
import pytest

from online_models.bandit_traffic import Allocator, aipw, simulate_adaptive

MEANS = [0.10, 0.12, 0.15]
ARMS = ["arm0", "arm1", "arm2"]


def test_traffic_moves_to_the_best_arm_but_never_below_the_floor():
    r = simulate_adaptive(MEANS, batches=10, batch_size=1000, min_share=0.05, seed=3)
    shares = r["final_shares"]
    assert shares["arm2"] > 0.6
    assert min(shares.values()) >= 0.05 - 1e-12
    assert sum(shares.values()) == pytest.approx(1.0)
    status = r["allocator"].status()
    assert status["batch"] == 10 and not status["killed"]
    assert status["arms"]["arm2"]["share"] == shares["arm2"]


def test_kill_switch_sends_everyone_to_control_and_stops_adapting():
    al = Allocator(ARMS, min_share=0.05, control="arm0")
    for _ in range(200):
        al.observe("arm2", 1.0)
    al.kill()
    assert al.reallocate() == {"arm0": 1.0, "arm1": 0.0, "arm2": 0.0}
    assert {al.assign(u) for u in np.linspace(0, 0.999, 50)} == {"arm0"}
    al.resume()
    assert al.reallocate()["arm2"] > 0.8


def test_aipw_by_hand_with_one_batch():
    # one batch: the outcome model is 0.5 everywhere; propensities 0.5 / 0.5
    res = aipw(["a", "b"], ["a", "b", "a"], [1.0, 0.0, 0.0], [[0.5, 0.5]] * 3, [0, 0, 0])
    # G(a) = 0.5 + [1, 0, 1] / 0.5 * ([1, 0, 0] - 0.5) = [1.5, 0.5, -0.5]
    assert res["arms"]["a"].value == pytest.approx(0.5)
    # G(b) = 0.5 + [0, 1, 0] / 0.5 * (y - 0.5) = [0.5, -0.5, 0.5]; contrast b - a = [-1, -1, 1]
    assert res["contrasts"]["b"].value == pytest.approx(-1 / 3)


def test_aipw_intervals_cover_the_truth_under_adaptive_allocation():
    covered = total = 0
    naive_bias = aipw_bias = 0.0
    for seed in range(40):
        r = simulate_adaptive(MEANS, batches=8, batch_size=800, seed=seed)
        for arm, mean in zip(ARMS, MEANS, strict=True):
            e = r["analysis"]["arms"][arm]
            covered += e.low <= mean <= e.high
            total += 1
        naive_bias += r["naive"]["arm1"] - MEANS[1]
        aipw_bias += r["analysis"]["arms"]["arm1"].value - MEANS[1]
    assert covered / total >= 0.88
    assert abs(aipw_bias) < abs(naive_bias)  # the plain mean of a starved arm runs low
