"""Test helpers for forecasts: a hand-built `Forecast` with known answers, bit-identity of two
forecasts, and candles whose future is scrambled (look-ahead tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coffee_ml.forecast import Forecast


def make_forecast(
    returns, actual, *, last_close=None, confidence=None, base_rate=0.5, up_share=0.6, scale=None, half=0.01, model="m"
) -> Forecast:
    returns, actual = np.asarray(returns, float), np.asarray(actual, float)
    n, h = returns.shape
    origins = pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC")
    half = np.broadcast_to(np.asarray(half, float), (n, h)) if np.ndim(half) < 2 else half
    return Forecast(
        model=model,
        interval="1h",
        origins=origins,
        last_close=np.full(n, 100.0) if last_close is None else np.asarray(last_close, float),
        returns=returns,
        intervals={0.8: (returns - half, returns + half)},
        confidence=np.full((n, h), 0.5) if confidence is None else np.asarray(confidence, float),
        scale=np.linspace(0.01, 0.03, n) if scale is None else np.asarray(scale, float),
        base_rate=np.full((n, h), base_rate),
        up_share=np.full((n, h), up_share),
        actual=actual,
        constant_intervals={0.8: (returns - 0.01, returns + 0.01)},
    )


def assert_same_forecast(a: Forecast, b: Forecast) -> None:
    """Bit-identical: origins, returns, every interval (adaptive and constant), confidence, scale."""
    assert a.origins.equals(b.origins) and a.levels == b.levels
    np.testing.assert_array_equal(a.returns, b.returns)
    for level in a.levels:
        for constant in (False, True):
            for x, y in zip(a.bounds(level, constant=constant), b.bounds(level, constant=constant)):
                np.testing.assert_array_equal(x, y)
    for name in ("confidence", "scale", "base_rate", "up_share", "last_close"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def scramble_after(candles: pd.DataFrame, cut_time: pd.Timestamp, seed: int = 0) -> pd.DataFrame:
    """Every candle after `cut_time` multiplied by random factors (prices consistently per bar)."""
    rng = np.random.default_rng(seed)
    out = candles.copy()
    late = out.index > cut_time
    factor = rng.uniform(0.5, 2.0, late.sum())
    for col in ("open", "high", "low", "close"):
        out.loc[late, col] *= factor
    out.loc[late, ["volume", "quote_volume"]] *= rng.uniform(0.1, 10, (late.sum(), 1))
    return out
