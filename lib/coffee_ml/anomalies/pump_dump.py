"""Pump-and-dump scoring, 0-100, in four parts as the platform defines it.

For each bar t the pump is the rise from the lowest close of the last `move_bars` bars to the
close at t (the move's start is that low, k bars back):

- volume, 0-30: mean volume over the move's bars against the median volume of the `baseline_bars`
  bars before the move; a spike of +100% scores 0, +500% or more scores 30, linear between
  (points = 30 * clip((spike - 1) / 4, 0, 1), spike = ratio - 1);
- price, 0-30: the rise; 30 * clip(rise / 10%, 0, 1);
- rapidity, 0-20: how few bars the rise took; 20 at one bar, 0 at `move_bars`
  (points = 20 * (move_bars - k) / (move_bars - 1));
- sustainability, 0-20: how much of the rise is given back within `dump_bars` bars after t (the
  dump): 20 * clip((close_t - lowest close after t) / (close_t - move start), 0, 1).

A volume spike or a quick one-bar tick is no pump without a rise: volume and rapidity points are
scaled by clip(rise / `min_rise`, 0, 1), so they count in full only from a `min_rise` move.

Volume, price and rapidity read bars up to t only and are final at t. Sustainability needs bars
after t: until `dump_bars` of them exist it is provisional (computed from those there are), the
score is reported with `max_score` (what it could still reach: the other parts + 20) and
`final` False. Severity: 0-25 LOW, 26-50 MEDIUM, 51-75 HIGH, 76-100 CRITICAL.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

SEVERITIES = ((25, "LOW"), (50, "MEDIUM"), (75, "HIGH"), (100, "CRITICAL"))


def severity(score: np.ndarray | pd.Series) -> np.ndarray:
    """LOW (0-25), MEDIUM (26-50), HIGH (51-75), CRITICAL (76-100) of scores rounded to points."""
    s = np.round(np.asarray(score, dtype=float))
    return np.select([s <= 25, s <= 50, s <= 75], ["LOW", "MEDIUM", "HIGH"], "CRITICAL")


def _trailing_low(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Over the last n values ending at each t (fewer at the start): the lowest and how many bars
    back it lies (0 = at t; the most recent of equal values, so a rise off a flat base counts
    from the last bar of the base)."""
    padded = np.concatenate([np.full(n - 1, np.inf), x])
    win = sliding_window_view(padded, n)[:, ::-1]  # (len(x), n), first column is t
    back = win.argmin(axis=1)
    return win[np.arange(len(x)), back], back


def pump_scores(
    candles: pd.DataFrame, move_bars: int = 12, baseline_bars: int = 168, dump_bars: int = 24, min_rise: float = 0.02
) -> pd.DataFrame:
    """The four parts and the score of a pump ending at every bar (see the module doc).

    Columns: rise, bars (k), volume_ratio, volume_pts, price_pts, rapidity_pts, sustain_pts,
    score, max_score, final, severity. Vectorised over bars (sliding windows, rolling medians)."""
    if move_bars < 2 or baseline_bars < 2 or dump_bars < 1:
        raise ValueError(
            f"move_bars and baseline_bars must be >= 2 and dump_bars >= 1, got {move_bars}, "
            f"{baseline_bars}, {dump_bars}"
        )
    close = candles["close"].to_numpy(dtype=float)
    volume = candles["volume"].to_numpy(dtype=float)
    n = len(close)
    low, back = _trailing_low(close, move_bars)
    rise = close / low - 1.0
    k = np.maximum(back, 1)  # bars the rise took (at least one)
    # mean volume over the move (bars t-k+1 .. t) from cumulative sums
    csum = np.concatenate([[0.0], np.cumsum(volume)])
    idx = np.arange(n)
    move_volume = (csum[idx + 1] - csum[np.maximum(idx + 1 - k, 0)]) / k
    # median volume of the baseline_bars before the move's window (the window itself excluded)
    base = pd.Series(volume).rolling(baseline_bars, min_periods=baseline_bars // 2).median().to_numpy()
    base_before = np.full(n, np.nan)
    lag = move_bars
    base_before[lag:] = base[:-lag]
    ratio = move_volume / base_before
    significant = np.clip(rise / min_rise, 0.0, 1.0)
    volume_pts = 30.0 * np.clip((ratio - 2.0) / 4.0, 0.0, 1.0) * significant  # +100% (ratio 2) -> 0, +500% -> 30
    price_pts = 30.0 * np.clip(rise / 0.10, 0.0, 1.0)
    rapidity_pts = 20.0 * (move_bars - k) / (move_bars - 1) * significant
    # sustainability: lowest close of the next dump_bars bars (fewer near the end: provisional)
    ahead = sliding_window_view(np.concatenate([close[1:], np.full(dump_bars, np.nan)]), dump_bars)[:n]
    lowest_after = np.where(np.isnan(ahead), np.inf, ahead).min(axis=1)
    seen = np.minimum(dump_bars, n - 1 - idx)
    gain = close - low
    given_back = np.where(
        (gain > 0) & np.isfinite(lowest_after), (close - lowest_after) / np.where(gain > 0, gain, 1), 0.0
    )
    sustain_pts = 20.0 * np.clip(given_back, 0.0, 1.0)
    known = np.nan_to_num(volume_pts) + price_pts + rapidity_pts
    score = known + sustain_pts
    out = pd.DataFrame(
        {
            "rise": rise,
            "bars": k,
            "volume_ratio": ratio,
            "volume_pts": volume_pts,
            "price_pts": price_pts,
            "rapidity_pts": rapidity_pts,
            "sustain_pts": sustain_pts,
            "score": score,
            "max_score": np.where(seen >= dump_bars, score, known + 20.0),
            "final": seen >= dump_bars,
        },
        index=candles.index,
    )
    out["severity"] = severity(out["score"])
    return out
