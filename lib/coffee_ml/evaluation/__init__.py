"""Forecast scoring: one home for judging a `Forecast`.

    point.py         MAE/RMSE/MAPE/R² in price and return terms, next to naive, skill, DM test
    direction.py     share called, accuracy with CI, majority-sign baseline, Pesaran-Timmermann
    probability.py   Brier score and skill of the confidence, reliability table
    intervals.py     coverage pooled / by volatility tercile / per fold, Winkler vs constant width
    significance.py  Wilson interval, Diebold-Mariano (HAC, HLN), Pesaran-Timmermann
    scorers.py       scorers by name (`score`, `get_scorer`), the vocabulary everything else uses
    verdict.py       "beats naive: yes/no at p<0.05 (...)"

`summary_table` is the leaderboard of several forecasts on the same origins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from coffee_ml.evaluation.direction import direction_text
from coffee_ml.evaluation.intervals import coverage_by_fold, coverage_by_tercile
from coffee_ml.evaluation.probability import reliability
from coffee_ml.evaluation.scorers import (
    DIRECTION,
    POINT,
    PROBABILITY,
    SCORERS,
    TRADING,
    Scorer,
    get_scorer,
    interval_names,
    score,
    scores_by_horizon,
    summary_names,
)
from coffee_ml.evaluation.significance import diebold_mariano, pesaran_timmermann, wilson_interval
from coffee_ml.evaluation.verdict import beats_naive, verdict
from coffee_ml.forecast import Forecast

if TYPE_CHECKING:
    from coffee_ml.backtest.trading import TradingRules


def summary_table(
    forecasts: dict[str, Forecast],
    names: Sequence[str] | None = None,
    baseline: str = "naive",
    rules: "TradingRules | None" = None,
) -> pd.DataFrame:
    """One row per model: the named scores (default `summary_names`), a verdict against naive
    and a one-line direction summary; `rules` for the trading scorers."""
    rows = {}
    for model, f in forecasts.items():
        cols = list(names or summary_names(f.levels))
        full = score(f, dict.fromkeys([*cols, *POINT, *DIRECTION]), rules)
        rows[model] = {k: full[k] for k in cols} | {
            "verdict": verdict(full, baseline=model == baseline),
            "direction": direction_text(full),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table


__all__ = [
    "DIRECTION",
    "POINT",
    "PROBABILITY",
    "SCORERS",
    "TRADING",
    "Scorer",
    "beats_naive",
    "coverage_by_fold",
    "coverage_by_tercile",
    "diebold_mariano",
    "direction_text",
    "get_scorer",
    "interval_names",
    "pesaran_timmermann",
    "reliability",
    "score",
    "scores_by_horizon",
    "summary_names",
    "summary_table",
    "verdict",
    "wilson_interval",
]
