"""Baselines every evaluation shows: persistence (the price stays) and drift (recent mean return)."""

from __future__ import annotations

import numpy as np

from coffee_ml.features import FeatureDataset
from coffee_ml.models.base import Forecaster


class NaiveForecaster(Forecaster):
    """Tomorrow = today: predicted log return 0 at every horizon (a random walk's best guess)."""

    model_type = "naive"

    def __init__(self, window: int = 1) -> None:
        self.window = window

    def _fit(self, ds: FeatureDataset) -> None:
        pass

    def _predict_returns(self, X: np.ndarray, log_close: np.ndarray) -> np.ndarray:
        return np.zeros((len(log_close), self.horizon_))


class DriftForecaster(Forecaster):
    """Random walk with drift: h times the mean one-bar log return of the last `window` bars."""

    model_type = "drift"

    def __init__(self, window: int = 48) -> None:
        self.window = window

    def _fit(self, ds: FeatureDataset) -> None:
        if self.window < 2:
            raise ValueError(f"drift needs window >= 2, got {self.window}")

    def _predict_returns(self, X: np.ndarray, log_close: np.ndarray) -> np.ndarray:
        lc = log_close[:, -self.window :]
        mean_step = (lc[:, -1] - lc[:, 0]) / (self.window - 1)
        return mean_step[:, None] * np.arange(1, self.horizon_ + 1)[None, :]
