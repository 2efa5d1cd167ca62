"""Flash-crash risk, 0-100 per bar, from four proxies of a market about to fall through its bids.

Each component is the bar's percentile rank against the same quantity over the trailing
`rank_bars` bars (itself included, nothing later), times 25 points:

- liquidation: the drawdown from the highest close of the last `fast_bars` bars, in units of the
  causal volatility, times the volume surge (volume over `fast_bars` / trailing median) - a fast
  fall on heavy volume, as forced selling looks;
- order flow: the taker-sell share of volume over `fast_bars` (1 - taker_buy_base / volume);
- depth: illiquidity, |log return| per unit of quote volume over `fast_bars` (Amihud); with an
  order book (`book`: bid_depth and ask_depth per bar) the inverse of the visible depth instead;
- cascade: the run of consecutive down bars larger than one volatility with rising volume,
  25 points at a run of `fast_bars` (not ranked: it is zero most of the time).

Without taker columns the order-flow part is left out and the others are rescaled to 100, with a
warning; `sources` on the result says which proxies were used. Ranks use pandas' rolling rank,
so every value at t reads bars up to t only.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from coffee_ml.anomalies.pump_dump import severity
from coffee_ml.anomalies.settings import resolve
from coffee_ml.features.volatility import causal_volatility


def _rank(x: pd.Series, bars: int) -> pd.Series:
    return x.rolling(bars, min_periods=min(bars, 50)).rank(pct=True)


def _run_length(flag: np.ndarray) -> np.ndarray:
    """Length of the run of True ending at each bar (0 where False)."""
    idx = np.arange(len(flag))
    last_false = np.maximum.accumulate(np.where(~flag, idx, -1))
    return np.where(flag, idx - last_false, 0)


def crash_risk(
    candles: pd.DataFrame,
    interval: str,
    fast_bars: int = 3,
    rank_bars: int | None = None,
    book: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per bar: the four components (0-25 each), score 0-100, level; `.attrs["sources"]`.
    `rank_bars` None: the default for `interval` (720 hours, 1440 minutes; see `settings`)."""
    rank_bars = resolve(interval, {"rank_bars": rank_bars}, ("rank_bars",))["rank_bars"]
    close, volume = candles["close"].astype(float), candles["volume"].astype(float)
    vol = causal_volatility(close, interval)
    r = np.log(close).diff()
    surge = volume.rolling(fast_bars).sum() / (fast_bars * volume.rolling(rank_bars, min_periods=50).median())
    drawdown = (1 - close / close.rolling(fast_bars + 1).max()) / vol
    parts = {"liquidation": drawdown * surge}
    sources = ["liquidation: drawdown x volume surge"]
    if "taker_buy_base" in candles and candles["taker_buy_base"].notna().any():
        sell = 1 - candles["taker_buy_base"].astype(float).rolling(fast_bars).sum() / volume.rolling(fast_bars).sum()
        parts["order_flow"] = sell
        sources.append("order flow: taker-sell share")
    else:
        warnings.warn(
            "no taker_buy_base column: flash-crash risk without the order-flow part (OHLCV only)", stacklevel=2
        )
    if book is not None:
        depth = (book["bid_depth"] + book["ask_depth"]).reindex(candles.index).astype(float)
        parts["depth"] = 1.0 / depth
        sources.append("depth: order-book bid + ask depth")
    else:
        quote = (
            candles["quote_volume"].astype(float)
            if "quote_volume" in candles and candles["quote_volume"].notna().any()
            else volume * close
        )
        parts["depth"] = r.abs().rolling(fast_bars).sum() / quote.rolling(fast_bars).sum()
        sources.append("depth: Amihud illiquidity (|return| per quote volume)")
    down = ((r < -vol.shift(1)) & (volume > volume.shift(1))).to_numpy()
    cascade = pd.Series(np.minimum(_run_length(down) / fast_bars, 1.0), index=candles.index)
    sources.append("cascade: run of large down bars on rising volume")
    weight = 100.0 / (len(parts) + 1)
    out = pd.DataFrame({name: weight * _rank(x, rank_bars) for name, x in parts.items()}, index=candles.index)
    out["cascade"] = weight * cascade.where(out.notna().all(axis=1))
    out["score"] = out.sum(axis=1, min_count=len(parts) + 1)
    out["level"] = np.where(out["score"].notna(), severity(out["score"].fillna(0)), None)
    out.attrs["sources"] = sources
    return out


def future_drawdown(candles: pd.DataFrame, bars: int) -> pd.Series:
    """The largest fall from the close at t to a low within the next `bars` bars (a fraction >= 0).
    Reads the future on purpose: it is what the risk score at t is judged against."""
    low = candles["low"].astype(float)
    ahead = low[::-1].rolling(bars, min_periods=1).min()[::-1].shift(-1)
    return (1 - ahead / candles["close"].astype(float)).clip(lower=0)


def crash_forecast_table(
    risk: pd.DataFrame,
    candles: pd.DataFrame,
    interval: str,
    drop: float | None = None,
    bars: int | None = None,
    thresholds: tuple[float, ...] = (50, 65, 80),
) -> pd.DataFrame:
    """Does a high score precede large drawdowns? For "drawdown >= `drop` within `bars` bars": per
    score threshold the alert rate, precision and recall, next to a trailing-volatility baseline
    that raises the same share of alerts (its top bars by causal volatility), and the base rate.
    `drop`/`bars` None: the defaults for `interval` (5% in 24 hours, 2% in 60 minutes; see `settings`)."""
    s = resolve(interval, {"crash_drop": drop, "crash_bars": bars}, ("crash_drop", "crash_bars"))
    drop, bars = s["crash_drop"], s["crash_bars"]
    drawdown = future_drawdown(candles, bars)
    target = drawdown >= drop
    valid = risk["score"].notna() & drawdown.notna()
    valid.iloc[-bars:] = False  # the last bars have no complete future
    y, score = target[valid].to_numpy(), risk["score"][valid].to_numpy()
    vol = causal_volatility(candles["close"], interval)[valid].to_numpy()
    rows = []
    for th in thresholds:
        alert = score >= th
        rate = alert.mean()
        base_alert = vol >= np.nanquantile(vol, 1 - rate) if rate > 0 else np.zeros_like(alert)
        rows.append(
            {
                "threshold": th,
                "alerts": int(alert.sum()),
                "alert_rate": rate,
                "precision": y[alert].mean() if alert.any() else np.nan,
                "recall": y[alert].sum() / max(y.sum(), 1),
                "vol_precision": y[base_alert].mean() if base_alert.any() else np.nan,
                "vol_recall": y[base_alert].sum() / max(y.sum(), 1),
                "base_rate": y.mean(),
                "events": int(y.sum()),
            }
        )
    return pd.DataFrame(rows).set_index("threshold")
