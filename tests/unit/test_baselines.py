"""Baselines asked on the same requests as the model, and the ranker's abstaining heads."""

from __future__ import annotations

import numpy as np
import pytest

from online_models.baselines import CoOccurrence, DecayedPopularity, MostPopular
from online_models.evaluation import RankingMetrics, strongest
from online_models.ranker import Ranker

IDS = [f"t{i}" for i in range(6)]
DAY = 86_400_000


def test_most_popular_counts_and_respects_the_allowed_mask():
    b = MostPopular()
    for idx in (3, 3, 3, 1, 1, 4):
        b.learn_one("u", idx, 0)
    allowed = np.ones(6, dtype=bool)
    assert b.top("x", allowed, IDS, 3, 0) == ["t3", "t1", "t4"]
    allowed[3] = False
    assert b.top("x", allowed, IDS, 2, 0) == ["t1", "t4"]
    assert len(b.top("x", np.ones(6, dtype=bool), IDS, 6, 0)) == 6  # fills with zeros


def test_decayed_popularity_prefers_what_is_popular_lately():
    b = DecayedPopularity(half_life_ms=DAY)
    for u in range(5):
        b.learn_one(f"u{u}", 0, 0)  # five plays, thirty days ago
    for u in range(2):
        b.learn_one(f"v{u}", 2, 30 * DAY)
    allowed = np.ones(6, dtype=bool)
    assert b.top("x", allowed, IDS, 2, 30 * DAY) == ["t2", "t0"]
    assert MostPopular().top("x", allowed, IDS, 1, 0) == ["t0"]
    # far in the future the log-scale units rebase without overflow
    b.learn_one("w", 5, 10_000 * DAY)
    assert b.top("x", allowed, IDS, 1, 10_000 * DAY) == ["t5"]


def test_co_occurrence_scores_the_viewers_last_positives_only():
    b = CoOccurrence(window=2)
    for u in ("a", "b", "c"):
        b.learn_one(u, 0, 0)
        b.learn_one(u, 1, 0)
    for u in ("d", "e", "f", "g"):
        b.learn_one(u, 4, 0)  # most popular overall, never with 0
    b.learn_one("z", 0, 0)
    allowed = np.ones(6, dtype=bool)
    allowed[0] = False  # watched
    assert b.top("z", allowed, IDS, 2, 0) == ["t1", "t4"]  # co-watched first, then popular
    assert b.top("new", allowed, IDS, 1, 0) == ["t4"]  # no history: popularity
    for i in (2, 3, 5):  # pushes 0 out of z's window of two
        b.learn_one("z", i, 0)
    assert b.recent["z"] == [5, 3]


def test_strongest_baseline_is_chosen_per_figure():
    reps = {}
    for name, hits in (("pop", [1, 0, 0, 0]), ("co", [1, 1, 0, 0])):
        rm = RankingMetrics(k=1, min_history=0)
        for h in hits:
            rm.add(["x"] if h else ["y"], "x", history=3, half="first_half")
        reps[name] = rm.summary(10)
    assert strongest(reps, None, "all", "recall@1") == ("co", 0.5)
    assert strongest(reps, "first_half", "history", "recall@1") == ("co", 0.5)
    assert reps["pop"]["second_half"]["all"]["recall@1"] is None


def test_a_head_with_one_class_abstains():
    r = Ranker(["x"], warmup=10)
    rng = np.random.default_rng(0)
    for _ in range(50):
        r.learn("click", {"x": float(rng.random())}, True)  # plays only: no impressions
        r.learn("click", {"x": float(rng.random())}, False, evaluate=False)  # sampled
    assert not r.active("click") and not r.ready
    m = r.metrics()["click"]
    assert m["examples"] == 50 and m["positives"] == 50
    assert m["auc"] is None and m["log_loss"] is None
    for _ in range(20):
        x = float(rng.random())
        r.learn("watch", {"x": x}, x > 0.5)
    assert r.active("watch") and r.ready and not r.active("click")
    w, b = r.weights()
    assert w[0] == pytest.approx(r.models["watch"].weights["x"])  # the click head adds nothing
    assert b == pytest.approx(r.models["watch"].intercept)
