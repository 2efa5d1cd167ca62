"""Forecast metrics, always next to the naive baseline (the price stays: predicted return 0).

Inputs are cumulative forward log returns (n, H) and the last observed close per origin, so the
same numbers come out in price terms (MAE, RMSE, MAPE) and return terms (R², direction).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def mae(actual: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(actual - pred)))


def rmse(actual: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((actual - pred) ** 2)))


def mape(actual: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute percentage error, in percent (prices are positive, so never divides by 0)."""
    return float(100 * np.mean(np.abs((actual - pred) / actual)))


def r2(actual: np.ndarray, pred: np.ndarray) -> float:
    """1 - SSE/SST around the actual mean; negative when worse than predicting that mean."""
    sst = np.sum((actual - actual.mean()) ** 2)
    return float(1 - np.sum((actual - pred) ** 2) / sst) if sst > 0 else float("nan")


def directional_accuracy(actual_ret: np.ndarray, pred_ret: np.ndarray) -> float:
    """Share of forecasts whose sign matches the realised move, over forecasts that take a side
    (a zero forecast, like the naive one, claims no direction: NaN if none take a side)."""
    side = pred_ret != 0
    return float(np.mean(np.sign(pred_ret[side]) == np.sign(actual_ret[side]))) if side.any() else float("nan")


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    return float(np.mean((actual >= lower) & (actual <= upper)))


def forecast_metrics(y_true: np.ndarray, y_pred: np.ndarray, last_close: np.ndarray) -> pd.DataFrame:
    """One row per horizon plus "all": model metrics, the naive baseline's, and MAE skill."""
    y_true, y_pred = np.atleast_2d(y_true), np.atleast_2d(y_pred)
    p0 = np.asarray(last_close, dtype=float)[:, None]
    actual, pred = p0 * np.exp(y_true), p0 * np.exp(y_pred)
    naive = np.broadcast_to(p0, actual.shape)
    rows = {}
    cols = [(f"{h + 1}", np.s_[:, h]) for h in range(y_true.shape[1])] + [("all", np.s_[:, :])]
    for name, sel in cols:
        a, p, n, yt, yp = actual[sel], pred[sel], naive[sel], y_true[sel], y_pred[sel]
        rows[name] = {"mae": mae(a, p), "rmse": rmse(a, p), "mape": mape(a, p), "r2": r2(yt, yp),
                      "dir_acc": directional_accuracy(yt, yp), "naive_mae": mae(a, n), "naive_rmse": rmse(a, n),
                      "naive_mape": mape(a, n), "skill": 1 - mae(a, p) / mae(a, n), "n": int(np.size(a))}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "horizon"
    return out
