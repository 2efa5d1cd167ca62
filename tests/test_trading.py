"""Trading simulation and significance statistics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from coffee_ml.backtest import TradingRules, simulate
from coffee_ml.metrics import diebold_mariano, forecast_metrics, wilson_interval

FREE = TradingRules(fee_bps=0, slippage_bps=0)


def _times(n):
    return pd.date_range("2025-01-01", periods=n, freq="1h", tz="UTC")


def test_position_at_t_earns_the_next_bar():
    r = np.log(np.array([1.10, 0.90, 1.05, 1.02]))  # realised return of the bar after each origin
    pred = np.array([0.01, 0.02, -0.03, 0.0])  # long, long, short, flat
    curves, summary = simulate(_times(4), pred, r, "1h", FREE)
    np.testing.assert_array_equal(curves["position"], [1, 1, -1, 0])
    np.testing.assert_allclose(curves["strategy"], np.cumprod([1.10, 0.90, 0.95, 1.0]))
    np.testing.assert_allclose(curves["buy_and_hold"], np.cumprod([1.10, 0.90, 1.05, 1.02]))
    assert summary.loc["strategy", "hit_rate"] == pytest.approx(1 / 3)  # the short lost on a rising bar
    assert summary.loc["strategy", "turnover"] == 1 + 0 + 2 + 1


def test_bars_without_a_forecast_are_held_flat_and_cost_a_round_trip():
    times = _times(6)[[0, 1, 4, 5]]  # no forecast for the bars after 02:00 and 03:00
    r = np.log(np.array([1.01, 1.02, 1.03, 0.99]))
    curves, summary = simulate(times, np.ones(4), r, "1h", TradingRules(fee_bps=10, slippage_bps=0))
    # enter (1), hold, exit + re-enter around the hole (2), hold
    np.testing.assert_allclose(curves["strategy"], np.cumprod([1.01 - 0.001, 1.02, 1.03 - 0.002, 0.99]))
    assert summary.loc["strategy", "turnover"] == 3
    assert summary.loc["buy_and_hold", "turnover"] == 1


def test_costs_threshold_and_long_only():
    r = np.log(np.array([1.01, 1.01, 0.99]))
    pred = np.array([0.02, -0.02, 0.001])
    rules = TradingRules(fee_bps=10, slippage_bps=5, threshold=0.005, allow_short=True)
    curves, summary = simulate(_times(3), pred, r, "1h", rules)
    # long (enter: 1 unit traded), short (flip: 2 units), flat below threshold (exit: 1 unit)
    net = np.array([0.01 - 0.0015, -0.01 - 2 * 0.0015, -0.0015])
    np.testing.assert_allclose(curves["strategy"], np.cumprod(1 + net))
    assert summary.loc["buy_and_hold", "turnover"] == 1.0
    long_only, _ = simulate(_times(3), pred, r, "1h", TradingRules(allow_short=False))
    np.testing.assert_array_equal(long_only["position"], [1, 0, 1])


def test_risk_statistics_hand_computed():
    r = np.log1p(np.array([0.02, -0.01, 0.03, -0.04, 0.01]))
    _, summary = simulate(_times(5), np.ones(5), r, "1d", FREE)
    s = summary.loc["strategy"]
    net = np.array([0.02, -0.01, 0.03, -0.04, 0.01])
    assert s["sharpe"] == pytest.approx(net.mean() / net.std(ddof=1) * np.sqrt(365.25))
    assert s["sortino"] == pytest.approx(net.mean() / np.sqrt(np.mean(np.minimum(net, 0) ** 2)) * np.sqrt(365.25))
    equity = np.cumprod(1 + net)
    assert s["max_drawdown"] == pytest.approx(equity[3] / equity[2] - 1)
    assert s["total_return"] == pytest.approx(equity[-1] - 1)


def test_wilson_interval_known_value():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert np.isnan(wilson_interval(0, 0)[0])


def _dm_by_hand(d, h):
    n = len(d)
    mean = sum(d) / n
    gam = [sum((d[t] - mean) * (d[t - k] - mean) for t in range(k, n)) / n for k in range(h)]
    var = (gam[0] + 2 * sum(gam[1:])) / n
    stat = mean / var ** 0.5 * ((n + 1 - 2 * h + h * (h - 1) / n) / n) ** 0.5
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
    table = forecast_metrics(y, good, np.full(500, 100.0), significance=True)
    assert table.loc["1", "dm_stat"] < 0 and table.loc["1", "dm_pvalue"] < 1e-6
    assert table.loc["1", "dir_acc_lo"] < table.loc["1", "dir_acc"] < table.loc["1", "dir_acc_hi"]


def test_direction_interval_uses_the_effective_sample_size():
    rng = np.random.default_rng(3)
    y = rng.normal(0, 0.01, (400, 4))
    table = forecast_metrics(y, y + rng.normal(0, 0.01, y.shape), np.full(400, 100.0), significance=True)
    assert table.loc["1", "dir_acc_n_eff"] == 400 and table.loc["3", "dir_acc_n_eff"] == pytest.approx(400 / 3)
    assert table.loc["all", "dir_acc_n_eff"] == pytest.approx(400 * 4 / 16)  # n origins / H
    width = table["dir_acc_hi"] - table["dir_acc_lo"]
    assert width.loc["all"] > width.loc["1"]
