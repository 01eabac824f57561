"""Greenlight forecasts on the slate with planted regional tastes."""

import pytest

from online_models.forecast import GreenlightForecaster
from streams.tools.catalog_intel_cli import forecast_backtest_report
from streams.tools.greenlight_sim import REGIONS, Slate, SlateConfig


@pytest.fixture(scope="module")
def trained():
    slate = Slate(SlateConfig(titles=400, seed=3))
    model = GreenlightForecaster(REGIONS)
    for t in slate.titles:
        model.learn(t.attributes, t.audience)
    return slate, model


def test_backtest_beats_the_similar_titles_baseline_with_honest_intervals():
    report = forecast_backtest_report(titles=400, seed=7, warmup=100)
    m = report["methods"]
    assert report["scored"] == 300
    assert m["model"]["mae_log"] < m["similar_titles"]["mae_log"]
    assert m["model"]["mae_log"] < m["genre_mean"]["mae_log"]
    assert report["planted_mean_mae_log"] < m["model"]["mae_log"]  # nobody beats the floor
    assert 0.7 <= m["model"]["coverage"] <= 0.97  # nominal 80 %


def test_forecast_has_an_interval_around_the_point(trained):
    slate, model = trained
    fc = model.forecast(slate.titles[0].attributes, ["US", "JP"])
    assert set(fc) == {"US", "JP"}
    for f in fc.values():
        assert f["low"] <= f["audience"] <= f["high"] and f["log_low"] < f["log_high"]
    with pytest.raises(ValueError, match="unknown region"):
        model.forecast(slate.titles[0].attributes, ["XX"])


def test_planted_regional_tastes_show_in_the_forecasts(trained):
    slate, model = trained
    # The genre whose planted taste differs most between two regions.
    gap, genre, a, b = max(
        (slate.taste[a][g] - slate.taste[b][g], g, a, b)
        for g in slate.taste["US"]
        for a in REGIONS
        for b in REGIONS
    )
    assert gap > 1.0
    attrs = {**slate.titles[0].attributes, "genres": [genre], "cast": []}
    other = min(slate.taste[a], key=lambda g: slate.taste[a][g] - slate.taste[b][g])
    fc_g = model.forecast(attrs, [a, b])
    fc_o = model.forecast({**attrs, "genres": [other]}, [a, b])
    # Relative to the other genre, the planted favourite does better in a than in b.
    assert (fc_g[a]["log"] - fc_g[b]["log"]) > (fc_o[a]["log"] - fc_o[b]["log"]) + 0.5
