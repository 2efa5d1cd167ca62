"""From forecasts to positions to an equity curve, with fees and slippage, next to buy-and-hold.

Timing: the position held over bar t -> t+1 is decided at the close of bar t from the forecast
made with data up to t; it earns close[t+1]/close[t] - 1. Changing the position costs
(fee + slippage) basis points of the traded notional. Bars without a forecast (gaps, the edges of
the test span) are held flat by the strategy, which closes before and reopens after them, paying
both trades. Buy-and-hold stays invested (one entry) and both are measured on the same bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from coffee_ml.data.schema import interval_seconds

SECONDS_PER_YEAR = 365.25 * 24 * 3600  # crypto trades around the clock


@dataclass(frozen=True)
class TradingRules:
    """`threshold`: minimum |predicted log return| to take a side; `allow_short`: short on a
    predicted fall (else flat); `step`: which forecast step drives the position (1 = next bar)."""

    fee_bps: float = 10.0
    slippage_bps: float = 5.0
    threshold: float = 0.0
    allow_short: bool = True
    step: int = 1


def positions(pred_returns: np.ndarray, rules: TradingRules) -> np.ndarray:
    """+1 long, -1 short, 0 flat from predicted log returns at each origin."""
    p = np.where(pred_returns > rules.threshold, 1.0, 0.0)
    if rules.allow_short:
        p = np.where(pred_returns < -rules.threshold, -1.0, p)
    return p


def _curve(pos: np.ndarray, bar_ret: np.ndarray, cost: float, breaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Net return per evaluated bar; at a break (bars without a forecast before this origin) the
    previous position is closed and the new one opened, both paid for."""
    prev = np.concatenate([[0.0], pos[:-1]])
    trades = np.where(breaks, np.abs(prev) + np.abs(pos), np.abs(pos - prev))
    net = pos * bar_ret - cost * trades
    return net, trades


def performance(
    net: np.ndarray, trades: np.ndarray, pos: np.ndarray, bar_ret: np.ndarray, bars_per_year: float
) -> dict[str, float]:
    equity = np.cumprod(1 + net)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    downside = np.sqrt(np.mean(np.minimum(net, 0) ** 2))
    sd = net.std(ddof=1) if len(net) > 1 else np.nan
    active = pos != 0
    return {
        "total_return": float(equity[-1] - 1) if len(equity) else 0.0,
        "sharpe": float(net.mean() / sd * np.sqrt(bars_per_year)) if sd > 0 else float("nan"),
        "sortino": float(net.mean() / downside * np.sqrt(bars_per_year)) if downside > 0 else float("nan"),
        "max_drawdown": float((equity / peak - 1).min()) if len(equity) else 0.0,
        "hit_rate": float(np.mean(pos[active] * bar_ret[active] > 0)) if active.any() else float("nan"),
        "exposure": float(active.mean()),
        "turnover": float(trades.sum()),
        "turnover_per_year": float(trades.mean() * bars_per_year),
        "bars": int(len(net)),
    }


def simulate(
    origins: pd.DatetimeIndex,
    pred_returns: np.ndarray,
    next_bar_returns: np.ndarray,
    interval: str,
    rules: TradingRules = TradingRules(),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Equity curves and a summary (strategy vs buy-and-hold).

    `pred_returns[i]` is the forecast made at the close of bar `origins[i]`; `next_bar_returns[i]`
    is the realised log return of the following bar.
    """
    cost = (rules.fee_bps + rules.slippage_bps) / 1e4
    bar_ret = np.expm1(np.asarray(next_bar_returns, dtype=float))
    pos = positions(np.asarray(pred_returns, dtype=float), rules)
    bpy = SECONDS_PER_YEAR / interval_seconds(interval)
    step = pd.Timedelta(seconds=interval_seconds(interval))
    breaks = np.concatenate([[False], (origins[1:] - origins[:-1]) != step])
    net, trades = _curve(pos, bar_ret, cost, breaks)
    hold = np.ones_like(bar_ret)
    hold_net, hold_trades = _curve(hold, bar_ret, cost, np.zeros_like(breaks))
    curves = pd.DataFrame(
        {"position": pos, "strategy": np.cumprod(1 + net), "buy_and_hold": np.cumprod(1 + hold_net)}, index=origins
    )
    summary = pd.DataFrame(
        {
            "strategy": performance(net, trades, pos, bar_ret, bpy),
            "buy_and_hold": performance(hold_net, hold_trades, hold, bar_ret, bpy),
        }
    ).T
    return curves, summary
