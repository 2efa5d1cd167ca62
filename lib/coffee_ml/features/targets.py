"""Targets (forward log returns) and the way back from predicted returns to a priced path.

The target at bar t for horizon h is ln(close[t+h] / close[t]): it is known once bar t+h has
closed and reads only bars t+1..t+h (close[t] is already observed at t). Log returns add over
time and are scale-free, so one model serves any price level; `returns_to_prices` undoes them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coffee_ml.data.schema import interval_timedelta
from coffee_ml.features.gaps import run_bounds


def target_names(horizon: int) -> list[str]:
    return [f"fwd_logret_{h}" for h in range(1, horizon + 1)]


def forward_log_returns(close: pd.Series, horizon: int, interval: str | None = None) -> pd.DataFrame:
    """Cumulative forward log returns ln(close[t+h]/close[t]) for h = 1..horizon, one column each.

    NaN where t+h is past the end, and, when `interval` is given, where bars t..t+h are not
    consecutive (a target must never bridge a missing bar). `close` must be positive and finite.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    log_close = np.log(close.to_numpy(dtype=np.float64))
    n = len(log_close)
    out = np.full((n, horizon), np.nan)
    for h in range(1, min(horizon, n - 1) + 1):  # loop over horizons (columns), not rows
        np.subtract(log_close[h:], log_close[:-h], out=out[:-h, h - 1])
    if interval is not None:
        _, run_end = run_bounds(close.index, interval)
        reach = run_end - np.arange(n)  # how many bars ahead stay consecutive
        out[reach[:, None] < np.arange(1, horizon + 1)[None, :]] = np.nan
    return pd.DataFrame(out, index=close.index, columns=target_names(horizon))


def horizon_timestamps(last_time: pd.Timestamp, horizon: int, interval: str) -> pd.DatetimeIndex:
    """Open times of the `horizon` bars after `last_time`, stepping by the bar interval."""
    step = interval_timedelta(interval)
    return pd.DatetimeIndex([pd.Timestamp(last_time)] * horizon) + step * np.arange(1, horizon + 1)


def returns_to_prices(
    log_returns: np.ndarray, last_close: float, last_time: pd.Timestamp, interval: str, cumulative: bool = True
) -> pd.Series:
    """Turn predicted log returns for the next bars into a close-price path with timestamps.

    `log_returns[k]` refers to bar k+1 after the last observed bar (`last_time`, `last_close`).
    With `cumulative=True` (the form of `forward_log_returns` targets) each value is the return
    from the last close; with `cumulative=False` each is a one-bar return and they are summed.
    """
    r = np.asarray(log_returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"log_returns must be one-dimensional (one path), got shape {r.shape}")
    path = last_close * np.exp(r if cumulative else np.cumsum(r))
    return pd.Series(path, index=horizon_timestamps(last_time, len(r), interval), name="close")
