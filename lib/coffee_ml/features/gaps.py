"""Contiguous runs of bars: where the candle series has gaps.

Candles exist only where trading happened and nothing is forward-filled, so a missing bar is a
hole in the index. Windows and targets must never bridge such a hole; both ask the same question
("is every bar from i to j present?"), answered here in O(1) per row from run boundaries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coffee_ml.data.schema import interval_timedelta


def check_time_index(index: pd.Index, interval: str) -> np.ndarray:
    """Bar open times as int64 milliseconds, after checking the index is fit for windowing.

    The index must be a tz-aware UTC DatetimeIndex, strictly increasing, with bars aligned to the
    interval grid (every step a whole multiple of the bar length); anything else is a data-layer
    bug that would silently corrupt gap detection, so it raises.
    """
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise TypeError(
            f"candles must be indexed by a tz-aware UTC DatetimeIndex, got {type(index).__name__}"
            + (f" with dtype {index.dtype}" if isinstance(index, pd.DatetimeIndex) else "")
        )
    ms = index.as_unit("ms").asi8
    step = np.diff(ms)
    if (step <= 0).any():
        i = int(np.flatnonzero(step <= 0)[0])
        raise ValueError(
            f"candle index must be strictly increasing; row {i + 1} ({index[i + 1]}) "
            f"does not come after row {i} ({index[i]})"
        )
    bar = int(interval_timedelta(interval) / pd.Timedelta(milliseconds=1))
    off_grid = step % bar != 0
    if off_grid.any():
        i = int(np.flatnonzero(off_grid)[0])
        raise ValueError(
            f"bar spacing is not a multiple of {interval}: {index[i]} -> {index[i + 1]} "
            f"({int(off_grid.sum())} such step(s))"
        )
    return ms


def run_bounds(index: pd.Index, interval: str) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the first and last row of the gap-free run of bars it belongs to.

    Rows i..j are consecutive bars exactly when `run_start[j] <= i` (equivalently
    `run_end[i] >= j`).
    """
    ms = check_time_index(index, interval)
    n = len(ms)
    bar = int(interval_timedelta(interval) / pd.Timedelta(milliseconds=1))
    starts_run = np.ones(n, dtype=bool)
    starts_run[1:] = np.diff(ms) != bar
    rows = np.arange(n)
    run_start = np.maximum.accumulate(np.where(starts_run, rows, 0))
    ends_run = np.ones(n, dtype=bool)
    ends_run[:-1] = starts_run[1:]
    run_end = np.minimum.accumulate(np.where(ends_run, rows, n - 1)[::-1])[::-1]
    return run_start, run_end


def count_gaps(index: pd.Index, interval: str) -> int:
    """Number of places where at least one bar is missing."""
    ms = check_time_index(index, interval)
    bar = int(interval_timedelta(interval) / pd.Timedelta(milliseconds=1))
    return int((np.diff(ms) != bar).sum())
