"""Backtesting: simple and walk-forward evaluation, model comparison, trading simulation."""

from coffee_ml.backtest.engine import BacktestReport, BacktestRequest, ModelBacktest, run_backtest, walk_forward
from coffee_ml.backtest.folds import Fold, plan_folds
from coffee_ml.backtest.trading import TradingRules, simulate

__all__ = ["BacktestReport", "BacktestRequest", "Fold", "ModelBacktest", "TradingRules", "plan_folds",
           "run_backtest", "simulate", "walk_forward"]
