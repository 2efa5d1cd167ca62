"""A saved registry version as an ensemble member ("registry:<model>[@<version>]").

It is not refitted: fitting only loads it and checks that it cannot look ahead. A version was
fitted on its own training and validation windows, whose targets reach `horizon` bars past its
last validation window; that moment must come before the first validation window of every
dataset the member is used on (the ensemble's, each walk-forward fold's and each inner fold's),
so its calibration, its out-of-fold predictions and its test forecasts are all out of sample.
Otherwise fitting fails with both dates.

Its inputs are rebuilt from the ensemble's windows: every scaler here is affine, so the
ensemble's scaled features are unscaled, the version's columns taken, and its own scaler applied.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from coffee_ml.features import FeatureDataset
from coffee_ml.models.base import Forecaster

PREFIX = "registry:"
_REF = re.compile(r"^registry:(?P<model>[A-Za-z0-9_.-]+)(?:@(?P<version>[A-Za-z0-9_]+))?$")


def is_registered(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def parse(ref: str) -> tuple[str, str]:
    m = _REF.fullmatch(ref or "")
    if not m:
        raise ValueError(f"registry member {ref!r}: expected 'registry:<model>' or 'registry:<model>@<version>'")
    return m["model"], m["version"] or "latest"


class RegisteredMember(Forecaster):
    """`ref` "registry:<model>[@<version>]" of `symbol` at the dataset's interval."""

    model_type = "registered"
    _fitted = (*Forecaster._fitted, "loaded_")

    def __init__(self, ref: str = "", symbol: str = "") -> None:
        self.ref = ref
        self.symbol = symbol

    def _metadata(self, interval: str) -> tuple[Any, dict[str, Any]]:
        from coffee_ml import registry

        model, version = parse(self.ref)
        ref = registry.resolve(self.symbol, interval, model, version)
        return ref, registry.read(ref)[1]

    def window_for(self, interval: str) -> int:
        return int(self._metadata(interval)[1]["window"])

    def fit(self, ds: FeatureDataset) -> "RegisteredMember":
        """Load and check (see the module doc), then calibrate on the dataset's validation part."""
        self._describe(ds)
        self._fit(ds)
        self.calibrate(ds, "val")
        return self

    def _fit(self, ds: FeatureDataset) -> None:
        from coffee_ml.models.persistence import load_model, trained_through

        if not self.symbol:
            raise ValueError(f"registry member {self.ref!r} needs the ensemble's symbol")
        ref, meta = self._metadata(ds.interval)
        until = trained_through(meta)
        first = ds.end_times("val")[0]
        if until >= first:
            raise ValueError(
                f"registry member {self.ref} ({ref.version}) was fitted on bars up to {until}, but this "
                f"dataset validates from {first}: it would look ahead; use a version trained before "
                "the ensemble's data"
            )
        if int(meta["horizon"]) != ds.horizon or int(meta["window"]) > ds.window:
            raise ValueError(
                f"registry member {self.ref}: horizon {meta['horizon']} / window {meta['window']} do not "
                f"fit this dataset's horizon {ds.horizon} / window {ds.window}"
            )
        missing = sorted(set(meta["feature_names"]) - set(ds.feature_names))
        if missing:
            raise ValueError(f"registry member {self.ref}: the ensemble's features lack {', '.join(missing)}")
        self.loaded_ = load_model(self.symbol, ds.interval, ref.model, ref.version)
        self.version_ = ref.version
        self.window = self.loaded_.window
        self.columns_ = np.asarray([ds.feature_names.index(f) for f in self.loaded_.feature_names])
        self.outer_center_, self.outer_scale_ = ds.scaler.center_.copy(), ds.scaler.scale_.copy()

    def _predict_returns(self, X: np.ndarray, log_close: np.ndarray) -> np.ndarray:
        cols = self.columns_
        raw = X[:, -self.window :, cols] * self.outer_scale_[cols] + self.outer_center_[cols]
        inner = (raw - self.loaded_.scaler.center_) / self.loaded_.scaler.scale_
        return self.loaded_.model._predict_returns(inner, log_close[:, -self.window :])

    def fitted_state(self) -> dict[str, Any]:
        return super().fitted_state() | {
            "version": self.version_,
            "columns": self.columns_.tolist(),
            "outer_center": self.outer_center_.tolist(),
            "outer_scale": self.outer_scale_.tolist(),
            "interval": self.loaded_.interval,
        }

    def restore(self, state: dict[str, Any], tensors: dict) -> "RegisteredMember":
        from coffee_ml.models.persistence import load_model

        super().restore(state, tensors)
        model, _ = parse(self.ref)
        self.version_ = state["version"]
        self.loaded_ = load_model(self.symbol, state["interval"], model, self.version_)
        self.window = self.loaded_.window
        self.columns_ = np.asarray(state["columns"], dtype=int)
        self.outer_center_, self.outer_scale_ = np.asarray(state["outer_center"]), np.asarray(state["outer_scale"])
        return self
