"""Forecasts in the shape the platform shows: per horizon step a timestamp, the predicted price,
80% and 95% interval bounds and a confidence in [0, 1]; plus their evaluation on a split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coffee_ml import metrics
from coffee_ml.data.schema import interval_timedelta
from coffee_ml.features import FeatureDataset
from coffee_ml.models.base import Forecaster
from coffee_ml.models.calibration import Calibration

COLUMNS = ["origin", "step", "time", "last_close", "price", "lower_80", "upper_80", "lower_95", "upper_95",
           "confidence"]


def price_frame(origins: pd.DatetimeIndex, last_close: np.ndarray, pred: np.ndarray, calibration: Calibration,
                interval: str) -> pd.DataFrame:
    """Long table (one row per origin and step) from (n, H) predicted cumulative log returns."""
    n, horizon = pred.shape
    p0 = np.asarray(last_close, dtype=float)[:, None]
    steps = np.arange(1, horizon + 1)
    data = {"origin": np.repeat(origins.to_numpy(), horizon), "step": np.tile(steps, n),
            "time": (np.repeat(origins, horizon) + np.tile(steps, n) * interval_timedelta(interval)).to_numpy(),
            "last_close": np.repeat(p0[:, 0], horizon), "price": (p0 * np.exp(pred)).ravel()}
    for level in calibration.levels:
        lo, hi = calibration.bounds(pred, level)
        tag = round(level * 100)
        data[f"lower_{tag}"], data[f"upper_{tag}"] = (p0 * np.exp(lo)).ravel(), (p0 * np.exp(hi)).ravel()
    data["confidence"] = calibration.confidence(pred).ravel()
    return pd.DataFrame(data)


def predict_split(model: Forecaster, ds: FeatureDataset, split: str = "test") -> pd.DataFrame:
    """Forecasts from every window of a split, with the realised price as `actual`."""
    rows = ds.splits[split]
    pred = model.predict_rows(ds, rows)
    last_close = ds.close.to_numpy()[rows]
    frame = price_frame(ds.end_times(split), last_close, pred, model.calibration_, ds.interval)
    frame["actual"] = (last_close[:, None] * np.exp(ds.y[rows])).ravel()
    return frame


def evaluate(model: Forecaster, ds: FeatureDataset, split: str = "test") -> dict[str, pd.DataFrame | dict]:
    """Metrics per horizon next to naive, and the empirical coverage of each calibrated interval."""
    rows = ds.splits[split]
    y_true, y_pred = ds.y[rows], model.predict_rows(ds, rows)
    table = metrics.forecast_metrics(y_true, y_pred, ds.close.to_numpy()[rows])
    cov = {}
    for level in model.calibration_.levels:
        lo, hi = model.calibration_.bounds(y_pred, level)
        cov[f"coverage_{round(level * 100)}"] = metrics.coverage(y_true, lo, hi)
    return {"metrics": table, "coverage": cov}
