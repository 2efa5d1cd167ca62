"""A causal volatility estimate per bar: the scale that adaptive intervals and confidence use.

sigma_t is the exponentially weighted RMS of one-bar log returns up to and including bar t
(RiskMetrics-style, zero mean: hourly mean returns are ~100x smaller than their spread). It reads
no bar after t, so a forecast made at t may use it. A return across a missing bar is not a one-bar
return and is skipped, not forward-filled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coffee_ml.features.gaps import run_bounds

FLOOR = 1e-6  # a flat stretch (early zero-volume hours) must not give a zero-width interval
DEFAULT_HALFLIFE = 24  # bars; chosen on a 2023-12..2024-11 walk-forward (tests/studies)


def causal_volatility(close: pd.Series, interval: str, halflife: float = DEFAULT_HALFLIFE) -> pd.Series:
    """EWMA standard deviation of one-bar log returns, per bar, using bars <= t only."""
    if halflife <= 0:
        raise ValueError(f"volatility halflife must be > 0 bars, got {halflife}")
    r = np.diff(np.log(close.to_numpy(dtype=np.float64)), prepend=np.nan)
    run_start, _ = run_bounds(close.index, interval)
    r[run_start == np.arange(len(r))] = np.nan  # first bar of a run: no one-bar return into it
    var = pd.Series(r * r, index=close.index).ewm(halflife=halflife, ignore_na=True, min_periods=1).mean()
    return np.sqrt(var.clip(lower=FLOOR**2)).rename("volatility")
