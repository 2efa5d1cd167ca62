"""A hand-built `Forecast` for tests that need known answers (evaluation, significance)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coffee_ml.forecast import Forecast


def make_forecast(returns, actual, *, last_close=None, confidence=None, base_rate=0.5, up_share=0.6, scale=None,
                  half=0.01, model="m") -> Forecast:
    returns, actual = np.asarray(returns, float), np.asarray(actual, float)
    n, h = returns.shape
    origins = pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC")
    half = np.broadcast_to(np.asarray(half, float), (n, h)) if np.ndim(half) < 2 else half
    return Forecast(model=model, interval="1h", origins=origins,
                    last_close=np.full(n, 100.0) if last_close is None else np.asarray(last_close, float),
                    returns=returns, intervals={0.8: (returns - half, returns + half)},
                    confidence=np.full((n, h), 0.5) if confidence is None else np.asarray(confidence, float),
                    scale=np.linspace(0.01, 0.03, n) if scale is None else np.asarray(scale, float),
                    base_rate=np.full((n, h), base_rate), up_share=np.full((n, h), up_share), actual=actual,
                    constant_intervals={0.8: (returns - 0.01, returns + 0.01)})
