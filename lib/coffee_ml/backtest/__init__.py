"""Backtesting: fold plans, simple and walk-forward evaluation over an estimator, per-fold hooks,
model comparison on identical folds, trading simulation."""

from coffee_ml.backtest.engine import BacktestReport, BacktestRequest, BacktestResult, run_backtest, walk_forward
from coffee_ml.backtest.folds import Fold, plan_folds
from coffee_ml.backtest.hooks import FoldContext, FoldHook, PooledCalibration
from coffee_ml.backtest.trading import TradingRules, simulate

__all__ = [
    "BacktestReport",
    "BacktestRequest",
    "BacktestResult",
    "Fold",
    "FoldContext",
    "FoldHook",
    "PooledCalibration",
    "TradingRules",
    "plan_folds",
    "run_backtest",
    "simulate",
    "walk_forward",
]
