"""The evaluation layer against hand-computed values and known answers: point metrics, honest
direction (share called, majority-sign baseline, Pesaran-Timmermann), Brier skill, Winkler,
coverage by volatility tercile, scorers by name, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coffee_ml import evaluation
from coffee_ml.evaluation.intervals import winkler
from forecasts import make_forecast


def test_point_scores_against_hand_computed_values():
    y_true = np.log(np.array([[110.0 / 100], [190.0 / 200]]))
    y_pred = np.log(np.array([[105.0 / 100], [196.0 / 200]]))
    f = make_forecast(y_pred, y_true, last_close=[100.0, 200.0])
    s = evaluation.score(f, ["mae", "rmse", "mape", "naive_mae", "skill", "r2", "dir_acc", "mean_error"])
    assert s["mae"] == pytest.approx((5 + 6) / 2)
    assert s["rmse"] == pytest.approx(np.sqrt((25 + 36) / 2))
    assert s["mape"] == pytest.approx(100 * (5 / 110 + 6 / 190) / 2)
    assert s["naive_mae"] == pytest.approx(10.0) and s["skill"] == pytest.approx(1 - 5.5 / 10)
    assert s["mean_error"] == pytest.approx((-5 + 6) / 2) and s["dir_acc"] == 1.0
    yt, yp = y_true.ravel(), y_pred.ravel()
    assert s["r2"] == pytest.approx(1 - np.sum((yt - yp) ** 2) / np.sum((yt - yt.mean()) ** 2))


def test_naive_makes_no_call_and_says_so():
    rng = np.random.default_rng(0)
    f = make_forecast(np.zeros((50, 2)), rng.normal(size=(50, 2)))
    s = evaluation.score(f, evaluation.DIRECTION + ["brier_skill"])
    assert s["dir_share"] == 0 and math.isnan(s["dir_acc"]) and math.isnan(s["brier_skill"])
    assert evaluation.direction_text(s) == "no call"
    table = evaluation.summary_table({"naive": f}, ["mae"])
    assert table.loc["naive", "direction"] == "no call" and table.loc["naive", "verdict"] == "baseline"


def test_abstaining_model_is_reported_with_its_share_and_a_wide_interval():
    """20 right calls among 1,000 origins: 100% accuracy, but on 2% of forecasts with a CI that
    says how little that is (not "100% [84%, 100%]" on its own)."""
    rng = np.random.default_rng(1)
    actual = rng.normal(size=(1000, 1))
    pred = np.zeros_like(actual)
    pred[:20] = np.sign(actual[:20]) * 0.01
    s = evaluation.score(make_forecast(pred, actual), evaluation.DIRECTION)
    assert s["dir_acc"] == 1.0 and s["dir_share"] == pytest.approx(0.02)
    assert s["dir_acc_lo"] < 0.85
    assert "on 2% of forecasts" in evaluation.direction_text(s)


def test_always_up_in_a_rising_market_has_no_direction_skill():
    """Right 60% of the time when 60% of outcomes rose: the majority-sign baseline does as well
    and Pesaran-Timmermann finds no skill; a model with real skill passes both tests."""
    rng = np.random.default_rng(2)
    actual = np.where(rng.uniform(size=(4000, 1)) < 0.6, 1.0, -1.0) * rng.uniform(0.1, 1, (4000, 1))
    up = evaluation.score(make_forecast(np.full_like(actual, 0.01), actual, up_share=0.6), evaluation.DIRECTION)
    assert up["dir_acc"] == pytest.approx(up["up_share"]) == pytest.approx(up["dir_base_called"])
    assert math.isnan(up["pt_pvalue"]) or up["pt_pvalue"] > 0.2
    assert math.isnan(up["dir_vs_base_pvalue"]) or up["dir_vs_base_pvalue"] > 0.2
    right = rng.uniform(size=actual.shape) < 0.7
    skilled = np.where(right, np.sign(actual), -np.sign(actual)) * 0.01
    s = evaluation.score(make_forecast(skilled, actual, up_share=0.6), evaluation.DIRECTION)
    assert s["dir_acc"] > 0.67 and s["pt_pvalue"] < 1e-6 and s["dir_vs_base_pvalue"] < 1e-3


def test_pesaran_timmermann_matches_the_textbook_formula():
    x = np.array([1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0], bool)
    y = np.array([1, 0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0], bool)
    n, p, px, py = len(x), np.mean(x == y), x.mean(), y.mean()
    ps = py * px + (1 - py) * (1 - px)
    vp = ps * (1 - ps) / n
    vs = (
        (2 * py - 1) ** 2 * px * (1 - px) / n
        + (2 * px - 1) ** 2 * py * (1 - py) / n
        + 4 * py * px * (1 - py) * (1 - px) / n**2
    )
    stat, pvalue = evaluation.pesaran_timmermann(x, y)
    assert stat == pytest.approx((p - ps) / np.sqrt(vp - vs))
    assert pvalue == pytest.approx(0.5 * math.erfc(stat / math.sqrt(2)))


def test_brier_skill_against_the_base_rate():
    rng = np.random.default_rng(3)
    actual = rng.normal(size=(2000, 1))
    pred = np.where(rng.uniform(size=actual.shape) < 0.65, np.sign(actual), -np.sign(actual)) * 0.01
    hit = np.sign(pred) == np.sign(actual)
    quoting_base = evaluation.score(make_forecast(pred, actual, confidence=np.full(actual.shape, 0.5)), ["brier_skill"])
    assert quoting_base["brier_skill"] == pytest.approx(0.0)
    informed = np.where(hit, 0.7, 0.4)  # knows something, not everything
    assert evaluation.score(make_forecast(pred, actual, confidence=informed), ["brier_skill"])["brier_skill"] > 0.1
    reversed_ = np.where(hit, 0.2, 0.9)
    assert evaluation.score(make_forecast(pred, actual, confidence=reversed_), ["brier_skill"])["brier_skill"] < 0
    table = evaluation.reliability(make_forecast(pred, actual, confidence=informed), strategy="uniform")
    assert table["n"].sum() == 2000 and table["confidence"].round(6).tolist() == [0.4, 0.7]
    assert table["hit_rate"].tolist() == [0.0, 1.0]
    spread = 0.5 + rng.uniform(-0.02, 0.02, actual.shape)  # a narrow band: quantile bins resolve it
    by_quantile = evaluation.reliability(make_forecast(pred, actual, confidence=spread), bins=5)
    assert len(by_quantile) == 5 and by_quantile["n"].tolist() == [400] * 5
    assert len(evaluation.reliability(make_forecast(pred, actual, confidence=spread), strategy="uniform")) == 2


def test_winkler_score_by_hand():
    # 80% interval [0, 1]: inside -> width; 0.5 below -> width + 2/0.2 * 0.5
    np.testing.assert_allclose(
        winkler(np.array([0.5, -0.5, 1.25]), np.zeros(3), np.ones(3), 0.8), [1.0, 1.0 + 10 * 0.5, 1.0 + 10 * 0.25]
    )


def test_coverage_by_volatility_tercile():
    """Outcomes outside the interval only where volatility is high: the pooled figure hides it,
    the tercile table shows it."""
    n = 300
    scale = np.linspace(0.01, 0.03, n)
    actual = np.zeros((n, 1))
    actual[200:] = 0.05  # the calm two thirds inside, the turbulent third outside
    f = make_forecast(np.zeros((n, 1)), actual, scale=scale, half=0.02)
    s = evaluation.score(f, ["coverage_80", "coverage_80_lowvol", "coverage_80_midvol", "coverage_80_highvol"])
    assert s == pytest.approx(
        {"coverage_80": 2 / 3, "coverage_80_lowvol": 1.0, "coverage_80_midvol": 1.0, "coverage_80_highvol": 0.0}
    )
    table = evaluation.coverage_by_tercile({"m": f})
    assert table.loc[("m", "adaptive"), "80% highvol"] == 0.0 and table.loc[("m", "constant"), "80% pooled"] == 2 / 3


def test_scorers_by_name_know_which_way_is_better():
    rng = np.random.default_rng(4)
    f = make_forecast(rng.normal(scale=0.01, size=(300, 3)), rng.normal(scale=0.02, size=(300, 3)))
    for name in [*evaluation.SCORERS, *evaluation.interval_names(f.levels)]:
        value = evaluation.get_scorer(name)(f)
        assert isinstance(value, float), name
    assert evaluation.get_scorer("mae").loss(2.0) == 2.0 and evaluation.get_scorer("skill").loss(0.1) == -0.1
    assert evaluation.get_scorer("coverage_80").loss(0.75) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="descriptive"):
        evaluation.get_scorer("n").loss(1.0)
    assert evaluation.get_scorer("coverage_90").target == pytest.approx(0.9)
    with pytest.raises(ValueError, match="unknown scorer 'accuracy'"):
        evaluation.get_scorer("accuracy")
    with pytest.raises(ValueError, match=r"no 90% interval \(have: 80\)"):
        evaluation.score(f, ["coverage_90"])
    per_h = evaluation.scores_by_horizon(f, ["mae", "dir_acc", "sharpe"])
    assert list(per_h.index) == ["1", "2", "3", "all"] and per_h["sharpe"].iloc[1:3].isna().all()
    assert per_h.loc["1", "sharpe"] == per_h.loc["all", "sharpe"]  # the strategy trades the 1-bar forecast
    assert per_h.loc["2", "mae"] == pytest.approx(evaluation.score(f.at_steps([2]), ["mae"])["mae"])


def test_unrealised_forecasts_cannot_be_scored():
    f = make_forecast(np.zeros((5, 1)), np.zeros((5, 1)))
    from dataclasses import replace

    with pytest.raises(ValueError, match="outcomes are not known"):
        evaluation.score(replace(f, actual=None), ["mae"])


@pytest.mark.parametrize(
    "share, verdict_start, worse",
    [
        (0.5, "beats naive: yes at p<0.05", False),  # predicts half of every move: half the naive error
        (0.0, "beats naive: no at p<0.05", False),  # a hair off naive: no significant difference
        (-1.0, "beats naive: no at p<0.05", True),  # predicts the opposite move: significantly worse
    ],
)
def test_verdict_agrees_with_the_diebold_mariano_test(share, verdict_start, worse):
    rng = np.random.default_rng(5)
    actual = rng.normal(scale=0.01, size=(500, 1))
    pred = share * actual + rng.normal(scale=1e-5, size=actual.shape)
    scores = evaluation.score(make_forecast(pred, actual), evaluation.POINT)
    text = evaluation.verdict(scores)
    assert text.startswith(verdict_start)
    assert evaluation.beats_naive(scores) == text.startswith("beats naive: yes")
    assert ("significantly worse" in text) is worse


def test_edge_cases_answer_instead_of_crashing_or_misleading():
    rng = np.random.default_rng(6)
    few = make_forecast(rng.normal(scale=0.01, size=(20, 24)), rng.normal(scale=0.02, size=(20, 24)))
    s = evaluation.score(few, ["dm_stat", "dm_pvalue"])  # 20 origins of 24-bar forecasts: nothing to test
    assert math.isnan(s["dm_stat"]) and math.isnan(s["dm_pvalue"])
    assert "cannot test" in evaluation.verdict(evaluation.score(few, evaluation.POINT))
    flat = make_forecast(rng.normal(size=(300, 2)), rng.normal(size=(300, 2)), confidence=np.full((300, 2), 0.51))
    table = evaluation.reliability(flat)  # a model without skill: every confidence the base rate
    assert len(table) == 1 and table["n"].iloc[0] == 600
    ties = make_forecast(np.zeros((300, 1)), rng.normal(size=(300, 1)), scale=np.r_[np.full(200, 1e-6), np.ones(100)])
    assert set(np.bincount(evaluation.intervals.volatility_tercile(ties))) == {100}  # ties split by rank
    empty = ties.select(np.zeros(300, bool))
    assert math.isnan(evaluation.score(empty, ["mae", "coverage_80", "dir_acc"])["mae"])


def test_any_interval_level_is_found_by_its_name():
    from dataclasses import replace

    rng = np.random.default_rng(7)
    f = make_forecast(rng.normal(size=(50, 1)), rng.normal(size=(50, 1)))
    wide = (f.returns - 100.0, f.returns + 100.0)  # covers everything: Winkler = width = 200
    odd = replace(f, intervals={0.999: f.intervals[0.8]}, constant_intervals={0.999: wide})
    s = evaluation.score(odd, ["coverage_99.9_const", "winkler_ratio_99.9"])
    expected = winkler(f.actual, *f.intervals[0.8], 0.999).mean() / 200.0
    assert s["coverage_99.9_const"] == 1.0 and s["winkler_ratio_99.9"] == pytest.approx(expected)
