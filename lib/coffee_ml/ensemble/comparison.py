"""Members and every ensemble strategy on identical walk-forward folds, members fitted once.

Per fold the members are fitted once and predict once; every strategy is then only a combiner
fitted on shared predictions. The combiners that learn from out-of-fold member predictions
(inverse-error weights, regime weights, the stacked ridge) use the members' own test forecasts
of earlier folds whose outcomes were realised before the fold's cut-off: the walk-forward's
member predictions, computed once. Only while fewer than MIN_PAST of those exist (the first
fold) do they fall back to the inner walk-forward of `EnsembleForecaster.out_of_fold`. Each model's and strategy's test forecasts get the
same per-fold recalibration hooks as any backtest (`PooledCalibration` by default), so all are
judged alike by the evaluation layer.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from coffee_ml import progress
from coffee_ml.backtest.engine import apply_hooks, fold_dataset
from coffee_ml.backtest.folds import Fold
from coffee_ml.backtest.hooks import FoldHook, PooledCalibration
from coffee_ml.ensemble.forecaster import EnsembleForecaster, OutOfFold
from coffee_ml.features import FeaturePanel
from coffee_ml.forecast import Forecast
from coffee_ml.models.base import contexts


class _Shared:
    """A fitted member whose predictions on the same windows are computed once and then shared
    by every strategy of the fold (keyed by the windows' contents)."""

    def __init__(self, model) -> None:
        self.model = model
        self.cache: dict[tuple, np.ndarray] = {}

    def _predict_returns(self, X: np.ndarray, log_close: np.ndarray) -> np.ndarray:
        key = (X.shape, hashlib.blake2b(log_close.tobytes() + X[:, -1].tobytes(), digest_size=16).digest())
        if key not in self.cache:
            self.cache[key] = self.model._predict_returns(X, log_close)
        return self.cache[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


MIN_PAST = 500  # out-of-fold rows from earlier folds needed before they replace the inner walk-forward


@dataclass
class Comparison:
    """Test forecasts per member and per strategy (`forecasts`), seconds spent on each part
    (`seconds`: member fits and forecasts, out-of-fold member fits, combiners), the last fold's
    fitted ensembles (`last`: their weights per regime, stacking coefficients)."""

    forecasts: dict[str, Forecast]
    seconds: dict[str, float]
    last: dict[str, EnsembleForecaster]
    folds: pd.DataFrame


def compare(
    panel: FeaturePanel,
    folds: Sequence[Fold],
    members: Sequence[str],
    strategies: Sequence[str],
    *,
    member_params: dict[str, dict[str, Any]] | None = None,
    weights: list[float] | None = None,
    max_epochs: int | None = None,
    seed: int = 0,
    inner_folds: int = 2,
    hooks: Sequence[FoldHook] = (PooledCalibration(),),
    on_fold: Callable[[], None] | None = None,
) -> Comparison:
    """Walk-forward over `folds`: each member and each strategy's test forecasts, all from the
    same member fits per fold. `weights` are the fixed weights of `weighted` (None: inverse
    out-of-fold error)."""
    template = EnsembleForecaster(
        list(members), "average", member_params=member_params, inner_folds=inner_folds, max_epochs=max_epochs, seed=seed
    )
    template._check()
    ensembles = {
        s: template.clone().set_params(strategy=s, weights=(weights or "inverse_error") if s == "weighted" else None)
        for s in strategies
    }
    for e in ensembles.values():
        e._check()
    need_oof = any(e.needs_oof for e in ensembles.values())
    names = [*members, *strategies]
    parts: dict[str, list[Forecast]] = {n: [] for n in names}
    part_rows: list[np.ndarray] = []
    seen: list[int] = []  # per fold: the last row whose target its members read
    seconds = {"members": 0.0, "out_of_fold": 0.0, "strategies": 0.0}
    info = []
    for fold in folds:
        ds = fold_dataset(panel, fold)
        rows = ds.splits["test"]
        t0 = time.perf_counter()
        oof = None
        if need_oof:
            oof = _past_out_of_fold(parts, members, part_rows, fold, ds, seen)
            if oof is None or len(oof.rows) < MIN_PAST:
                oof = template.out_of_fold(ds)
        t1 = time.perf_counter()
        fitted = [_Shared(m.fit(ds)) for m in template._new_members()]
        X, log_close = contexts(ds, rows)
        actual = ds.y[rows]
        out = {
            name: (
                m.model,
                m.model.forecast(
                    m._predict_returns(X, log_close),
                    ds.features.index[rows],
                    ds.close.to_numpy()[rows],
                    ds.volatility.to_numpy()[rows],
                    ds.interval,
                    actual=actual,
                    name=name,
                ),
            )
            for name, m in zip(members, fitted)
        }
        for m in fitted:  # the validation windows every combiner and calibration reads
            m._predict_returns(*contexts(ds, ds.splits["val"]))
        t2 = time.perf_counter()
        for s, e in ensembles.items():
            progress.report(f"ensembles fold {len(part_rows) + 1}/{len(folds)}: members fitted, strategy {s}")
            e._describe(ds)
            e.members_, e.oof_ = fitted, oof
            e._fit_strategy(ds)
            e.calibrate(ds, "val")
            out[s] = (e, e.predict(ds, "test", name=s))
        t3 = time.perf_counter()
        for name, (model, forecast) in out.items():
            forecast = replace(forecast, fold=np.full(len(rows), fold.index))
            parts[name].append(apply_hooks(hooks, forecast, fold, ds, model, parts[name], part_rows, name))
        part_rows.append(rows)
        seen.append(int(max(ds.splits["train"].max(), ds.splits["val"].max())) + ds.horizon)
        seconds["out_of_fold"] += t1 - t0
        seconds["members"] += t2 - t1
        seconds["strategies"] += t3 - t2
        info.append(
            {
                "fold": fold.index,
                "test_from": panel.features.index[fold.test_rows[0]],
                "test_to": panel.features.index[fold.test_rows[1] - 1],
                "test_origins": len(rows),
                "member_seconds": t2 - t1,
                "out_of_fold_seconds": t1 - t0,
                "strategy_seconds": t3 - t2,
            }
        )
        progress.report(f"ensembles fold {len(part_rows)}/{len(folds)} done ({sum(seconds.values()):.0f} s)")
        if on_fold is not None:
            on_fold()
    return Comparison({n: Forecast.concat(p) for n, p in parts.items()}, seconds, ensembles, pd.DataFrame(info))


def _past_out_of_fold(
    parts: dict[str, list[Forecast]],
    members: Sequence[str],
    part_rows: list[np.ndarray],
    fold: Fold,
    ds,
    seen: list[int],
) -> OutOfFold | None:
    """The members' own test forecasts of earlier folds whose outcomes were realised before this
    fold's cut-off: out-of-fold by construction (each came from members fitted before its block),
    so the combiners need no member fitted twice. None before the first fold."""
    keep = [r + ds.horizon < fold.val_rows[1] for r in part_rows]
    if not any(k.any() for k in keep):
        return None
    rows = np.concatenate([r[k] for r, k in zip(part_rows, keep)])
    preds = np.stack([np.concatenate([f.returns[k] for f, k in zip(parts[m], keep)]) for m in members])
    fold_seen = np.concatenate([np.full(int(k.sum()), s) for k, s in zip(keep, seen)])
    return OutOfFold(rows, preds, ds.y[rows], contexts(ds, rows)[1], fold_seen)


def regime_weights(ensemble: EnsembleForecaster) -> pd.DataFrame:
    """The regime-adaptive stack's member weights per regime (rows), with the out-of-fold bars each
    regime had (a regime with fewer than 50 falls back to the overall weights)."""
    from coffee_ml.regimes import REGIMES

    table = pd.DataFrame(ensemble.regime_weights_, index=list(REGIMES), columns=list(ensemble.members))
    table["out-of-fold bars"] = ensemble.regime_counts_
    return table


def gains(
    forecasts: dict[str, Forecast], members: Sequence[str], strategies: Sequence[str], steps: Sequence[int] = (1, 24)
) -> pd.DataFrame:
    """Does ensembling pay? Per strategy and step: direction accuracy and MAE next to the best
    member's at that step (best on the same test forecasts, which flatters the members), the
    relative change in % and a Diebold-Mariano p-value on the paired per-origin losses (0/1 miss
    for direction, 1/2 for no call; absolute error for MAE; HAC over h-1 lags)."""
    from coffee_ml.evaluation.significance import diebold_mariano

    rows = []
    for h in steps:
        at = {n: forecasts[n].at_steps([h]) for n in [*members, *strategies]}
        # a forecast that calls no side (a return of exactly 0) counts as half a miss: a coin flip
        miss = {
            n: np.where(f.returns[:, 0] == 0, 0.5, (np.sign(f.returns[:, 0]) != np.sign(f.actual[:, 0])))
            for n, f in at.items()
        }
        err = {n: np.abs(np.expm1(f.returns[:, 0]) - np.expm1(f.actual[:, 0])) * f.last_close for n, f in at.items()}
        best_dir = min(members, key=lambda n: miss[n].mean())
        best_mae = min(members, key=lambda n: err[n].mean())
        for s in strategies:
            acc, base = 1 - miss[s].mean(), 1 - miss[best_dir].mean()
            rows.append(
                {
                    "strategy": s,
                    "step": h,
                    "dir_acc": acc,
                    "best member": best_dir,
                    "member dir_acc": base,
                    "dir_acc change %": 100 * (acc / base - 1),
                    "p (direction)": diebold_mariano(miss[s], miss[best_dir], h)[1],
                    "mae": err[s].mean(),
                    "best member (mae)": best_mae,
                    "member mae": err[best_mae].mean(),
                    "mae change %": 100 * (err[s].mean() / err[best_mae].mean() - 1),
                    "p (mae)": diebold_mariano(err[s], err[best_mae], h)[1],
                }
            )
    return pd.DataFrame(rows).set_index(["strategy", "step"])


def run_comparison(
    candles: pd.DataFrame,
    interval: str,
    members: Sequence[str],
    strategies: Sequence[str],
    *,
    window: int = 48,
    horizon: int = 24,
    test_start: Any = None,
    test_fraction: float = 0.4,
    retrain_every: int = 1460,
    progress: bool = True,
    **kwargs: Any,
) -> Comparison:
    """`compare` on candles: one feature panel, the backtest's expanding fold plan from `test_start`
    (or the last `test_fraction` of the bars), blocks of `retrain_every` bars."""
    from tqdm import tqdm

    from coffee_ml.backtest.folds import plan_folds
    from coffee_ml.data.store import to_utc
    from coffee_ml.features import feature_panel

    panel = feature_panel(candles, interval, window=window, horizon=horizon)
    n = len(panel.features)
    first = int(panel.features.index.searchsorted(to_utc(test_start))) if test_start else int(n * (1 - test_fraction))
    folds = plan_folds(n, first, retrain_every, max(window, horizon))
    with tqdm(total=len(folds), desc="ensembles", unit="fold", disable=not progress) as bar:
        return compare(panel, folds, members, strategies, on_fold=bar.update, **kwargs)
