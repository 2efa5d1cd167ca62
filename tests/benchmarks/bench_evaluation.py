"""Evaluation benchmark: scoring a year of hourly forecasts, 8,736 origins x 24 horizons, with every
scorer and test (point with Diebold-Mariano, direction with Pesaran-Timmermann, probability,
intervals per level, tercile and fold, trading), by horizon and pooled; target < 1 s.

The forecast comes from a real walk-forward (drift, refit every 720 bars, window 60, horizon 24,
test span 2024-12-01..2025-12-01 of the bundled sample), built once and not timed. Scores are
cached on a `Forecast`, so every repetition scores a fresh copy (`dataclasses.replace`) and
measures the computation, not the cache.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

import pandas as pd
from common import timed

from coffee_ml import evaluation
from coffee_ml.backtest import run_backtest
from coffee_ml.data import load_sample
from coffee_ml.evaluation.intervals import TERCILES
from coffee_ml.features import feature_panel
from coffee_ml.forecast import Forecast, level_tag

MODEL = "drift"
TEST_FROM, END = "2024-12-01", "2025-12-01"
REQUEST = {
    "symbol": "BTCUSDT",
    "modelType": MODEL,
    "method": "walk_forward",
    "retrainEvery": 720,
    "horizon": 24,
    "window": 60,
    "n_jobs": 1,
}
ORIGINS = 8_736  # every hour of the year whose 24-bar outcome is known (8,760 - 24)
REPEAT = 5


def walk_forward_forecast() -> Forecast:
    """Out-of-sample forecasts at every origin of the last year, from a year of history before it."""
    candles = load_sample().loc["2023-12-01":END]
    panel = feature_panel(candles, "1h", None, None, REQUEST["window"], REQUEST["horizon"])
    test_start = panel.features.index.get_loc(pd.Timestamp(TEST_FROM, tz="UTC"))
    fraction = 1 - (test_start + 0.25) / len(panel.features)  # run_backtest rounds n * (1 - fraction)
    f = run_backtest({**REQUEST, "test_fraction": fraction}, candles=candles, progress=False).results[MODEL].forecast
    if f.n != ORIGINS or f.origins[0] != pd.Timestamp(TEST_FROM, tz="UTC"):
        raise RuntimeError(f"expected {ORIGINS} origins from {TEST_FROM}, got {f.n} from {f.origins[0]}")
    return f


def all_names(f: Forecast) -> list[str]:
    """Every scorer: the fixed ones (trading included), every interval scorer per level, and the
    constant-width variants they are compared against."""
    const = []
    for level in f.levels:
        tag = level_tag(level)
        const += [f"coverage_{tag}_const", f"winkler_{tag}_const", *(f"coverage_{tag}_{t}_const" for t in TERCILES)]
    return [*evaluation.SCORERS, *evaluation.interval_names(f.levels), *const]


def score_everything(f: Forecast, names: list[str]) -> None:
    evaluation.scores_by_horizon(f, names)
    evaluation.summary_table({MODEL: f})
    evaluation.coverage_by_tercile({MODEL: f})
    evaluation.coverage_by_fold(f)
    evaluation.reliability(f)


def run() -> list[dict]:
    f = walk_forward_forecast()
    names = all_names(f)
    size = f"{f.n:,} origins x {f.horizon} horizons"
    score_everything(replace(f), names)  # warm-up: imports, first-call costs
    every = statistics.median(timed(lambda: score_everything(replace(f), names), REPEAT))
    by_horizon = statistics.median(timed(lambda: evaluation.scores_by_horizon(replace(f), names), REPEAT))
    pooled = statistics.median(timed(lambda: evaluation.score(replace(f), names), REPEAT))
    tests = statistics.median(
        timed(
            lambda: (
                evaluation.summary_table({MODEL: replace(f)}),
                evaluation.coverage_by_tercile({MODEL: replace(f)}),
                evaluation.coverage_by_fold(replace(f)),
                evaluation.reliability(replace(f)),
            ),
            REPEAT,
        )
    )
    return [
        {
            "benchmark": f"score {size}, {len(names)} scorers by horizon + leaderboard, terciles, folds, "
            "reliability (fresh Forecast)",
            "measured": every,
            "unit": "s",
            "target": "< 1 s",
        },
        {
            "benchmark": f"  of which scores_by_horizon ({f.horizon} steps + pooled)",
            "measured": by_horizon,
            "unit": "s",
            "target": "(info)",
        },
        {"benchmark": "  pooled only: score(f, every name)", "measured": pooled, "unit": "s", "target": "(info)"},
        {
            "benchmark": "  summary_table + coverage_by_tercile + coverage_by_fold + reliability, each uncached",
            "measured": tests,
            "unit": "s",
            "target": "(info)",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
