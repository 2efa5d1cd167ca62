"""Backtests: simple (fit once), walk-forward (refit every N bars) and model comparison.

Features are computed once over the whole span (they are causal, which `tests/test_lookahead.py`
proves feature by feature); everything fitted, the scaler included, is fitted per fold on rows
before that fold's test block only. Comparison runs each model in its own process on the same
folds.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from multiprocessing import get_context
from typing import Any

import numpy as np
import pandas as pd

from coffee_ml import metrics
from coffee_ml.backtest.folds import Fold, plan_folds
from coffee_ml.backtest.trading import TradingRules, simulate
from coffee_ml.data.schema import interval_timedelta
from coffee_ml.features import FeatureDataset, FeaturePanel, feature_panel
from coffee_ml.models import NEURAL_MODELS, Forecaster, build_model

METHODS = ("simple", "walk_forward")
_ALIASES = {"modelType": "model_type", "from": "start", "to": "end", "retrainEvery": "retrain_every",
            "warmStart": "warm_start", "feeBps": "fee_bps", "slippageBps": "slippage_bps"}


@dataclass
class BacktestRequest:
    """The platform's request `{"symbol", "modelType", "method", "from", "to"}` plus options."""

    symbol: str
    model_type: str | list[str]
    method: str = "walk_forward"
    start: str | None = None
    end: str | None = None
    interval: str = "1h"
    horizon: int = 24
    window: int = 60
    retrain_every: int | None = 720
    test_fraction: float = 0.5
    scheme: str = "expanding"
    train_bars: int | None = None
    val_fraction: float = 0.15
    warm_start: bool = False
    warm_epochs: int = 3
    max_epochs: int | None = None
    model_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: list[str] | None = None
    features: list[str] | None = None
    fee_bps: float = 10.0
    slippage_bps: float = 5.0
    threshold: float = 0.0
    allow_short: bool = True
    seed: int = 0
    n_jobs: int = 2

    @classmethod
    def from_dict(cls, request: dict[str, Any]) -> "BacktestRequest":
        """Accepts the platform's camelCase keys (`modelType`, `from`, `to`, ...) and ours."""
        known = {f.name for f in fields(cls)}
        args = {}
        for key, value in request.items():
            name = _ALIASES.get(key, key)
            if name not in known:
                raise ValueError(f"unknown backtest request field {key!r}; known: {', '.join(sorted(known | set(_ALIASES)))}")
            args[name] = value
        missing = [k for k in ("symbol", "model_type") if k not in args]
        if missing:
            raise ValueError(f"backtest request needs {', '.join(missing)}")
        return cls(**args)

    def models(self) -> list[str]:
        names = [self.model_type] if isinstance(self.model_type, str) else list(self.model_type)
        return list(dict.fromkeys(names))

    def rules(self) -> TradingRules:
        return TradingRules(self.fee_bps, self.slippage_bps, self.threshold, self.allow_short)

    def check(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")


@dataclass
class ModelBacktest:
    """Out-of-sample forecasts of one model across all folds, and what follows from them."""

    model: str
    interval: str
    origins: pd.DatetimeIndex
    fold: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    last_close: np.ndarray
    bounds: dict[str, np.ndarray]  # "lower_80", "upper_80", ... in log-return space, (n, H)
    folds: pd.DataFrame
    seconds: float
    final_model: Forecaster | None = None
    final_dataset: FeatureDataset | None = None

    def metrics(self) -> pd.DataFrame:
        """Per horizon and overall, with the direction CI and the Diebold-Mariano test vs naive."""
        return metrics.forecast_metrics(self.y_true, self.y_pred, self.last_close, significance=True)

    def coverage(self) -> dict[str, float]:
        out = {}
        for level in ("80", "95"):
            out[f"coverage_{level}"] = metrics.coverage(self.y_true, self.bounds[f"lower_{level}"],
                                                        self.bounds[f"upper_{level}"])
        return out

    def trading(self, rules: TradingRules = TradingRules()) -> tuple[pd.DataFrame, pd.DataFrame]:
        return simulate(self.origins, self.y_pred[:, rules.step - 1], self.y_true[:, 0], self.interval, rules)

    def frame(self, step: int = 1) -> pd.DataFrame:
        """Forecast vs actual price at one step ahead, per origin, with fold and interval bounds."""
        h = step - 1
        p0 = self.last_close
        out = pd.DataFrame({"fold": self.fold, "time": self.origins + step * interval_timedelta(self.interval),
                            "actual": p0 * np.exp(self.y_true[:, h]), "price": p0 * np.exp(self.y_pred[:, h])},
                           index=self.origins)
        for key, arr in self.bounds.items():
            out[key] = p0 * np.exp(arr[:, h])
        return out


def _fit_fold(name: str, request: BacktestRequest, ds: FeatureDataset, previous: Forecaster | None) -> Forecaster:
    if request.warm_start and previous is not None and name in NEURAL_MODELS:
        return previous.warm_start(ds, request.warm_epochs)
    return build_model(name, request.model_params.get(name), max_epochs=request.max_epochs, seed=request.seed,
                       progress=False).fit(ds)


def walk_forward(panel: FeaturePanel, folds: list[Fold], name: str, request: BacktestRequest,
                 keep_model: bool = False) -> ModelBacktest:
    """Fit `name` per fold on rows before the block, forecast every origin in the block."""
    embargo = max(panel.window, panel.horizon)
    parts: dict[str, list] = {k: [] for k in ("rows", "fold", "y_pred", "lower_80", "upper_80", "lower_95", "upper_95")}
    info, model, ds = [], None, None
    t_start = time.perf_counter()
    for fold in folds:
        t0 = time.perf_counter()
        splits = fold.ends(panel.ends, panel.window, panel.horizon)
        if len(splits["train"]) == 0 or len(splits["val"]) < 20:
            raise ValueError(f"fold {fold.index}: {len(splits['train'])} training and {len(splits['val'])} validation "
                             "windows; need more history before the test span")
        ds = panel.dataset(splits, fold.fit_rows, embargo,
                           {"train": fold.fit_rows, "val": fold.val_rows, "test": fold.test_rows})
        model = _fit_fold(name, request, ds, model)
        rows = splits["test"]
        pred = model.predict_rows(ds, rows)
        parts["rows"].append(rows)
        parts["fold"].append(np.full(len(rows), fold.index))
        parts["y_pred"].append(pred)
        for level in model.calibration_.levels:
            lo, hi = model.calibration_.bounds(pred, level)
            tag = round(level * 100)
            parts[f"lower_{tag}"].append(lo)
            parts[f"upper_{tag}"].append(hi)
        training = getattr(model, "training_", None)
        info.append({"fold": fold.index, "train_windows": len(splits["train"]), "val_windows": len(splits["val"]),
                     "test_origins": len(rows), "train_from": panel.features.index[fold.fit_rows[0]],
                     "test_from": panel.features.index[fold.test_rows[0]],
                     "test_to": panel.features.index[fold.test_rows[1] - 1],
                     "epochs": None if training is None else len(training.history),
                     "seconds": time.perf_counter() - t0})
    rows = np.concatenate(parts["rows"])
    return ModelBacktest(
        model=name, interval=panel.interval, origins=panel.features.index[rows], fold=np.concatenate(parts["fold"]),
        y_true=panel.targets.to_numpy()[rows], y_pred=np.concatenate(parts["y_pred"]),
        last_close=panel.close.to_numpy()[rows],
        bounds={k: np.concatenate(parts[k]) for k in ("lower_80", "upper_80", "lower_95", "upper_95")},
        folds=pd.DataFrame(info), seconds=time.perf_counter() - t_start,
        final_model=model if keep_model else None, final_dataset=ds if keep_model else None)


def _plan(request: BacktestRequest, panel: FeaturePanel) -> list[Fold]:
    n = len(panel.features)
    test_start = int(round(n * (1 - request.test_fraction)))
    every = request.retrain_every if request.method == "walk_forward" else None
    return plan_folds(n, test_start, every, max(panel.window, panel.horizon), request.scheme, request.train_bars,
                      request.val_fraction)


def _worker(args: tuple) -> ModelBacktest:
    panel, folds, name, request, threads = args
    import torch

    torch.set_num_threads(threads)
    return walk_forward(panel, folds, name, request)


@dataclass
class BacktestReport:
    request: BacktestRequest
    folds: list[Fold]
    results: dict[str, ModelBacktest]

    def summary(self) -> pd.DataFrame:
        """One row per model: overall metrics with CI and DM p-value, coverage, trading, verdict."""
        rows, rules = {}, self.request.rules()
        hold = None
        for name, res in self.results.items():
            m = res.metrics().loc["all"]
            curves, trade = res.trading(rules)
            hold = trade.loc["buy_and_hold"]
            significant = bool(m["dm_pvalue"] < 0.05)
            if name == "naive":
                verdict = "baseline"
            elif significant and m["dm_stat"] < 0:
                verdict = f"beats naive: yes at p<0.05 (p={m['dm_pvalue']:.2g}, skill {m['skill']:+.1%})"
            else:
                worse = ", significantly worse" if significant else ""
                verdict = f"beats naive: no at p<0.05 (p={m['dm_pvalue']:.2g}, skill {m['skill']:+.1%}{worse})"
            rows[name] = {
                "mae": m["mae"], "naive_mae": m["naive_mae"], "skill": m["skill"], "rmse": m["rmse"],
                "mape": m["mape"], "r2": m["r2"], "dir_acc": m["dir_acc"], "dir_acc_lo": m["dir_acc_lo"],
                "dir_acc_hi": m["dir_acc_hi"], "dm_stat": m["dm_stat"], "dm_pvalue": m["dm_pvalue"],
                **res.coverage(), **{f"strategy_{k}": trade.loc["strategy", k] for k in
                                     ("total_return", "sharpe", "sortino", "max_drawdown", "hit_rate", "turnover")},
                "verdict": verdict,
                "seconds": res.seconds}
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "model"
        if hold is not None:
            table.attrs["buy_and_hold"] = hold.to_dict()
        return table


def run_backtest(request: BacktestRequest | dict[str, Any], candles: pd.DataFrame | None = None,
                 backend: str = "auto", keep_models: bool = False) -> BacktestReport:
    """Run a request: one model, or several compared on identical folds in parallel processes.

    Candles come from the store (symbol, interval, [start, end)) unless given.
    """
    request = request if isinstance(request, BacktestRequest) else BacktestRequest.from_dict(request)
    request.check()
    if candles is None:
        from coffee_ml.data import open_store

        candles = open_store(backend).load_candles(request.symbol, request.interval, request.start, request.end)
        if candles.empty:
            raise ValueError(f"no {request.symbol} {request.interval} candles in [{request.start}, {request.end})")
    panel = feature_panel(candles, request.interval, request.features, request.groups, request.window,
                          request.horizon)
    folds = _plan(request, panel)
    names = request.models()
    jobs = min(request.n_jobs, len(names))
    if jobs <= 1 or keep_models:
        results = {name: walk_forward(panel, folds, name, request, keep_model=keep_models) for name in names}
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            done = pool.map(_worker, [(panel, folds, name, request, threads) for name in names])
            results = dict(zip(names, done))
    return BacktestReport(request, folds, results)
