"""Per-fold hooks: anything fitted on the past in a walk-forward, fitted per fold on the past only.

A hook is an estimator (params in the constructor, cloned unfitted for every fold). For each
fold the engine calls `fit(context)` with a `FoldContext` that holds only what was known before
the fold's test block: the fold's dataset (the model's training and validation windows), the
fitted model, and earlier folds' test forecasts whose outcomes had been realised by the cut-off.
Then `transform(forecast)` adjusts that fold's test forecast. Regime models, anomaly detectors
and ensemble meta-models plug in here, so none of them can see the block they are applied to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from coffee_ml.backtest.folds import Fold
from coffee_ml.estimator import ParamsMixin
from coffee_ml.features import FeatureDataset
from coffee_ml.forecast import Forecast
from coffee_ml.models.base import Forecaster
from coffee_ml.models.calibration import Calibration

ACI_RANGE = (0.25, 2.0)  # the steered miscoverage stays within these multiples of the nominal one


@dataclass(frozen=True)
class FoldContext:
    """`dataset` has the fold's windows, but its targets from the cut-off on are NaN: a hook
    cannot read the outcomes of the block it is applied to, even by mistake."""

    fold: Fold
    dataset: FeatureDataset
    model: Forecaster
    past: Forecast | None  # earlier folds' test forecasts, outcomes realised before the cut-off
    name: str


class FoldHook(ParamsMixin):
    def fit(self, context: FoldContext) -> "FoldHook":
        raise NotImplementedError

    def transform(self, forecast: Forecast) -> Forecast:
        raise NotImplementedError


class PooledCalibration(FoldHook):
    """Recalibrate intervals and confidence on the fold's validation forecasts pooled with the
    last `past_origins` realised out-of-fold forecasts of earlier folds, and steer the interval
    levels by adaptive conformal inference (Gibbs & Candes 2021) along the walk-forward.

    Validation windows of one fold are a single stretch of history; pooling the most recent
    out-of-fold forecasts adds the conditions just before the test block (where a market that
    changed regime shows first) and more outcomes to shrink the confidence with.

    ACI: per level and horizon the quantile aims at 1 - a_k with
    a_k = a + `aci_rate` * a * sum over realised past forecasts of (a - miss), where miss says
    whether the outcome fell outside the interval that was actually issued. It is the ACI
    recursion with its updates applied once per fold (all outcomes realised before the fold's
    cut-off), so it needs no state beyond the past forecasts: persistent under-coverage widens
    later intervals, over-coverage narrows them. The step is proportional to a, so a 95% level
    moves as much relative to its 5% as an 80% level does to its 20%, and a_k stays within
    [a/4, 2a]: plain ACI may push a below 0, issuing infinite intervals (it did at 95% in one
    fold of the first run over 2024-12..2025-11). `aci_rate=0` turns it off.
    """

    def __init__(self, past_origins: int = 5000, aci_rate: float = 0.01) -> None:
        self.past_origins = past_origins
        self.aci_rate = aci_rate

    def fit(self, context: FoldContext) -> "PooledCalibration":
        ds, model = context.dataset, context.model
        levels = model.calibration_.levels
        val = model.predict(ds, "val")
        y, pred, scale = val.actual, val.returns, val.scale
        targets = None
        if context.past is not None:
            if self.aci_rate > 0:
                targets = np.stack([self._aci_target(context.past, level) for level in levels])
            # earlier folds' forecasts of outcomes the validation windows do not already hold
            past = context.past.select(context.past.origins < val.origins[0])
            if self.past_origins > 0 and past.n:
                past = past.select(slice(-self.past_origins, None))
                y, pred, scale = (
                    np.concatenate([y, past.actual]),
                    np.concatenate([pred, past.returns]),
                    np.concatenate([scale, past.scale]),
                )
        self.model_ = model
        self.calibration_ = Calibration.fit(y, pred, scale, model.up_share_, levels, targets=targets)
        return self

    def _aci_target(self, past: Forecast, level: float) -> np.ndarray:
        lo, hi = past.bounds(level)
        return aci_target((past.actual < lo) | (past.actual > hi), level, self.aci_rate)

    def transform(self, forecast: Forecast) -> Forecast:
        again = self.model_.forecast(
            forecast.returns,
            forecast.origins,
            forecast.last_close,
            forecast.scale,
            forecast.interval,
            actual=forecast.actual,
            name=forecast.model,
            calibration=self.calibration_,
        )
        return replace(again, fold=forecast.fold)


def aci_target(miss: np.ndarray, level: float, rate: float) -> np.ndarray:
    """(H,) coverage levels to aim at after the (n, H) misses of the intervals issued so far."""
    alpha = 1 - level
    steered = alpha + rate * alpha * (alpha - miss).sum(axis=0)
    return 1 - np.clip(steered, alpha * ACI_RANGE[0], alpha * ACI_RANGE[1])
