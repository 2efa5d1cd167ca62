"""Save a fitted forecaster with everything needed to use it again, and load it back.

What is stored (see `coffee_ml.registry` for the on-disk layout): the model's class, constructor
params and fitted state (calibration included), the feature names and fitted scaler, window,
horizon and interval, the data range and splits it saw, its metrics, and provenance.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coffee_ml import evaluation, provenance, registry
from coffee_ml.config import RUN_ID_ENV
from coffee_ml.data.schema import interval_timedelta
from coffee_ml.data.store import to_utc
from coffee_ml.features import (
    FEATURES,
    FeatureDataset,
    FeatureScaler,
    compute_features,
    forward_log_returns,
    run_bounds,
    sliding_windows,
    valid_window_ends,
)
from coffee_ml.features.volatility import DEFAULT_HALFLIFE, causal_volatility
from coffee_ml.forecast import Forecast
from coffee_ml.models.base import Forecaster
from coffee_ml.models.specs import SPECS

_CLASSES = {spec.estimator.__name__: spec.estimator for spec in SPECS.values()}
VOLATILITY_BURN_IN = 40  # halflives before the window: the EWMA's start then weighs 0.5**40 ~ 1e-12


def registry_scores(forecast: Forecast) -> dict[str, float]:
    """What a registry version records per split: the leaderboard's scorers without trading."""
    return evaluation.score(forecast, evaluation.summary_names(forecast.levels, trading=False))


def trained_through(meta: dict[str, Any]) -> pd.Timestamp:
    """The last bar any of a saved version's training or validation targets read: its last
    validation (else training) window end plus `horizon` bars. Validation fits the calibration (and
    stops neural training early), so only forecasts whose targets all lie after this bar are out of
    sample: what an ensemble member and production monitoring both need to know."""
    splits = meta["data_range"]["splits"]
    last = max(pd.Timestamp(splits[k][1]) for k in ("train", "val") if k in splits)
    return last + int(meta["horizon"]) * interval_timedelta(meta["data_interval"])


def _table(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    return {str(k): {c: float(v) for c, v in row.items()} for k, row in df.to_dict(orient="index").items()}


def save_model(
    model: Forecaster,
    ds: FeatureDataset,
    *,
    symbol: str,
    name: str | None = None,
    extra: dict[str, Any] | None = None,
    root: Path | None = None,
) -> registry.ModelRef:
    """Score on val and test (the evaluation layer's scorers), then write a new registry version.

    Under `coffee-ml run` the version records the run that made it (`run_id`, from the
    COFFEE_ML_RUN_ID the runner sets for its kernels), so a model can be traced to its reports.
    """
    forecasts = {split: model.predict(ds, split) for split in ("val", "test") if len(ds.splits[split])}
    splits = {k: [ds.end_times(k)[0], ds.end_times(k)[-1]] for k in ds.splits if len(ds.splits[k])}
    meta = {
        "model_class": type(model).__name__,
        "model_type": model.model_type,
        "params": model.get_params(),
        "state": model.fitted_state(),
        "feature_names": ds.feature_names,
        "scaler": ds.scaler.to_dict(),
        "window": ds.window,
        "horizon": ds.horizon,
        "data_interval": ds.interval,
        "vol_halflife": ds.vol_halflife,
        "data_range": {
            "first": ds.features.index[0],
            "last": ds.features.index[-1],
            "rows": len(ds.features),
            "splits": splits,
        },
        "metrics": {split: registry_scores(f) for split, f in forecasts.items()},
        "metrics_by_horizon": {
            split: _table(evaluation.scores_by_horizon(f, evaluation.POINT)) for split, f in forecasts.items()
        },
        "trained_at": datetime.now(timezone.utc).isoformat(),
        **provenance.environment(),
        **(extra or {}),
    }
    if run_id := os.environ.get(RUN_ID_ENV):
        meta["run_id"] = run_id
    return registry.save(
        model.tensors(), meta, symbol=symbol, interval=ds.interval, model=name or model.model_type, root=root
    )


@dataclass
class LoadedModel:
    """A registry version ready to forecast from raw candles."""

    model: Forecaster
    scaler: FeatureScaler
    feature_names: list[str]
    window: int
    interval: str
    vol_halflife: float
    metadata: dict[str, Any]
    ref: registry.ModelRef

    @property
    def lookback(self) -> int:
        """Consecutive bars the last forecast needs: the window plus the features' look-back."""
        return self.window + max(FEATURES[name].lookback for name in self.feature_names)

    @property
    def trained_through(self) -> pd.Timestamp:
        """The last bar the version's training and validation read (see `trained_through`)."""
        return trained_through(self.metadata)

    @property
    def history_bars(self) -> int:
        """Bars to load: the look-back plus a burn-in for EMA-type features and the volatility."""
        return self.lookback + int(VOLATILITY_BURN_IN * max(self.vol_halflife, 30))

    def predict(self, candles: pd.DataFrame) -> Forecast:
        """Forecast the next H bars after the last candle (features computed on `candles`).

        Pass `history_bars` candles (more is harmless): the last `lookback` of them must be
        consecutive, as for every training window; the burn-in before them keeps EMA-type
        features and the volatility within float noise of their values in training.
        """
        span = candles.index[-self.lookback :]
        if len(span) < self.lookback:
            raise ValueError(
                f"need at least {self.lookback} candles (window {self.window} + feature look-back "
                f"{self.lookback - self.window}), got {len(candles)}"
            )
        if ((span[1:] - span[:-1]) != interval_timedelta(self.interval)).any():
            raise ValueError(
                f"the last {self.lookback} candles (window + feature look-back) are not "
                f"consecutive {self.interval} bars (gap): as in training, no input reads across one"
            )
        feats = compute_features(candles, features=self.feature_names).iloc[-self.window :]
        if not np.isfinite(feats.to_numpy()).all():
            raise ValueError("features are not finite over the last window: pass more history")
        X = self.scaler.transform(feats)[None]
        log_close = np.log(candles["close"].to_numpy(dtype=np.float64)[-self.window :])[None]
        scale = causal_volatility(candles["close"], self.interval, self.vol_halflife).to_numpy()[-1:]
        return self.model.forecast_windows(
            X, log_close, feats.index[-1:], candles["close"].to_numpy()[-1:], scale, self.interval, name=self.ref.model
        )

    def predict_history(self, candles: pd.DataFrame, start: str | pd.Timestamp | None = None) -> Forecast:
        """What `predict` would have said at every origin (bar) of `candles` from `start` on, with
        the realised returns in `actual`: the replay that monitoring scores.

        One vectorised pass: features, the saved scaler and the volatility computed once over the
        whole frame, windows gathered from a zero-copy sliding view. Every input of the forecast at
        bar t is causal (bars <= t), so it equals `predict(candles.loc[:t])` to float noise and
        never reads a later bar. As in training and in `predict`, an origin is skipped when its last
        `lookback` bars are not consecutive (a gap) or its window has a non-finite feature; pass
        `history_bars` candles before `start` so the first origins have their burn-in. `actual` is
        NaN on the rows whose next H bars are not all stored yet (or cross a gap).
        """
        index = candles.index
        X = self.scaler.transform(compute_features(candles, features=self.feature_names))
        # as in training: the window and the features' look-back before it are consecutive bars
        ends = valid_window_ends(*run_bounds(index, self.interval), self.window, 0, self.lookback - self.window)
        nonfinite = np.r_[0, np.cumsum(~np.isfinite(X).all(axis=1))]  # non-finite rows before each row
        origins = ends[nonfinite[ends + 1] == nonfinite[ends + 1 - self.window]]
        if start is not None:
            origins = origins[index[origins] >= to_utc(start)]
        if not len(origins):
            raise ValueError(
                f"no origin in {len(candles)} candles{f' from {start}' if start is not None else ''} has "
                f"{self.lookback} consecutive {self.interval} bars (window {self.window} + feature "
                "look-back) with finite features"
            )
        first = origins - (self.window - 1)
        close = candles["close"].to_numpy(dtype=np.float64)
        log_close = sliding_windows(np.log(close)[:, None], self.window)[first, :, 0]
        scale = causal_volatility(candles["close"], self.interval, self.vol_halflife).to_numpy()[origins]
        actual = forward_log_returns(candles["close"], self.model.horizon_, self.interval).to_numpy()[origins]
        return self.model.forecast_windows(
            sliding_windows(X, self.window)[first],
            log_close,
            index[origins],
            close[origins],
            scale,
            self.interval,
            actual=actual,
            name=self.ref.model,
        )


def load_model(
    symbol: str, interval: str, name: str, version: str = "latest", root: Path | None = None, device: str = "cpu"
) -> LoadedModel:
    """Load a registry version ("vNNNN", "latest" or "production")."""
    ref = registry.resolve(symbol, interval, name, version, root)
    tensors, meta = registry.read(ref)
    cls = _CLASSES.get(meta.get("model_class"))
    if cls is None:
        raise registry.RegistryError(f"{ref.path}: unknown model class {meta.get('model_class')!r}")
    if not isinstance(meta.get("params"), dict) or not isinstance(meta.get("state"), dict):
        raise registry.RegistryError(f"{ref.path}: metadata.json has no 'params' or 'state' mapping; not loadable")
    params = dict(meta["params"])
    if "device" in params:
        params["device"] = device
    try:
        model = cls(**params)
    except TypeError as exc:  # a constructor key this version of coffee-ml does not know
        raise registry.RegistryError(f"{ref.path}: its params do not fit {cls.__name__} ({exc})") from None
    try:
        model.restore(meta["state"], tensors)
    except KeyError as exc:  # a version written by an older coffee-ml lacks fitted state this one needs
        raise registry.RegistryError(
            f"{ref.path}: no {exc} in its fitted state: saved before volatility-scaled "
            "calibration; retrain and save it again"
        ) from None
    return LoadedModel(
        model,
        FeatureScaler.from_dict(meta["scaler"]),
        list(meta["feature_names"]),
        int(meta["window"]),
        meta["data_interval"],
        float(meta.get("vol_halflife", DEFAULT_HALFLIFE)),
        meta,
        ref,
    )
