"""Backtests: simple (fit once), walk-forward (refit every N bars) and model comparison.

Features are computed once over the whole span (they are causal, which `tests/test_lookahead.py`
proves feature by feature); everything fitted, the scaler included, is fitted per fold on rows
before that fold's test block only: the walk-forward clones an unfitted estimator per fold, and
per-fold hooks (`backtest.hooks`) fit whatever else is learned from the past. Comparison runs
each model in its own process on the same folds.

Progress goes to stderr as one text bar over folds x models with an ETA (in a terminal and in a
notebook alike; reviewer reports drop stderr), off with `progress=False`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, fields, replace
from multiprocessing import get_context
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm  # text bar on stderr: a widget bar (tqdm.auto) would land in rendered reports

from coffee_ml import evaluation, progress
from coffee_ml.backtest.folds import Fold, plan_folds
from coffee_ml.backtest.hooks import FoldContext, FoldHook, PooledCalibration
from coffee_ml.backtest.trading import TradingRules, simulate
from coffee_ml.features import FeatureDataset, FeaturePanel, feature_panel
from coffee_ml.features.volatility import DEFAULT_HALFLIFE
from coffee_ml.forecast import Forecast
from coffee_ml.models import FineTunable, Forecaster, build_model, get_spec

METHODS = ("simple", "walk_forward")
_ALIASES = {
    "modelType": "model_type",
    "from": "start",
    "to": "end",
    "retrainEvery": "retrain_every",
    "testStart": "test_start",
    "warmStart": "warm_start",
    "feeBps": "fee_bps",
    "slippageBps": "slippage_bps",
}
CALIBRATIONS = ("validation", "pooled")


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
    test_start: str | None = None  # first test origin (a time); overrides test_fraction
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
    calibration: str = "pooled"
    past_origins: int = 5000
    aci_rate: float = 0.01
    vol_halflife: float = DEFAULT_HALFLIFE

    @classmethod
    def from_dict(cls, request: dict[str, Any]) -> "BacktestRequest":
        """Accepts the platform's camelCase keys (`modelType`, `from`, `to`, ...) and ours."""
        known = {f.name for f in fields(cls)}
        args = {}
        for key, value in request.items():
            name = _ALIASES.get(key, key)
            if name not in known:
                raise ValueError(
                    f"unknown backtest request field {key!r}; known: {', '.join(sorted(known | set(_ALIASES)))}"
                )
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

    def hooks(self) -> list[FoldHook]:
        """`calibration="pooled"` (default): recalibrate each fold on its validation forecasts plus
        the last `past_origins` realised out-of-fold ones, with adaptive conformal steering at
        `aci_rate`; "validation": each fold's model keeps its validation-only calibration."""
        if self.calibration == "pooled":
            return [PooledCalibration(self.past_origins, self.aci_rate)]
        return []

    def check(self) -> None:
        """Every problem with the request fails here, before anything is fitted."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {self.calibration!r}")
        stray = set(self.model_params) - set(self.models())
        if stray:
            raise ValueError(
                f"model_params given for {', '.join(sorted(stray))}, which are not in modelType {self.models()}"
            )
        for name in self.models():
            get_spec(name).check_params(self.model_params.get(name))


@dataclass
class BacktestResult:
    """Out-of-sample forecasts of one model across all folds, and what follows from them."""

    model: str
    forecast: Forecast
    folds: pd.DataFrame
    seconds: float
    final_model: Forecaster | None = None
    final_dataset: FeatureDataset | None = None

    def scores(self, names: list[str], rules: TradingRules | None = None) -> dict[str, float]:
        return evaluation.score(self.forecast, names, rules)

    def by_horizon(self, names: list[str] | None = None) -> pd.DataFrame:
        """Per horizon and overall: point metrics with the DM test, direction with its CI."""
        return evaluation.scores_by_horizon(self.forecast, names or [*evaluation.POINT, *evaluation.DIRECTION])

    def trading(self, rules: TradingRules = TradingRules()) -> tuple[pd.DataFrame, pd.DataFrame]:
        f = self.forecast
        return simulate(f.origins, f.at_steps([rules.step]).returns[:, 0], f.actual[:, 0], f.interval, rules)


def _fit_fold(
    estimator: Forecaster, previous: Forecaster | None, ds: FeatureDataset, warm_start: bool, warm_epochs: int
) -> Forecaster:
    if warm_start and isinstance(previous, FineTunable):
        return previous.warm_start(ds, warm_epochs)
    return estimator.clone().fit(ds)


def fold_dataset(panel: FeaturePanel, fold: Fold) -> FeatureDataset:
    """The fold's dataset: its windows per part and a scaler fitted on its fitting rows only."""
    splits = fold.ends(panel.ends, panel.window, panel.horizon)
    if len(splits["train"]) == 0 or len(splits["val"]) < 20:
        raise ValueError(
            f"fold {fold.index}: {len(splits['train'])} training and {len(splits['val'])} validation "
            "windows; need more history before the test span"
        )
    return panel.dataset(
        splits,
        fold.fit_rows,
        max(panel.window, panel.horizon),
        {"train": fold.fit_rows, "val": fold.val_rows, "test": fold.test_rows},
    )


def apply_hooks(
    hooks: Sequence[FoldHook],
    forecast: Forecast,
    fold: Fold,
    ds: FeatureDataset,
    model: Forecaster,
    parts: list[Forecast],
    part_rows: list[np.ndarray],
    name: str,
) -> Forecast:
    """Each hook (cloned) fitted on what was known before the fold's block, then applied to its
    forecast: earlier folds' forecasts (`parts`, ending at `part_rows`) whose outcomes were
    realised by the cut-off, and the dataset with the block's targets hidden."""
    if not hooks:
        return forecast
    realised = [p.select(r + ds.horizon < fold.val_rows[1]) for p, r in zip(parts, part_rows)]
    past = Forecast.concat(realised) if realised and sum(p.n for p in realised) else None
    hidden = ds.targets.copy()
    hidden.iloc[fold.val_rows[1] :] = np.nan
    context = FoldContext(fold, replace(ds, targets=hidden), model, past, name)
    for hook in hooks:
        forecast = hook.clone().fit(context).transform(forecast)
    return forecast


def walk_forward(
    panel: FeaturePanel,
    folds: list[Fold],
    estimator: Forecaster,
    name: str | None = None,
    *,
    warm_start: bool = False,
    warm_epochs: int = 3,
    hooks: Sequence[FoldHook] = (),
    keep_model: bool = False,
    on_fold: Callable[[], None] | None = None,
    report: Callable[[int, Forecast], None] | None = None,
) -> BacktestResult:
    """Fit an unfitted clone of `estimator` per fold on rows before the block (or fine-tune the
    previous fold's model with `warm_start`), forecast every origin in the block, and let each
    hook (cloned per fold) fit on what was known before the block and adjust the forecast.
    `on_fold` is called after each fold (a progress bar's update), `report(fold, forecast)` with
    the fold's test forecast (a search scores the running result and may stop here)."""
    name = name or estimator.model_type
    parts, part_rows, info, model, ds = [], [], [], None, None
    t_start = time.perf_counter()
    for fold in folds:
        t0 = time.perf_counter()
        ds = fold_dataset(panel, fold)
        splits = ds.splits
        model = _fit_fold(estimator, model, ds, warm_start, warm_epochs)
        rows = splits["test"]
        forecast = replace(model.predict(ds, "test", name=name), fold=np.full(len(rows), fold.index))
        forecast = apply_hooks(hooks, forecast, fold, ds, model, parts, part_rows, name)
        parts.append(forecast)
        part_rows.append(rows)
        if report is not None:
            report(fold.index, forecast)
        training = getattr(model, "training_", None)
        info.append(
            {
                "fold": fold.index,
                "train_windows": len(splits["train"]),
                "val_windows": len(splits["val"]),
                "test_origins": len(rows),
                "train_from": panel.features.index[fold.fit_rows[0]],
                "test_from": panel.features.index[fold.test_rows[0]],
                "test_to": panel.features.index[fold.test_rows[1] - 1],
                "epochs": None if training is None else len(training.history),
                "seconds": time.perf_counter() - t0,
            }
        )
        progress.report(
            f"{name} walk-forward fold {len(parts)}/{len(folds)} done ({time.perf_counter() - t_start:.0f} s)"
        )
        if on_fold is not None:
            on_fold()
    return BacktestResult(
        model=name,
        forecast=Forecast.concat(parts),
        folds=pd.DataFrame(info),
        seconds=time.perf_counter() - t_start,
        final_model=model if keep_model else None,
        final_dataset=ds if keep_model else None,
    )


def _plan(request: BacktestRequest, panel: FeaturePanel) -> list[Fold]:
    n = len(panel.features)
    if request.test_start is not None:
        from coffee_ml.data.store import to_utc

        test_start = int(panel.features.index.searchsorted(to_utc(request.test_start)))
        if test_start >= n:
            raise ValueError(f"test_start {request.test_start} is after the last bar ({panel.features.index[-1]})")
    else:
        test_start = int(round(n * (1 - request.test_fraction)))
    every = request.retrain_every if request.method == "walk_forward" else None
    return plan_folds(
        n, test_start, every, max(panel.window, panel.horizon), request.scheme, request.train_bars, request.val_fraction
    )


def _worker(args: tuple) -> BacktestResult:
    panel, folds, name, request, threads = args
    import torch

    torch.set_num_threads(threads)
    return _run_model(panel, folds, name, request)


def _run_model(
    panel: FeaturePanel,
    folds: list[Fold],
    name: str,
    request: BacktestRequest,
    keep_model: bool = False,
    on_fold: Callable[[], None] | None = None,
) -> BacktestResult:
    estimator = build_model(
        name, request.model_params.get(name), max_epochs=request.max_epochs, seed=request.seed, progress=False
    )
    return walk_forward(
        panel,
        folds,
        estimator,
        name,
        warm_start=request.warm_start,
        warm_epochs=request.warm_epochs,
        hooks=request.hooks(),
        keep_model=keep_model,
        on_fold=on_fold,
    )


@dataclass
class BacktestReport:
    request: BacktestRequest
    folds: list[Fold]
    results: dict[str, BacktestResult]

    @property
    def forecasts(self) -> dict[str, Forecast]:
        return {name: r.forecast for name, r in self.results.items()}

    def equity_curves(self, rules: TradingRules | None = None) -> dict[str, pd.DataFrame]:
        """Strategy and buy-and-hold equity per model under the request's (or given) trading rules."""
        rules = rules or self.request.rules()
        return {name: r.trading(rules)[0] for name, r in self.results.items()}

    def summary(self, names: Sequence[str] | None = None) -> pd.DataFrame:
        """The leaderboard (`evaluation.summary_table`) under the request's trading rules."""
        table = evaluation.summary_table(self.forecasts, names, rules=self.request.rules())
        table["seconds"] = [r.seconds for r in self.results.values()]
        return table


def run_backtest(
    request: BacktestRequest | dict[str, Any],
    candles: pd.DataFrame | None = None,
    backend: str = "auto",
    keep_models: bool = False,
    progress: bool = True,
) -> BacktestReport:
    """Run a request: one model, or several compared on identical folds in parallel processes.

    Candles come from the store (symbol, interval, [start, end)) unless given. `progress` shows
    a bar over folds x models with an ETA; in parallel it advances as each model finishes.
    """
    request = request if isinstance(request, BacktestRequest) else BacktestRequest.from_dict(request)
    request.check()
    if candles is None:
        from coffee_ml.data import open_store

        candles = open_store(backend).load_candles(request.symbol, request.interval, request.start, request.end)
        if candles.empty:
            raise ValueError(f"no {request.symbol} {request.interval} candles in [{request.start}, {request.end})")
    panel = feature_panel(
        candles,
        request.interval,
        request.features,
        request.groups,
        request.window,
        request.horizon,
        vol_halflife=request.vol_halflife,
    )
    folds = _plan(request, panel)
    names = request.models()
    jobs = min(request.n_jobs, len(names))
    with tqdm(total=len(folds) * len(names), desc="backtest", unit="fold", disable=not progress) as bar:
        if jobs <= 1 or keep_models:
            results = {}
            for name in names:
                bar.set_postfix_str(name)
                results[name] = _run_model(panel, folds, name, request, keep_model=keep_models, on_fold=bar.update)
        else:
            threads = max(1, (os.cpu_count() or 1) // jobs)
            bar.set_postfix_str(f"{len(names)} models in {jobs} processes")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
                futures = {name: pool.submit(_worker, (panel, folds, name, request, threads)) for name in names}
                name_of = {future: name for name, future in futures.items()}
                for future in as_completed(name_of):
                    future.result()  # the first failure stops the run
                    bar.set_postfix_str(f"{name_of[future]} done", refresh=False)
                    bar.update(len(folds))
            results = {name: future.result() for name, future in futures.items()}
    return BacktestReport(request, folds, results)
