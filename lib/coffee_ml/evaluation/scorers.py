"""Scorers by name: the one vocabulary that backtests, HPO objectives, ensembles, the
leaderboard and the registry's stored metrics use.

`score(forecast, ["mae", "skill", "dir_acc", "brier_skill", "coverage_80", "winkler_80", "sharpe"])`
returns those numbers; `get_scorer(name)` also says which way is better (`loss(value)` turns any
scorer into something to minimise: coverage is best at its nominal level). Interval scorers
exist for every level a forecast carries: `coverage_90` works for a 90% interval. Scorers of
one family (point, direction, probability, one interval level, trading) are computed together
once per forecast and cached on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from coffee_ml.evaluation.direction import direction_scores
from coffee_ml.evaluation.intervals import TERCILES, interval_scores
from coffee_ml.evaluation.point import point_scores
from coffee_ml.evaluation.probability import probability_scores
from coffee_ml.forecast import Forecast

if TYPE_CHECKING:
    from coffee_ml.backtest.trading import TradingRules


def trading_scores(f: Forecast, rules: "TradingRules | None" = None) -> dict[str, float]:
    """Positions from the forecast at `rules.step` (default `backtest.TradingRules()`: long/short on
    the 1-bar forecast, 15 bps per trade), next to buy-and-hold over the same bars."""
    from coffee_ml.backtest.trading import TradingRules, simulate

    rules = rules or TradingRules()
    if not {1, rules.step} <= set(f.steps.tolist()):  # a single-horizon view: no bar-by-bar record
        return dict.fromkeys(
            (
                "sharpe",
                "sortino",
                "total_return",
                "max_drawdown",
                "trade_hit_rate",
                "turnover",
                "hold_sharpe",
                "hold_return",
            ),
            float("nan"),
        )
    one, step = f.at_steps([1]), f.at_steps([rules.step])
    _, summary = simulate(one.origins, step.returns[:, 0], one.actual[:, 0], f.interval, rules)
    s, hold = summary.loc["strategy"], summary.loc["buy_and_hold"]
    return {
        "sharpe": float(s["sharpe"]),
        "sortino": float(s["sortino"]),
        "total_return": float(s["total_return"]),
        "max_drawdown": float(s["max_drawdown"]),
        "trade_hit_rate": float(s["hit_rate"]),
        "turnover": float(s["turnover"]),
        "hold_sharpe": float(hold["sharpe"]),
        "hold_return": float(hold["total_return"]),
    }


_FAMILIES: dict[str, Callable[[Forecast], dict[str, float]]] = {
    "point": point_scores,
    "direction": direction_scores,
    "probability": probability_scores,
}


@dataclass(frozen=True)
class Scorer:
    name: str
    family: str  # "point", "direction", "probability", "trading" or "interval:<level>"
    greater_is_better: bool | None  # None: descriptive, no better or worse
    description: str
    target: float | None = None  # best value when neither larger nor smaller is better (coverage)

    def __call__(self, f: Forecast, rules: "TradingRules | None" = None) -> float:
        return family_scores(f, self.family, rules)[self.name]

    def loss(self, value: float) -> float:
        """A value to minimise: the score itself, its negative, or its distance to the target."""
        if self.target is not None:
            return abs(value - self.target)
        if self.greater_is_better is None:
            raise ValueError(f"scorer {self.name!r} is descriptive and cannot be optimised")
        return -value if self.greater_is_better else value


def family_scores(f: Forecast, family: str, rules: "TradingRules | None" = None) -> dict[str, float]:
    """All scores of one family, computed once per forecast (and trading rules)."""
    if not f.has_actual:
        raise ValueError(f"{f.model}: cannot score a forecast whose outcomes are not known yet")
    cache = f.__dict__.setdefault("_scores", {})
    key = (family, rules) if family == "trading" else family
    if key not in cache:
        if family.startswith("interval:"):
            cache[key] = interval_scores(f, float(family.split(":", 1)[1]))
        elif family == "trading":
            cache[key] = trading_scores(f, rules)
        else:
            cache[key] = _FAMILIES[family](f)
    return cache[key]


_FIXED = [
    Scorer("mae", "point", False, "mean absolute price error"),
    Scorer("rmse", "point", False, "root mean squared price error"),
    Scorer("mape", "point", False, "mean absolute percentage error (%)"),
    Scorer("mean_error", "point", None, "mean signed price error (forecast - actual)"),
    Scorer("max_error", "point", None, "largest over-forecast (price)"),
    Scorer("min_error", "point", None, "largest under-forecast (price, negative)"),
    Scorer("ret_mae", "point", False, "mean absolute log-return error"),
    Scorer("ret_rmse", "point", False, "root mean squared log-return error"),
    Scorer("r2", "point", True, "R² of log returns"),
    Scorer("naive_mae", "point", None, "naive forecast's MAE on the same forecasts"),
    Scorer("naive_rmse", "point", None, "naive forecast's RMSE on the same forecasts"),
    Scorer("naive_mape", "point", None, "naive forecast's MAPE on the same forecasts"),
    Scorer("skill", "point", True, "1 - MAE / MAE(naive)"),
    Scorer("dm_stat", "point", False, "Diebold-Mariano statistic of |error| vs naive (< 0 favours the model)"),
    Scorer("dm_pvalue", "point", None, "Diebold-Mariano two-sided p-value vs naive"),
    Scorer("n", "point", None, "forecasts (origins x steps)"),
    Scorer("origins", "point", None, "forecast origins"),
    Scorer("dir_share", "direction", None, "share of forecasts that take a side"),
    Scorer("dir_acc", "direction", True, "direction accuracy over forecasts that take a side"),
    Scorer("dir_acc_lo", "direction", None, "95% Wilson lower bound of dir_acc (effective n)"),
    Scorer("dir_acc_hi", "direction", None, "95% Wilson upper bound of dir_acc (effective n)"),
    Scorer("dir_n_eff", "direction", None, "effective number of independent direction calls"),
    Scorer("up_share", "direction", None, "share of rising outcomes"),
    Scorer("dir_base", "direction", None, "majority-sign baseline accuracy over all forecasts"),
    Scorer("dir_base_called", "direction", None, "majority-sign baseline accuracy where the model called"),
    Scorer("dir_vs_base_pvalue", "direction", None, "p-value: accuracy equal to the majority-sign baseline"),
    Scorer("pt_stat", "direction", True, "Pesaran-Timmermann statistic"),
    Scorer("pt_pvalue", "direction", None, "Pesaran-Timmermann one-sided p-value (no direction skill)"),
    Scorer("brier", "probability", False, "Brier score of the confidence (direction right)"),
    Scorer("brier_ref", "probability", None, "Brier score of quoting the base rate"),
    Scorer("brier_skill", "probability", True, "1 - Brier / Brier(base rate)"),
    Scorer("confidence_mean", "probability", None, "mean confidence where the model called"),
    Scorer("hit_rate", "probability", None, "observed share of right calls"),
    Scorer("sharpe", "trading", True, "annualised Sharpe of long/short on the 1-bar forecast, after costs"),
    Scorer("sortino", "trading", True, "annualised Sortino of the same strategy"),
    Scorer("total_return", "trading", True, "total return of the same strategy"),
    Scorer("max_drawdown", "trading", True, "maximum drawdown of the same strategy (negative)"),
    Scorer("trade_hit_rate", "trading", True, "share of profitable bars while in the market"),
    Scorer("turnover", "trading", None, "traded notional / capital"),
    Scorer("hold_sharpe", "trading", None, "buy-and-hold Sharpe over the same bars"),
    Scorer("hold_return", "trading", None, "buy-and-hold return over the same bars"),
]
SCORERS: dict[str, Scorer] = {s.name: s for s in _FIXED}
_INTERVAL = re.compile(
    r"^(coverage|width|winkler|winkler_ratio)_(\d+(?:\.\d+)?)"
    rf"(?:_({'|'.join(TERCILES)}))?(_const)?$"
)


def get_scorer(name: str) -> Scorer:
    if name in SCORERS:
        return SCORERS[name]
    m = _INTERVAL.fullmatch(name)
    if m is None or (m.group(1) == "winkler_ratio" and (m.group(3) or m.group(4))):
        raise ValueError(
            f"unknown scorer {name!r}; known: {', '.join(SCORERS)}, and per interval level L: "
            "coverage_L, width_L, winkler_L, winkler_ratio_L (e.g. coverage_80)"
        )
    kind, level = m.group(1), float(m.group(2)) / 100
    if not 0 < level < 1:
        raise ValueError(f"scorer {name!r}: interval level must be between 0 and 100")
    family = f"interval:{level}"
    if kind == "coverage":
        return Scorer(name, family, None, f"share of outcomes inside the {m.group(2)}% interval", target=level)
    better = {"width": False, "winkler": False, "winkler_ratio": False}[kind]
    return Scorer(name, family, better, f"{kind.replace('_', ' ')} of the {m.group(2)}% interval")


def score(f: Forecast, names: Sequence[str], rules: "TradingRules | None" = None) -> dict[str, float]:
    """The named scores of one forecast (its outcomes must be known); `rules` set the trading
    scorers' costs and thresholds."""
    return {name: get_scorer(name)(f, rules) for name in names}


def scores_by_horizon(f: Forecast, names: Sequence[str]) -> pd.DataFrame:
    """One row per step ahead and "all" (horizons pooled per origin)."""
    rows = {str(h): score(f.at_steps([h]), names) for h in f.steps}
    rows["all"] = score(f, names)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "horizon"
    return table


def interval_names(levels: Sequence[float]) -> list[str]:
    """Coverage (pooled and by volatility tercile), width, and Winkler next to the constant-width
    intervals' coverage and Winkler, per level."""
    out = []
    for level in levels:
        tag = f"{level * 100:g}"
        out += [
            f"coverage_{tag}",
            *(f"coverage_{tag}_{t}" for t in TERCILES),
            f"coverage_{tag}_const",
            f"width_{tag}",
            f"winkler_{tag}",
            f"winkler_{tag}_const",
            f"winkler_ratio_{tag}",
        ]
    return out


POINT = ["mae", "naive_mae", "skill", "dm_stat", "dm_pvalue", "rmse", "naive_rmse", "mape", "r2"]
DIRECTION = [
    "dir_share",
    "dir_acc",
    "dir_acc_lo",
    "dir_acc_hi",
    "dir_base_called",
    "up_share",
    "dir_vs_base_pvalue",
    "pt_pvalue",
]
PROBABILITY = ["brier", "brier_ref", "brier_skill"]
TRADING = ["sharpe", "total_return", "max_drawdown", "turnover", "hold_sharpe", "hold_return"]


def summary_names(levels: Sequence[float], trading: bool = True) -> list[str]:
    """The leaderboard's columns: point, direction, probability, intervals (and trading)."""
    return [*POINT, *DIRECTION, *PROBABILITY, *interval_names(levels), *(TRADING if trading else []), "origins"]
