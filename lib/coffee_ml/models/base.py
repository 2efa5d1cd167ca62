"""What every forecaster shares: scikit-learn conventions, inputs gathered from a dataset,
validation-set calibration, and the state the registry stores.

A forecaster predicts cumulative forward log returns for horizons 1..H from, for each forecast
origin t, the last bars up to and including t: scaled feature windows (n, L, F) and log closes
(n, L). Each model uses the last `window` bars of those (so one dataset with the longest window
serves every model), and only bars <= t.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from coffee_ml.estimator import ParamsMixin
from coffee_ml.features import FeatureDataset
from coffee_ml.models.calibration import Calibration

if TYPE_CHECKING:
    import pandas as pd


def contexts(ds: FeatureDataset, end_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feature windows and log-close windows ending at `end_rows` (gathered from zero-copy views)."""
    end_rows = np.asarray(end_rows, dtype=np.int64)
    start = end_rows - (ds.window - 1)
    X = sliding_window_view(ds.X, ds.window, axis=0)[start].transpose(0, 2, 1)
    log_close = sliding_window_view(np.log(ds.close.to_numpy(dtype=np.float64)), ds.window)[start]
    return X, log_close


class Forecaster(ParamsMixin):
    """Base class. Subclasses set `model_type` and implement `_fit` and `predict_returns`."""

    model_type: str = ""
    window: int

    def fit(self, ds: FeatureDataset) -> "Forecaster":
        """Fit on the train split (neural models stop early on val), then calibrate on val."""
        if self.window > ds.window:
            raise ValueError(f"{self.model_type} needs windows of {self.window} bars; the dataset has {ds.window}")
        self.horizon_ = ds.horizon
        self.n_features_in_ = ds.X.shape[1]
        self.feature_names_in_ = np.asarray(ds.feature_names, dtype=object)
        self._fit(ds)
        self.calibrate(ds, "val")
        return self

    def _fit(self, ds: FeatureDataset) -> None:
        raise NotImplementedError

    def predict_returns(self, X: np.ndarray, log_close: np.ndarray) -> np.ndarray:
        """(n, H) predicted cumulative log returns from (n, L, F) windows and (n, L) log closes."""
        raise NotImplementedError

    def predict(self, ds: FeatureDataset, split: str = "test") -> "pd.DataFrame":
        """Forecast table for every window of a split: per origin and step a timestamp, the price,
        80%/95% bounds, confidence and the realised price (see `models.forecast.predict_split`)."""
        from coffee_ml.models.forecast import predict_split

        return predict_split(self, ds, split)

    def predict_rows(self, ds: FeatureDataset, end_rows: np.ndarray) -> np.ndarray:
        return self.predict_returns(*contexts(ds, end_rows))

    def calibrate(self, ds: FeatureDataset, split: str = "val") -> "Forecaster":
        rows = ds.splits[split]
        self.calibration_ = Calibration.fit(ds.y[rows], self.predict_rows(ds, rows))
        return self

    # ------------------------------------------------------------------ state for the registry
    def tensors(self) -> dict[str, torch.Tensor]:
        """Learned weights (empty for models without any)."""
        return {}

    def fitted_state(self) -> dict[str, Any]:
        """JSON-serialisable fitted state, weights excluded."""
        return {"horizon": self.horizon_, "n_features_in": self.n_features_in_,
                "feature_names_in": list(self.feature_names_in_), "calibration": self.calibration_.to_dict()}

    def restore(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "Forecaster":
        self.horizon_ = int(state["horizon"])
        self.n_features_in_ = int(state["n_features_in"])
        self.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)
        self.calibration_ = Calibration.from_dict(state["calibration"])
        return self
