"""Trading simulation and significance statistics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coffee_ml.backtest import TradingRules, simulate

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
