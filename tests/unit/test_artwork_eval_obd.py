"""The artwork estimators on the Open Bandit Dataset sample (Saito et al. 2021), fetched by
``make test-data`` into .cache/obd/ (``make test`` and ``make unit`` run it first).

What is asserted, and why:

* uniform random evaluated on its own log gives that log's mean *exactly* (IPS and SNIPS):
  every weight is 1, so any slip in how records, propensities or weights line up shows;
* IPS, SNIPS and DR equal a direct re-computation of obp's formulas
  (obp/ope/estimators.py, InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting,
  DoublyRobust; obp itself cannot be installed on Python 3.11), with and without
  clipping, and the normal intervals of IPS and DR are built on obp's round-wise rewards;
* the Monte Carlo of the production BTS slate matches, at the first position, the
  probability that an arm's Beta draw is the largest, integrated numerically;
* on campaign "all", the BTS log's mean click (the on-policy truth) lies within the 95 %
  interval of IPS, SNIPS and DR estimated from the random log, and the gap is within
  1.96 standard errors of the difference (truth's own sampling error included). With 38
  clicks in the random log the intervals are about +-0.004 around 0.0046, so this has
  power only against gross errors (weights of the wrong policy or position); the exact
  checks above are the sharp ones. Replay keeps about 1 in 80 impressions (one click),
  so only its match count is checked.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from online_models.artwork_eval import Z95, dr, ips, snips, thompson_slate_probs, uniform
from streams.tools import obd_check, obd_sample

needs_sample = pytest.mark.skipif(
    not obd_sample.present(),
    reason="Open Bandit Dataset sample not in .cache/obd/: run `make test-data` "
    "(make test and make unit fetch it)",
)

CAMPAIGN = "all"
DRAWS = 100_000
SEED = 0
EST = ("ips", "snips", "dr")


@pytest.fixture(scope="module")
def data() -> tuple[list[float], list[float], list[dict], list[dict]]:
    a, b = obd_sample.load_prior(CAMPAIGN)
    return (
        a,
        b,
        obd_sample.load_log("random", CAMPAIGN, len(a)),
        obd_sample.load_log("bts", CAMPAIGN, len(a)),
    )


@pytest.fixture(scope="module")
def result(data) -> obd_check.ObdCheck:
    a, b, random_log, bts_log = data
    return obd_check.check(random_log, bts_log, a, b, clip=20.0, draws=DRAWS, seed=SEED)


@pytest.fixture(scope="module")
def dist(result) -> np.ndarray:
    return result.dist  # the production-prior target, P(item at position)


def _row(result: obd_check.ObdCheck, target: str, estimator: str) -> obd_check.Row:
    (row,) = [r for r in result.rows if r.target == target and r.estimate.estimator == estimator]
    return row


# --- reference: obp's formulas on arrays shaped as obp's (rounds, actions, positions) ----------


def _obp_arrays(log: list[dict], dist: np.ndarray):
    action = np.array([int(r["choice"]) for r in log])
    position = np.array([r["slot"] for r in log])
    reward = np.array([r["reward"] for r in log])
    pscore = np.array([r["propensity"] for r in log])
    action_dist = np.broadcast_to(dist, (len(log), *dist.shape))
    return action, position, reward, pscore, action_dist


def _obp_q_hat(action, position, reward, items: int, slots: int) -> np.ndarray:
    """A reward model as a (items, slots) table: the item's mean click at the position,
    shrunk toward the position's mean by one pseudo-impression (what the check's DR uses)."""
    q = np.zeros((items, slots))
    for k in range(slots):
        at = position == k
        base = reward[at].mean()
        clicks = np.bincount(action[at], weights=reward[at], minlength=items)
        shown = np.bincount(action[at], minlength=items)
        q[:, k] = (clicks + base) / (shown + 1)
    return q


def _obp_round_rewards(log, dist, lambda_=np.inf):
    action, position, reward, pscore, action_dist = _obp_arrays(log, dist)
    n = len(action)
    iw = action_dist[np.arange(n), action, position] / pscore
    iw_clipped = np.minimum(iw, lambda_)
    ipw = reward * iw_clipped
    snipw = reward * iw / iw.mean()  # obp's SNIPW does not clip
    q = _obp_q_hat(action, position, reward, dist.shape[0], dist.shape[1])
    q_hat = np.broadcast_to(q, (n, *q.shape))
    q_at_position = q_hat[np.arange(n), :, position]
    q_factual = q_hat[np.arange(n), action, position]
    pi_at_position = action_dist[np.arange(n), :, position]
    dr_ = np.average(q_at_position, weights=pi_at_position, axis=1)
    dr_ = dr_ + iw_clipped * (reward - q_factual)
    return {"ips": ipw, "snips": snipw, "dr": dr_}


# --- data-free checks of the fetch step ---------------------------------------------------------


def test_fetch_refuses_an_sdist_with_another_digest(tmp_path):
    fake = tmp_path / "fake.tar.gz"
    fake.write_bytes(b"not the obp sdist")
    with pytest.raises(obd_sample.ObdError, match="SHA-256"):
        obd_sample.fetch(tmp_path / "cache", sdist=fake, quiet=True)
    assert not obd_sample.present(tmp_path / "cache")


@pytest.mark.skipif(
    not (obd_sample.default_dir() / obd_sample.SDIST).is_file(),
    reason="obp sdist not in .cache/obd/: run `make test-data`",
)
def test_fetch_extracts_only_the_needed_files_and_is_idempotent(tmp_path):
    dest = tmp_path / "obd"
    top = obd_sample.fetch(dest, sdist=obd_sample.default_dir() / obd_sample.SDIST, quiet=True)
    assert obd_sample.present(dest)
    files = sorted(str(p.relative_to(top)) for p in top.rglob("*") if p.is_file())
    assert files == sorted([*obd_sample.members(), obd_sample.STAMP])
    (dest / obd_sample.SDIST).unlink()  # present: nothing is read or fetched again
    assert obd_sample.fetch(dest, quiet=True) == top


def test_thompson_slate_probs_are_a_distribution_per_slot():
    dist = thompson_slate_probs([2.0, 2.0, 2.0, 2.0], [5.0, 5.0, 5.0, 5.0], 3, 40_000, seed=1)
    assert dist.sum(axis=0) == pytest.approx([1.0, 1.0, 1.0])
    assert dist == pytest.approx(np.full((4, 3), 0.25), abs=0.01)  # exchangeable arms
    sure = thompson_slate_probs([1e6, 1.0, 1.0], [1.0, 1e6, 1e6], 2, 1_000, seed=1)
    assert sure[0, 0] == 1.0 and sure[0, 1] == 0.0


# --- on the sample --------------------------------------------------------------------------


@needs_sample
@pytest.mark.parametrize("campaign", obd_sample.CAMPAIGNS)
def test_uniform_random_on_its_own_log_gives_the_logged_mean_exactly(campaign):
    a, _ = obd_sample.load_prior(campaign)
    log = obd_sample.load_log("random", campaign, len(a))
    mean = float(np.mean([r["reward"] for r in log]))
    assert {r["propensity"] for r in log} == {1 / len(a)}
    assert ips(log, uniform).value == mean
    assert snips(log, uniform).value == mean
    assert ips(log, uniform).ess == len(log)


@needs_sample
def test_monte_carlo_matches_the_first_position_integrated(data, dist):
    """P(arm i draws highest) = integral of f_i(x) prod_{j != i} F_j(x) dx, on a fine grid."""
    a, b, _, _ = data
    x = np.linspace(0.0, 0.02, 2_001)  # every prior's 1 - 1e-12 quantile is below 0.0172
    pdf = stats.beta.pdf(x[:, None], a, b)
    log_cdf = np.log(np.maximum(stats.beta.cdf(x[:, None], a, b), 1e-300))
    others = np.exp(log_cdf.sum(axis=1, keepdims=True) - log_cdf)
    exact = np.trapezoid(pdf * others, x, axis=0)
    assert exact.sum() == pytest.approx(1.0, abs=1e-9)
    se = np.sqrt(exact * (1 - exact) / DRAWS)
    assert (np.abs(dist[:, 0] - exact) <= 5 * se + 1e-4).all()


@needs_sample
def test_ips_snips_dr_agree_with_obps_formulas(data, dist, result):
    _, _, random_log, _ = data
    ref = _obp_round_rewards(random_log, dist)
    assert result.max_weight < 20.0  # clip 20 clips nothing here, so it is obp's lambda_=inf
    prior = obd_check.PRIOR_TARGET
    for name in EST:
        assert _row(result, prior, name).estimate.value == pytest.approx(
            ref[name].mean(), rel=1e-12
        )
    for name in ("ips", "dr"):  # the normal interval is built on obp's round-wise rewards
        e, terms = _row(result, prior, name).estimate, ref[name]
        half = Z95 * terms.std(ddof=1) / math.sqrt(len(terms))
        assert (e.low, e.high) == pytest.approx((terms.mean() - half, terms.mean() + half))

    clipped = _obp_round_rewards(random_log, dist, lambda_=5.0)
    target = obd_check.slot_policy(dist)
    q = obd_check.slot_reward_model(random_log)
    e_ips, e_dr = ips(random_log, target, clip=5.0), dr(random_log, target, q, clip=5.0)
    assert e_ips.clipped > 0 and e_ips.clipped == e_dr.clipped
    assert e_ips.value == pytest.approx(clipped["ips"].mean(), rel=1e-12)
    assert e_dr.value == pytest.approx(clipped["dr"].mean(), rel=1e-12)
    assert snips(random_log, target).value == pytest.approx(ref["snips"].mean(), rel=1e-12)


@needs_sample
def test_on_policy_truth_is_within_each_estimate(result):
    assert result.truth.n == 10_000 and result.truth.value == pytest.approx(0.0042)
    for name in EST:
        row = _row(result, obd_check.PRIOR_TARGET, name)
        assert row.inside, row
        assert abs(row.z) < 1.96, row


@needs_sample
def test_replay_keeps_the_expected_share_of_the_log(result):
    e = _row(result, obd_check.PRIOR_TARGET, "replay").estimate
    # matches are a sum of independent Bernoulli(pi_i): sd below sqrt(expected)
    assert abs(e.n - result.replay_expected) <= 3 * math.sqrt(result.replay_expected)
    assert 0 < e.n < 0.05 * result.truth.n


@needs_sample
def test_artwork_obd_command_prints_the_table_and_writes_json(tmp_path, capsys):
    import json

    from streams.cli import main

    out = tmp_path / "obd.json"
    assert main(["artwork-obd", "--campaign", "men", "--draws", "2000", "--json", str(out)]) == 0
    report = json.loads(out.read_text())["men"]
    assert report["truth"]["value"] == pytest.approx(0.0069)
    assert {(r["target"], r["estimator"]) for r in report["rows"]} == {
        (obd_check.PRIOR_TARGET, "replay"),
        *((t, e) for t in (obd_check.PRIOR_TARGET, obd_check.AS_RUN_TARGET) for e in EST),
    }
    printed = capsys.readouterr().out
    assert "campaign men" in printed and "logged mean 0.00460 (identical)" in printed
