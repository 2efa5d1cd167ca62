"""Descriptive statistics of candles that a researcher checks before modelling."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coffee_ml.data.schema import interval_seconds

_SECONDS_PER_YEAR = 365.25 * 24 * 3600


def log_returns(candles: pd.DataFrame, interval: str) -> pd.Series:
    """Close-to-close log returns between consecutive bars only: a return across a gap spans
    several bars and would fatten the tails, so it is left out rather than bridged."""
    step = pd.Timedelta(seconds=interval_seconds(interval))
    r = np.log(candles["close"]).diff()
    return r[candles.index.to_series().diff() == step]


def return_stats(candles: pd.DataFrame, interval: str) -> pd.Series:
    """Log-return moments; volatility annualised from the bar length (crypto trades 24/7)."""
    step = pd.Timedelta(seconds=interval_seconds(interval))
    r = log_returns(candles, interval)
    if r.empty:
        raise ValueError(
            f"need at least two consecutive {interval} bars for return statistics, got {len(candles)} rows"
        )
    return pd.Series(
        {
            "bars": len(candles),
            "returns used": len(r),
            "mean log return": r.mean(),
            "std log return": r.std(),
            "annualised volatility": r.std() * np.sqrt(_SECONDS_PER_YEAR / step.total_seconds()),
            "skew": r.skew(),
            "excess kurtosis": r.kurt(),
            "min log return": r.min(),
            "max log return": r.max(),
            "zero-volume bars": int((candles["volume"] == 0).sum()),
        }
    )
