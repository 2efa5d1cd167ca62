"""Feature scaling fitted on training rows, stored as plain JSON.

scikit-learn's StandardScaler, MinMaxScaler and RobustScaler compute the statistics; all three
are affine per column, so the fitted state is kept as `center_` and `scale_` and the transform
is (X - center_) / scale_. Storing only those two vectors makes the JSON file small, readable
and free of pickle, and the reloaded scaler applies exactly the same arithmetic (floats
round-trip exactly through JSON), so it transforms bit-for-bit identically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coffee_ml.estimator import ParamsMixin, require_fitted

METHODS: tuple[str, ...] = ("standard", "minmax", "robust")
FORMAT_VERSION = 1


class FeatureScaler(ParamsMixin):
    """Per-column affine scaling: "standard" (mean/std), "minmax" (to `feature_range`) or
    "robust" (median/IQR over `quantile_range`).

    Fitted attributes: `center_`, `scale_` (transform is (X - center_) / scale_; constant columns
    get scale 1 as in scikit-learn), `n_features_in_`, `n_samples_seen_`, and `feature_names_in_`
    when fitted on a DataFrame. `transform` returns a C-ordered float64 array, the layout the
    window views want.
    """

    def __init__(
        self,
        method: str = "standard",
        feature_range: tuple[float, float] = (0.0, 1.0),
        quantile_range: tuple[float, float] = (25.0, 75.0),
    ) -> None:
        self.method = method
        self.feature_range = feature_range
        self.quantile_range = quantile_range

    def fit(self, X: np.ndarray | pd.DataFrame, y: object = None) -> FeatureScaler:
        """Learn center and scale from X; rows with NaN/inf raise instead of skewing statistics."""
        if self.method not in METHODS:
            raise ValueError(f"unknown scaler method {self.method!r}; expected one of {', '.join(METHODS)}")
        from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

        values = np.asarray(X, dtype=np.float64)
        if values.ndim != 2 or len(values) == 0:
            raise ValueError(f"expected a non-empty 2-D array, got shape {values.shape}")
        if not np.isfinite(values).all():
            bad = (~np.isfinite(values)).sum(axis=0)
            names = list(X.columns) if isinstance(X, pd.DataFrame) else [f"column {j}" for j in range(len(bad))]
            detail = ", ".join(f"{names[j]}: {int(bad[j])}" for j in np.flatnonzero(bad))
            raise ValueError(f"cannot fit scaler on non-finite values ({detail})")
        if self.method == "standard":
            sk = StandardScaler().fit(values)
            center, scale = sk.mean_, sk.scale_
        elif self.method == "robust":
            sk = RobustScaler(quantile_range=tuple(self.quantile_range)).fit(values)
            center, scale = sk.center_, sk.scale_
        else:
            sk = MinMaxScaler(feature_range=tuple(self.feature_range)).fit(values)
            scale = 1.0 / sk.scale_  # sklearn: X * scale_ + min_  ==  (X - (-min_/scale_)) / (1/scale_)
            center = -sk.min_ * scale
        self.center_ = np.asarray(center, dtype=np.float64).copy()
        self.scale_ = np.asarray(scale, dtype=np.float64).copy()
        self.n_features_in_ = values.shape[1]
        self.n_samples_seen_ = values.shape[0]
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def _check(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        require_fitted(self, ("center_", "scale_"))
        if isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
            if list(X.columns) != list(self.feature_names_in_):
                raise ValueError("feature columns differ from those the scaler was fitted on")
        values = np.asarray(X, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} columns, got shape {values.shape}")
        return values

    def fit_transform(self, X: np.ndarray | pd.DataFrame, y: object = None) -> np.ndarray:
        return self.fit(X).transform(X)

    def transform(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        values = self._check(X)
        out = np.empty(values.shape, dtype=np.float64, order="C")
        np.subtract(values, self.center_, out=out)
        out /= self.scale_
        return out

    def inverse_transform(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        values = self._check(X)
        out = np.empty(values.shape, dtype=np.float64, order="C")
        np.multiply(values, self.scale_, out=out)
        out += self.center_
        return out

    def get_feature_names_out(self, input_features: list[str] | None = None) -> np.ndarray:
        require_fitted(self, ("center_", "scale_"))
        if input_features is not None:
            return np.asarray(input_features, dtype=object)
        if hasattr(self, "feature_names_in_"):
            return self.feature_names_in_.copy()
        return np.asarray([f"x{j}" for j in range(self.n_features_in_)], dtype=object)

    # ------------------------------------------------------------ persistence (no pickle)

    def to_dict(self) -> dict[str, Any]:
        """Constructor params and fitted state as JSON-compatible Python values."""
        require_fitted(self, ("center_", "scale_"))
        state: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "class": type(self).__name__,
            "params": {
                "method": self.method,
                "feature_range": list(self.feature_range),
                "quantile_range": list(self.quantile_range),
            },
            "center": self.center_.tolist(),
            "scale": self.scale_.tolist(),
            "n_samples_seen": int(self.n_samples_seen_),
        }
        if hasattr(self, "feature_names_in_"):
            state["feature_names"] = [str(n) for n in self.feature_names_in_]
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> FeatureScaler:
        if state.get("class") != cls.__name__ or state.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"not a {cls.__name__} v{FORMAT_VERSION} state: "
                f"class={state.get('class')!r} format={state.get('format')!r}"
            )
        p = state["params"]
        scaler = cls(p["method"], tuple(p["feature_range"]), tuple(p["quantile_range"]))
        scaler.center_ = np.asarray(state["center"], dtype=np.float64)
        scaler.scale_ = np.asarray(state["scale"], dtype=np.float64)
        scaler.n_features_in_ = len(scaler.center_)
        scaler.n_samples_seen_ = int(state["n_samples_seen"])
        if "feature_names" in state:
            scaler.feature_names_in_ = np.asarray(state["feature_names"], dtype=object)
        return scaler

    def to_json(self, path: str | Path | None = None) -> str:
        """The state as a JSON string; also written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> FeatureScaler:
        """Rebuild from a JSON string or from a file path written by `to_json`."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))
