"""Artwork policy: floor, exact propensities, learning, attribution, engine hook, simulator."""

import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from features.catalog import parse_title
from online_models.artwork import (
    DIM,
    FEATURES,
    ArtworkConfig,
    ArtworkHook,
    ArtworkPolicy,
    Attributor,
    context_vector,
    decision_record,
    win_probabilities,
)
from online_models.engine import Engine
from streams.contract import validate_event
from streams.tools.synthetic import ARTWORK_STYLES, SimConfig, Simulation

VARIANTS = ("t1-a0", "t1-a1", "t1-a2")
TV = context_vector({}, "tv", 20, [])
MOBILE = context_vector({}, "mobile", 20, [])


def test_context_has_the_documented_features():
    assert len(FEATURES) == DIM == len(TV)
    x = context_vector({"tone:gritty": 1.0}, "web", 3, [("thriller",), ("comedy",)])
    named = {f: v for f, v in zip(FEATURES, x.tolist(), strict=True) if v}
    assert named == {
        "bias": 1.0,
        "device:web": 1.0,
        "hour:night": 1.0,
        "tone:dark_share": 1.0,
        "recent:intense_share": 0.5,
        "recent:soft_share": 0.5,
    }


@pytest.mark.parametrize("mode", ["ts", "ucb"])
def test_floor_holds_and_choices_follow_the_logged_probabilities(mode):
    pol = ArtworkPolicy(ArtworkConfig(mode=mode, floor=0.06, seed=4))
    for _ in range(300):  # a1 clearly best: the greedy part concentrates on it
        pol.update("t1-a1", TV, 1.0)
        pol.update("t1-a0", TV, 0.0)
        pol.update("t1-a2", TV, 0.2)
    counts: Counter[str] = Counter()
    probs = None
    n = 20_000
    for _ in range(10):  # a list of 2,000 titles with the same variants, ten times
        for d in pol.choose_many([VARIANTS] * (n // 10), TV):
            assert d is not None
            counts[d.choice] += 1
            probs = d.probabilities
            assert d.propensity == d.probabilities[VARIANTS.index(d.choice)]
    assert pol.choose(VARIANTS, TV).probabilities == pytest.approx(probs)
    assert probs is not None
    assert min(probs) >= 0.06 / 3 - 1e-12
    assert sum(probs) == pytest.approx(1.0)
    for v, p in zip(VARIANTS, probs, strict=True):  # the log's propensities are the truth
        assert counts[v] / n == pytest.approx(p, abs=4 * (p * (1 - p) / n) ** 0.5 + 1e-3)
    assert counts["t1-a1"] / n > 0.9


def test_ucb_gives_the_argmax_all_but_the_floor():
    pol = ArtworkPolicy(ArtworkConfig(mode="ucb", floor=0.03))
    for _ in range(100):
        pol.update("t1-a2", TV, 1.0)
    d = pol.choose(VARIANTS, TV)
    assert d.probabilities == pytest.approx((0.01, 0.01, 0.98))


def test_win_probabilities_match_monte_carlo():
    rng = np.random.default_rng(0)
    mu = np.array([[0.3, 0.1, 0.0]])
    sd = np.array([[0.2, 0.4, 0.1]])
    draws = mu + sd * rng.standard_normal((200_000, 3))
    mc = np.bincount(draws.argmax(axis=1), minlength=3) / len(draws)
    assert win_probabilities(mu, sd)[0] == pytest.approx(mc, abs=0.01)


def test_policy_learns_a_context_dependent_preference():
    """Planted truth: on mobile a1 earns 30 %, others 10 %; on tv a2 earns 30 %."""
    rng = np.random.default_rng(1)
    pol = ArtworkPolicy(ArtworkConfig(seed=2))
    best = {"mobile": "t1-a1", "tv": "t1-a2"}
    for _ in range(4000):
        dev = "mobile" if rng.random() < 0.5 else "tv"
        x = MOBILE if dev == "mobile" else TV
        d = pol.choose(VARIANTS, x)
        p = 0.3 if d.choice == best[dev] else 0.1
        pol.update(d.choice, x, float(rng.random() < p))
    for dev, x in (("mobile", MOBILE), ("tv", TV)):
        picks = Counter(pol.choose(VARIANTS, x).choice for _ in range(500))
        assert picks[best[dev]] > 400, (dev, picks)


def test_style_pooling_shares_what_one_title_learned_with_another():
    pol = ArtworkPolicy(ArtworkConfig(pool="style", mode="ucb", floor=0.0))
    pol.learn_styles(
        [
            {"artwork": [{"artwork_id": f"{t}-a{k}", "style": s} for k, s in enumerate("xyz")]}
            for t in ("t1", "t2")
        ]
    )
    for _ in range(50):
        pol.update("t1-a2", TV, 1.0)
        pol.update("t1-a0", TV, 0.0)
        pol.update("t1-a1", TV, 0.0)
    assert pol.choose(("t2-a0", "t2-a1", "t2-a2"), TV).choice == "t2-a2"
    assert pol.observations("t2-a2") == 50


def _rec(choice="t1-a1", user="u1", title="t1"):
    return {"user_id": user, "title_id": title, "choice": choice, "decision_id": "d"}


def _ev(etype, ts, title="t1", **kw):
    return {"event_type": etype, "user_id": "u1", "title_id": title, "ts": ts, **kw}


def test_attribution_of_a_quality_play_through_request_id():
    at = Attributor(window_ms=1000, quality_ratio=0.5)
    at.decided(_rec(), TV)
    assert at.observe(_ev("impression", 0, artwork_id="t1-a1", request_id="r1")) == []
    assert at.observe(_ev("click", 10, request_id="r1")) == []
    assert at.observe(_ev("progress", 20, position_s=40, duration_s=100)) == []
    closed = at.observe(_ev("progress", 30, position_s=50, duration_s=100))
    assert [(c["reward"], c["clicked"], c["exposed_ts"]) for c in closed] == [(1.0, True, 0)]
    assert closed[0]["request_id"] == "r1"  # the row: the slate estimators' unit


def test_no_click_in_the_request_or_too_late_is_reward_zero():
    at = Attributor(window_ms=1000)
    at.decided(_rec(), TV)
    at.observe(_ev("impression", 0, artwork_id="t1-a1", request_id="r1"))
    at.observe(_ev("click", 10, request_id="r-other"))  # another request: not this exposure
    assert at.observe(_ev("complete", 20, position_s=100, duration_s=100)) == []
    closed = at.observe(_ev("play", 1001, title="t9"))  # event time passes the window
    assert [(c["reward"], c["clicked"]) for c in closed] == [(0.0, False)]


def test_impression_of_another_variant_is_not_attributed():
    at = Attributor()
    at.decided(_rec(), TV)
    at.observe(_ev("impression", 0, artwork_id="t1-a0", request_id="r1"))
    assert at.mismatched == 1
    assert at.flush() == []


def _engine_with_titles():
    eng = Engine()
    for t in ("t1", "t2", "t3"):
        eng.catalog.upsert(
            parse_title(
                {
                    "title_id": t,
                    "name": t,
                    "genres": ["drama"],
                    "artwork": [{"artwork_id": f"{t}-a{k}"} for k in range(3)],
                }
            )
        )
    eng.ingest({"event_id": "e1", "event_type": "play", "user_id": "u1", "title_id": "t1",
                "ts": 1000, "position_s": 0, "device": "tv", "country": "GB"})  # fmt: skip
    return eng


def test_engine_keeps_the_first_variant_without_a_hook():
    msg = _engine_with_titles().score_message("u1", 1000, 1001)
    assert msg["experiment_arm"] is None
    assert all(i["artwork_id"] == f"{i['title_id']}-a0" for i in msg["items"])


def test_engine_hook_chooses_logs_and_learns():
    eng = _engine_with_titles()
    eng.artwork = ArtworkHook(ArtworkPolicy(ArtworkConfig(floor=1.0, seed=3)), eng.catalog)
    msg = eng.score_message("u1", 2000, 2001)
    log = eng.artwork.log
    assert [r["title_id"] for r in log] == [i["title_id"] for i in msg["items"]]
    assert len({r["slate_id"] for r in log}) == 1  # one score message, one slate
    for item, rec in zip(msg["items"], log, strict=True):
        assert item["artwork_id"] == rec["choice"]
        assert rec["slot"] == item["rank"] - 1
        assert rec["propensity"] == pytest.approx(1 / 3)
        assert rec["x"][FEATURES.index("device:tv")] == 1.0
    tid, art = log[0]["title_id"], log[0]["choice"]
    base = {"user_id": "u1", "title_id": tid, "device": "tv"}
    for i, (etype, extra) in enumerate(
        [
            ("impression", {"artwork_id": art, "request_id": "r1"}),
            ("click", {"artwork_id": art, "request_id": "r1"}),
            ("complete", {"position_s": 100, "duration_s": 100}),
        ]
    ):
        eng.ingest({**base, "event_id": f"x{i}", "event_type": etype, "ts": 3000 + i, **extra})
    assert [c["reward"] for c in eng.artwork.closed] == [1.0]
    assert eng.artwork.policy.observations(art) == 1


def test_decision_record_is_json():
    d = ArtworkPolicy().choose(VARIANTS, TV)
    rec = decision_record("u1", "t1", VARIANTS, d, TV, 5, "exp:arm")
    assert json.loads(json.dumps(rec))["variants"] == list(VARIANTS)


def test_simulator_without_artwork_effect_is_unchanged():
    events = list(Simulation(SimConfig(users=30, titles=40, seed=3)).events(limit=3000))
    digest = hashlib.sha256(json.dumps(events).encode()).hexdigest()
    # The stream the simulator produced before artwork preferences were planted.
    assert digest == _BEFORE
    assert {e.get("artwork_id") for e in events if "artwork_id" in e} <= {
        f"{e['title_id']}-a0" for e in events
    }


_BEFORE = "0aeb3c52c9572a5e5d814e2c3ff73535ae360ded497ca438160520b014aff3ab"


def test_planted_artwork_preference_raises_clicks():
    def clicks(match: bool) -> int:
        sim = Simulation(SimConfig(users=150, titles=60, seed=9, artwork_effect=1.5))

        def chooser(user, row, device, ts):
            k = ARTWORK_STYLES.index(sim.preferred_style(user, device))
            return [f"{t}-a{k if match else (k + 1) % 3}" for t in row]

        sim.artwork_chooser = chooser
        events = list(sim.events(days=3))
        for ev in events[:500]:
            validate_event(ev)
        return sum(e["event_type"] == "click" for e in events)

    matched, mismatched = clicks(True), clicks(False)
    assert matched > 1.3 * mismatched


def test_explain_shows_context_and_probabilities_without_deciding():
    eng = _engine_with_titles()
    eng.artwork = ArtworkHook(ArtworkPolicy(ArtworkConfig(floor=0.03)), eng.catalog)
    for _ in range(30):
        eng.artwork.policy.update("t2-a1", TV, 1.0)
    doc = eng.artwork.explain(eng.profile("u1"), "t2", 2000, device="tv")
    assert doc["context"]["device:tv"] == 1.0
    probs = {v["artwork_id"]: v["probability"] for v in doc["variants"]}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
    assert max(probs, key=probs.get) == "t2-a1"
    assert eng.artwork.log == []
