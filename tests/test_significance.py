"""Significance tests against hand formulas, and effective sample sizes for overlapping forecasts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from coffee_ml import evaluation
from coffee_ml.evaluation import diebold_mariano, wilson_interval
from forecasts import make_forecast


def test_wilson_interval_known_value():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert np.isnan(wilson_interval(0, 0)[0])


def _dm_by_hand(d, h):
    n = len(d)
    mean = sum(d) / n
    gam = [sum((d[t] - mean) * (d[t - k] - mean) for t in range(k, n)) / n for k in range(h)]
    var = (gam[0] + 2 * sum(gam[1:])) / n
    stat = mean / var**0.5 * ((n + 1 - 2 * h + h * (h - 1) / n) / n) ** 0.5
    return stat, 2 * stats.t.sf(abs(stat), n - 1)


@pytest.mark.parametrize("h", [1, 3])
def test_diebold_mariano_matches_the_formula(h):
    rng = np.random.default_rng(h)
    a, b = np.abs(rng.normal(size=40)), np.abs(rng.normal(size=40)) * 1.3
    stat, p = diebold_mariano(a, b, h)
    ref_stat, ref_p = _dm_by_hand(list(a - b), h)
    assert stat == pytest.approx(ref_stat) and p == pytest.approx(ref_p)


def test_diebold_mariano_detects_a_clearly_better_forecast():
    rng = np.random.default_rng(5)
    y = rng.normal(0, 0.01, (500, 1))
    good = y + rng.normal(0, 0.002, y.shape)
    s = evaluation.score(make_forecast(good, y), ["dm_stat", "dm_pvalue", "dir_acc", "dir_acc_lo", "dir_acc_hi"])
    assert s["dm_stat"] < 0 and s["dm_pvalue"] < 1e-6
    assert s["dir_acc_lo"] < s["dir_acc"] < s["dir_acc_hi"]


def test_direction_interval_uses_the_effective_sample_size():
    rng = np.random.default_rng(3)
    y = rng.normal(0, 0.01, (400, 4))
    table = evaluation.scores_by_horizon(
        make_forecast(y + rng.normal(0, 0.01, y.shape), y), ["dir_n_eff", "dir_acc_lo", "dir_acc_hi"]
    )
    assert table.loc["1", "dir_n_eff"] == 400 and table.loc["3", "dir_n_eff"] == pytest.approx(400 / 3)
    assert table.loc["all", "dir_n_eff"] == pytest.approx(400 * 4 / 16)  # n origins / H
    width = table["dir_acc_hi"] - table["dir_acc_lo"]
    assert width.loc["all"] > width.loc["1"]


def test_diebold_mariano_variance_never_negative():
    """The rectangular HAC kernel can give a negative variance for a strongly autocorrelated loss
    difference; Bartlett weights take over instead of reporting "no difference"."""
    rng = np.random.default_rng(11)
    h, n = 24, 60
    found = 0
    for _ in range(50):
        d = np.convolve(rng.normal(size=n + h - 1), np.ones(h), mode="valid") + 0.3
        dc = d - d.mean()
        rect = dc @ dc / n + 2 * sum(dc[k:] @ dc[:-k] / n for k in range(1, h))
        if rect <= 0:
            found += 1
            stat, p = diebold_mariano(d, np.zeros(n), h)
            bartlett = (dc @ dc / n + 2 * sum((1 - k / h) * (dc[k:] @ dc[:-k]) / n for k in range(1, h))) / n
            hln = np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
            assert stat == pytest.approx(d.mean() / np.sqrt(bartlett) * hln)
            assert p == pytest.approx(2 * stats.t.sf(abs(stat), n - 1)) and p < 1
    assert found > 0
