"""What every forecaster shares: scikit-learn conventions, inputs gathered from a dataset,
out-of-sample calibration, one public predict path returning a `Forecast`, and the state the
registry stores.

A forecaster predicts cumulative forward log returns for horizons 1..H from, for each forecast
origin t, the last bars up to and including t: scaled feature windows (n, L, F) and log closes
(n, L). Each model uses the last `window` bars of those (so one dataset with the longest window
serves every model), and only bars <= t.

Capabilities are types: `FineTunable` models can continue training from their current weights
(`warm_start`); `requires_torch` says whether a model needs PyTorch at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from coffee_ml.estimator import ParamsMixin, require_fitted
from coffee_ml.features import FeatureDataset
from coffee_ml.forecast import Forecast
from coffee_ml.models.calibration import LEVELS, Calibration

if TYPE_CHECKING:
    import pandas as pd
    import torch


def contexts(ds: FeatureDataset, end_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feature windows and log-close windows ending at `end_rows` (gathered from zero-copy views)."""
    end_rows = np.asarray(end_rows, dtype=np.int64)
    start = end_rows - (ds.window - 1)
    X = sliding_window_view(ds.X, ds.window, axis=0)[start].transpose(0, 2, 1)
    log_close = sliding_window_view(np.log(ds.close.to_numpy(dtype=np.float64)), ds.window)[start]
    return X, log_close


class Forecaster(ParamsMixin):
    """Base class. Subclasses set `model_type` and implement `_fit` and `_predict_returns`."""

    model_type: str = ""
    requires_torch: bool = False
    window: int
    _fitted = ("horizon_", "up_share_", "calibration_")

    def fit(self, ds: FeatureDataset) -> "Forecaster":
        """Fit on the train split (neural models stop early on val), then calibrate on val."""
        if self.window > ds.window:
            raise ValueError(f"{self.model_type} needs windows of {self.window} bars; the dataset has {ds.window}")
        self._describe(ds)
        self._fit(ds)
        self.calibrate(ds, "val")
        return self

    def _describe(self, ds: FeatureDataset) -> None:
        """What the model learns about its training data besides weights: shapes, feature names,
        and the share of rising training targets (the majority-sign direction baseline)."""
        self.horizon_ = ds.horizon
        self.n_features_in_ = ds.X.shape[1]
        self.feature_names_in_ = np.asarray(ds.feature_names, dtype=object)
        self.up_share_ = (ds.y[ds.splits["train"]] > 0).mean(axis=0)

    def _fit(self, ds: FeatureDataset) -> None:
        raise NotImplementedError

    def _predict_returns(self, X: np.ndarray, log_close: np.ndarray) -> np.ndarray:
        """(n, H) predicted cumulative log returns from (n, L, F) windows and (n, L) log closes."""
        raise NotImplementedError

    def _returns_at(self, ds: FeatureDataset, rows: np.ndarray) -> np.ndarray:
        return self._predict_returns(*contexts(ds, rows))

    # ------------------------------------------------------------------ the one predict path
    def predict(
        self, ds: FeatureDataset, split: str = "test", rows: np.ndarray | None = None, name: str | None = None
    ) -> Forecast:
        """A `Forecast` from every window of a split (or the windows ending at `rows`), with the
        realised returns attached where the dataset knows them."""
        require_fitted(self, self._fitted)
        rows = ds.splits[split] if rows is None else np.asarray(rows, dtype=np.int64)
        actual = ds.y[rows]
        return self.forecast_windows(
            *contexts(ds, rows),
            ds.features.index[rows],
            ds.close.to_numpy()[rows],
            ds.volatility.to_numpy()[rows],
            ds.interval,
            actual=actual if np.isfinite(actual).all() else None,
            name=name,
        )

    def forecast_windows(
        self,
        X: np.ndarray,
        log_close: np.ndarray,
        origins: "pd.DatetimeIndex",
        last_close: np.ndarray,
        scale: np.ndarray,
        interval: str,
        actual: np.ndarray | None = None,
        name: str | None = None,
    ) -> Forecast:
        """The `Forecast` of windows (X, log closes) ending at `origins`: the one path from inputs
        to a forecast that datasets (`predict`) and serving (raw candles) share, so a model that
        adds to it (an ensemble's vote) behaves the same in backtests and in production."""
        return self.forecast(
            self._predict_returns(X, log_close), origins, last_close, scale, interval, actual=actual, name=name
        )

    def forecast(
        self,
        returns: np.ndarray,
        origins: "pd.DatetimeIndex",
        last_close: np.ndarray,
        scale: np.ndarray,
        interval: str,
        actual: np.ndarray | None = None,
        name: str | None = None,
        calibration: Calibration | None = None,
    ) -> Forecast:
        """Wrap predicted returns with this model's calibrated intervals and confidence."""
        cal = calibration or self.calibration_
        shape = returns.shape
        return Forecast(
            model=name or self.model_type,
            interval=interval,
            origins=origins,
            last_close=np.asarray(last_close, dtype=float),
            returns=returns,
            intervals={lv: cal.bounds(returns, scale, lv) for lv in cal.levels},
            constant_intervals={lv: cal.constant_bounds(returns, lv) for lv in cal.levels},
            confidence=cal.confidence(returns, scale),
            scale=np.asarray(scale, dtype=float),
            base_rate=np.broadcast_to(cal.base_rate, shape),
            up_share=np.broadcast_to(cal.up_share, shape),
            actual=actual,
        )

    def calibrate(self, ds: FeatureDataset, split: str = "val", levels: tuple[float, ...] = LEVELS) -> "Forecaster":
        """Fit intervals and confidence on one split's out-of-sample predictions."""
        rows = ds.splits[split]
        self.calibration_ = Calibration.fit(
            ds.y[rows], self._returns_at(ds, rows), ds.volatility.to_numpy()[rows], self.up_share_, levels
        )
        return self

    # ------------------------------------------------------------------ state for the registry
    def tensors(self) -> dict[str, "torch.Tensor"]:
        """Learned weights (empty for models without any)."""
        return {}

    def fitted_state(self) -> dict[str, Any]:
        """JSON-serialisable fitted state, weights excluded."""
        return {
            "horizon": self.horizon_,
            "n_features_in": self.n_features_in_,
            "feature_names_in": list(self.feature_names_in_),
            "up_share": self.up_share_.tolist(),
            "calibration": self.calibration_.to_dict(),
        }

    def restore(self, state: dict[str, Any], tensors: dict[str, "torch.Tensor"]) -> "Forecaster":
        self.horizon_ = int(state["horizon"])
        self.n_features_in_ = int(state["n_features_in"])
        self.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)
        self.up_share_ = np.asarray(state["up_share"], dtype=float)
        self.calibration_ = Calibration.from_dict(state["calibration"])
        return self


class FineTunable(Forecaster):
    """A forecaster that can continue training from its current weights on new data."""

    def warm_start(self, ds: FeatureDataset, epochs: int) -> "FineTunable":
        raise NotImplementedError
