"""Calibrated uncertainty for forecasts, fitted on validation residuals only.

Intervals: split-conformal prediction per horizon. With validation residuals r_i = y_i - yhat_i
(n of them, in log-return space) the level-a interval is yhat +/- q, q the ceil((n+1)a)-th
smallest |r_i|. If test residuals are exchangeable with validation ones, coverage is at least a,
whatever the model; the test split reports the coverage actually reached (markets drift, so
exchangeability is an assumption to check, not a given).

Confidence: the probability that the predicted direction is right, as a function of the
predicted move size |yhat|, fitted per horizon by isotonic regression of hits (sign(yhat) ==
sign(y)) on |yhat| over the validation windows. A forecast of exactly zero claims no direction
and gets 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

LEVELS = (0.8, 0.95)


@dataclass
class Calibration:
    levels: tuple[float, ...]
    quantiles: np.ndarray  # (len(levels), H): half-widths in log-return space
    direction_x: list[np.ndarray]  # per horizon: |yhat| knots
    direction_y: list[np.ndarray]  # per horizon: P(direction right) at the knots
    n: int

    @classmethod
    def fit(cls, y_true: np.ndarray, y_pred: np.ndarray, levels: tuple[float, ...] = LEVELS) -> "Calibration":
        if y_true.shape != y_pred.shape or y_true.ndim != 2:
            raise ValueError(f"expected matching (n, H) arrays, got {y_true.shape} and {y_pred.shape}")
        n = len(y_true)
        if n < 20:
            raise ValueError(f"need at least 20 validation windows to calibrate intervals, got {n}")
        from sklearn.isotonic import IsotonicRegression

        abs_res = np.sort(np.abs(y_true - y_pred), axis=0)
        quantiles = np.empty((len(levels), y_true.shape[1]))
        for i, level in enumerate(levels):
            k = math.ceil((n + 1) * level)
            quantiles[i] = abs_res[k - 1] if k <= n else np.inf
        xs, ys = [], []
        for h in range(y_true.shape[1]):
            size, hit = np.abs(y_pred[:, h]), (np.sign(y_pred[:, h]) == np.sign(y_true[:, h])).astype(float)
            moved = size > 0
            if moved.sum() < 2:
                xs.append(np.array([0.0])), ys.append(np.array([0.5]))
                continue
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
            iso.fit(size[moved], hit[moved])
            xs.append(np.asarray(iso.X_thresholds_, dtype=float))
            ys.append(np.asarray(iso.y_thresholds_, dtype=float))
        return cls(tuple(levels), quantiles, xs, ys, n)

    def bounds(self, y_pred: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Lower/upper log-return bounds of the `level` interval for (n, H) predictions."""
        q = self.quantiles[self.levels.index(level)]
        return y_pred - q, y_pred + q

    def confidence(self, y_pred: np.ndarray) -> np.ndarray:
        out = np.empty_like(y_pred, dtype=float)
        for h in range(y_pred.shape[1]):
            out[:, h] = np.interp(np.abs(y_pred[:, h]), self.direction_x[h], self.direction_y[h])
        out[y_pred == 0] = 0.5
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"levels": list(self.levels), "quantiles": self.quantiles.tolist(), "n": self.n,
                "direction_x": [x.tolist() for x in self.direction_x],
                "direction_y": [y.tolist() for y in self.direction_y]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibration":
        return cls(tuple(d["levels"]), np.asarray(d["quantiles"], dtype=float),
                   [np.asarray(x, dtype=float) for x in d["direction_x"]],
                   [np.asarray(y, dtype=float) for y in d["direction_y"]], int(d["n"]))
