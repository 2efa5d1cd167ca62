"""Save a fitted forecaster with everything needed to use it again, and load it back.

What is stored (see `coffee_ml.registry` for the on-disk layout): the model's class, constructor
params and fitted state (calibration included), the feature names and fitted scaler, window,
horizon and interval, the data range and splits it saw, its metrics, and provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coffee_ml import provenance, registry
from coffee_ml.data.schema import interval_timedelta
from coffee_ml.features import FEATURES, FeatureDataset, FeatureScaler, compute_features
from coffee_ml.models.base import Forecaster
from coffee_ml.models.baselines import DriftForecaster, NaiveForecaster
from coffee_ml.models.forecast import evaluate, price_frame
from coffee_ml.models.hybrid import HybridForecaster
from coffee_ml.models.neural import GRUForecaster, LSTMForecaster

_CLASSES = {cls.__name__: cls for cls in (LSTMForecaster, GRUForecaster, HybridForecaster, NaiveForecaster,
                                          DriftForecaster)}


def _table(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    return {str(k): {c: float(v) for c, v in row.items()} for k, row in df.to_dict(orient="index").items()}


def save_model(model: Forecaster, ds: FeatureDataset, *, symbol: str, name: str | None = None,
               extra: dict[str, Any] | None = None, root: Path | None = None) -> registry.ModelRef:
    """Evaluate on val and test, then write a new registry version of `model`."""
    evaluations = {split: evaluate(model, ds, split) for split in ("val", "test")}
    splits = {k: [ds.end_times(k)[0], ds.end_times(k)[-1]] for k in ds.splits if len(ds.splits[k])}
    meta = {
        "model_class": type(model).__name__, "model_type": model.model_type, "params": model.get_params(),
        "state": model.fitted_state(), "feature_names": ds.feature_names, "scaler": ds.scaler.to_dict(),
        "window": ds.window, "horizon": ds.horizon, "data_interval": ds.interval,
        "data_range": {"first": ds.features.index[0], "last": ds.features.index[-1], "rows": len(ds.features),
                       "splits": splits},
        "metrics": {split: ev["metrics"].loc["all"].to_dict() | ev["coverage"] for split, ev in evaluations.items()},
        "metrics_by_horizon": {split: _table(ev["metrics"]) for split, ev in evaluations.items()},
        "trained_at": datetime.now(timezone.utc).isoformat(), **provenance.environment(), **(extra or {}),
    }
    return registry.save(model.tensors(), meta, symbol=symbol, interval=ds.interval,
                         model=name or model.model_type, root=root)


@dataclass
class LoadedModel:
    """A registry version ready to forecast from raw candles."""

    model: Forecaster
    scaler: FeatureScaler
    feature_names: list[str]
    window: int
    interval: str
    metadata: dict[str, Any]
    ref: registry.ModelRef

    def predict_latest(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Forecast the next H bars after the last candle (features computed on `candles`).

        Pass enough history for the indicators' look-back (a few hundred bars beyond it keeps
        EMA-type features within float noise of their training values). The last `window` bars and
        the feature look-back before them must be consecutive, as for every training window.
        """
        lookback = max(FEATURES[name].lookback for name in self.feature_names)
        span = candles.index[-(self.window + lookback):]
        if len(span) < self.window + lookback:
            raise ValueError(f"need at least {self.window + lookback} candles (window {self.window} + feature "
                             f"look-back {lookback}), got {len(candles)}")
        if ((span[1:] - span[:-1]) != interval_timedelta(self.interval)).any():
            raise ValueError(f"the last {self.window + lookback} candles (window + feature look-back) are not "
                             f"consecutive {self.interval} bars (gap): as in training, no input reads across one")
        feats = compute_features(candles, features=self.feature_names).iloc[-self.window:]
        if not np.isfinite(feats.to_numpy()).all():
            raise ValueError("features are not finite over the last window: pass more history")
        X = self.scaler.transform(feats)[None]
        log_close = np.log(candles["close"].to_numpy(dtype=np.float64)[-self.window:])[None]
        pred = self.model.predict_returns(X, log_close)
        return price_frame(feats.index[-1:], candles["close"].to_numpy()[-1:], pred, self.model.calibration_,
                           self.interval)


def load_model(symbol: str, interval: str, name: str, version: str = "latest", root: Path | None = None,
               device: str = "cpu") -> LoadedModel:
    """Load a registry version ("vNNNN", "latest" or "production")."""
    ref = registry.resolve(symbol, interval, name, version, root)
    tensors, meta = registry.read(ref)
    cls = _CLASSES.get(meta.get("model_class"))
    if cls is None:
        raise registry.RegistryError(f"{ref.path}: unknown model class {meta.get('model_class')!r}")
    params = dict(meta["params"])
    if "device" in params:
        params["device"] = device
    model = cls(**params).restore(meta["state"], tensors)
    return LoadedModel(model, FeatureScaler.from_dict(meta["scaler"]), list(meta["feature_names"]),
                       int(meta["window"]), meta["data_interval"], meta, ref)
