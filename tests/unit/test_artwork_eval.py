"""Off-policy estimators on hand-computable logs and on a seeded bandit with known truth."""

import json
import math

import numpy as np
import pytest

from online_models.artwork_eval import (
    best_variant_per_title,
    deterministic,
    dr,
    evaluate,
    ips,
    replay,
    snips,
    uniform,
)

LOG = [
    {"title_id": "t1", "variants": ["a", "b"], "choice": "a", "propensity": 0.5, "reward": 1.0},
    {"title_id": "t1", "variants": ["a", "b"], "choice": "b", "propensity": 0.5, "reward": 0.0},
    {"title_id": "t1", "variants": ["a", "b"], "choice": "a", "propensity": 0.25, "reward": 0.0},
    {"title_id": "t1", "variants": ["a", "b"], "choice": "b", "propensity": 0.75, "reward": 1.0},
]
ALWAYS_A = deterministic(lambda rec: "a")


def test_ips_by_hand():
    # w = [2, 0, 4, 0], w r = [2, 0, 0, 0]: mean 0.5, sd 1, half-width 1.96 / 2
    e = ips(LOG, ALWAYS_A)
    assert e.value == pytest.approx(0.5)
    assert e.high - e.value == pytest.approx(1.959964 / 2, rel=1e-5)
    assert e.ess == pytest.approx(36 / 20)
    # uniform target: w = [1, 1, 2, 2/3]
    assert ips(LOG, uniform).value == pytest.approx((1 + 2 / 3) / 4)


def test_snips_and_clipping_by_hand():
    assert snips(LOG, ALWAYS_A).value == pytest.approx(2 / 6)
    clipped = snips(LOG, ALWAYS_A, clip=3.0)
    assert clipped.value == pytest.approx(2 / 5)
    assert clipped.clipped == 1
    assert ips(LOG, ALWAYS_A, clip=1.5).value == pytest.approx(1.5 / 4)


def test_dr_by_hand():
    # q = 0.5 everywhere: terms 0.5 + w (r - 0.5) = [1.5, 0.5, -1.5, 0.5]
    e = dr(LOG, ALWAYS_A, lambda rec, v: 0.5)
    assert e.value == pytest.approx(0.25)
    # a perfect-on-average model with zero weight on the residual gives the model's value
    assert dr(LOG, ALWAYS_A, lambda rec, v: 0.7, clip=0.0).value == pytest.approx(0.7)


def test_replay_keeps_agreeing_records_and_lets_a_learner_update():
    seen = []
    e = replay(LOG, lambda rec: "a", update=seen.append)
    assert (e.value, e.n) == (0.5, 2)
    assert [r["propensity"] for r in seen] == [0.5, 0.25]


def test_zero_propensity_is_refused():
    bad = [{**LOG[0], "propensity": 0.0}]
    with pytest.raises(ValueError, match="propensity"):
        ips(bad, ALWAYS_A)


def test_best_variant_per_title_picks_the_higher_ips_mean():
    # IPS sums: a = 1/0.5 = 2, b = 1/0.75 = 1.33: a wins
    pol = best_variant_per_title(LOG)
    assert pol(LOG[0]) == [1.0, 0.0]


def _bandit_log(n: int, seed: int) -> tuple[list[dict], dict[str, float]]:
    """Uniform logging over 3 variants; reward probability depends on a binary context."""
    rng = np.random.default_rng(seed)
    means = {
        (0, "a"): 0.1,
        (0, "b"): 0.3,
        (0, "c"): 0.2,
        (1, "a"): 0.4,
        (1, "b"): 0.1,
        (1, "c"): 0.2,
    }
    out = []
    for _ in range(n):
        ctx = int(rng.random() < 0.5)
        choice = "abc"[rng.integers(3)]
        out.append(
            {
                "title_id": "t",
                "x": [1.0, float(ctx)],
                "variants": ["a", "b", "c"],
                "choice": choice,
                "propensity": 1 / 3,
                "reward": float(rng.random() < means[(ctx, choice)]),
            }
        )
    truth = {"best": 0.5 * 0.3 + 0.5 * 0.4, "uniform": (0.6 + 0.7) / 6}
    return out, truth


def test_estimators_cover_the_truth_of_a_seeded_bandit():
    log, truth = _bandit_log(20_000, seed=5)
    best = deterministic(lambda rec: "b" if rec["x"][1] == 0 else "a")

    def q(rec, v):
        return {"a": 0.25, "b": 0.2, "c": 0.2}[v]  # a context-free (biased) model

    for e in (ips(log, best), snips(log, best), dr(log, best, q)):
        assert e.low <= truth["best"] <= e.high, e
        assert e.high - e.low < 0.05
    greedy = replay(log, lambda r: "b" if r["x"][1] == 0 else "a")
    assert greedy.low <= truth["best"] <= greedy.high
    assert abs(greedy.n - 20_000 / 3) < 300
    u = ips(log, uniform)
    assert u.low <= truth["uniform"] <= u.high


def test_bootstrap_interval_is_close_to_the_normal_one():
    log, _ = _bandit_log(3_000, seed=2)
    normal = ips(log, uniform)
    boot = ips(log, uniform, bootstrap=300, seed=1)
    assert boot.value == pytest.approx(normal.value)
    assert math.isclose(boot.high - boot.low, normal.high - normal.low, rel_tol=0.25)


def test_evaluate_names_each_policy_and_estimator():
    log, _ = _bandit_log(600, seed=3)
    res = evaluate(log, {"uniform": uniform, "always-a": ALWAYS_A})
    assert set(res["uniform"]) == {"ips", "snips", "dr"}
    assert set(res["always-a"]) == {"ips", "snips", "dr", "replay"}


def test_artwork_eval_command_on_a_logged_file(tmp_path, capsys):
    from streams.adapters.jsonl import write_jsonl
    from streams.cli import main

    log, truth = _bandit_log(1_200, seed=8)
    for i, rec in enumerate(log):
        rec["x"] = [1.0, *rec["x"][1:], *([0.0] * 11)]  # the 13-feature context shape
        rec["title_id"] = f"t{i % 3}"
        rec["probabilities"] = [1 / 3] * 3
        rec["request_id"] = f"r{i // 4}"  # rows of four
    write_jsonl(tmp_path / "log.jsonl", log)
    out = tmp_path / "report.json"
    assert main(["artwork-eval", str(tmp_path / "log.jsonl"), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    uni = report["policies"]["uniform"]["ips"]
    assert abs(uni["value"] - truth["uniform"]) <= 0.75 * (uni["high"] - uni["low"])  # 3 SE
    assert "replay (learning online)" in report["policies"]["learned-lints (variant)"]
    pi = report["policies"]["uniform"]["pi-slate"]
    assert pi["n"] == 300 and pi["value"] == pytest.approx(uni["value"])  # G = 1 per row
    assert "best-variant-per-title (fit on 1st half)" in capsys.readouterr().out


def test_pseudo_inverse_by_hand_on_two_rows():
    from online_models.artwork_eval import pseudo_inverse, slate_ips, slates

    def rec(req: str, choice: str, reward: float) -> dict:
        return {"request_id": req, "variants": ["a", "b"], "choice": choice,
                "propensity": 0.5, "reward": reward}  # fmt: skip

    log = [rec("r1", "a", 1.0), rec("r1", "b", 0.0), rec("r2", "a", 0.0), rec("r2", "a", 0.0)]
    assert [len(s) for s in slates(log)] == [2, 2]
    always_a = deterministic(lambda r: "a")
    # r1: weights 2 + 0, G = 2 - 1 = 1, reward 1; r2: G = 4 - 1 = 3, reward 0 -> 1 / 4 exposures
    assert pseudo_inverse(log, always_a).value == pytest.approx(0.25)
    # whole-row IPS: r1 weight 0, r2 weight 4 with reward 0
    assert slate_ips(log, always_a).value == pytest.approx(0.0)
    # the logging policy itself (uniform): G = 1 + 1 - 1 = 1 for every row -> the logged mean
    assert pseudo_inverse(log, uniform).value == pytest.approx(0.25)


def test_pseudo_inverse_handles_competition_within_a_row_where_per_title_ips_cannot():
    """Rows of 3 titles, 2 variants, uniform logging. A title's click chance rises 0.2 with
    variant b and falls 0.1 for each neighbour showing b (additive competition). All-b
    shows every title at base + 0.2 - 0.2 = base: per-title IPS sees +0.1, PI does not."""
    from online_models.artwork_eval import pseudo_inverse

    rng = np.random.default_rng(7)
    base, log = 0.3, []
    for i in range(30_000):
        arts = rng.integers(0, 2, 3)
        for j in range(3):
            p = base + 0.2 * arts[j] - 0.1 * (arts.sum() - arts[j])
            log.append({"request_id": f"r{i}", "variants": ["a", "b"],
                        "choice": "ab"[arts[j]], "propensity": 0.5,
                        "reward": float(rng.random() < p)})  # fmt: skip
    all_b = deterministic(lambda r: "b")
    per_title = ips(log, all_b)
    pi = pseudo_inverse(log, all_b)
    assert not per_title.low <= base <= per_title.high
    assert per_title.value == pytest.approx(base + 0.1, abs=0.01)
    assert pi.low <= base <= pi.high, pi
    assert pi.n == 30_000
