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


def wilson_interval(successes: float, trials: float, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); sound near 0 and 1 and
    for small n, unlike the normal approximation. Takes effective (possibly fractional) counts."""
    if trials <= 0:
        return float("nan"), float("nan")
    p = successes / trials
    denom = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denom
    half = z * np.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denom
    return float(centre - half), float(centre + half)


def diebold_mariano(loss_model: np.ndarray, loss_baseline: np.ndarray, horizon: int = 1) -> tuple[float, float]:
    """Diebold-Mariano test of equal expected loss, with the Harvey-Leybourne-Newbold correction.

    d_t = loss_model - loss_baseline; its long-run variance uses autocovariances up to lag h-1,
    since h-step forecasts made at consecutive bars overlap. Returns (statistic, two-sided p-value
    from Student's t with n-1 degrees of freedom); a negative statistic favours the model.
    """
    from scipy import stats

    d = np.asarray(loss_model, dtype=float) - np.asarray(loss_baseline, dtype=float)
    n = len(d)
    if n < 3:
        return float("nan"), float("nan")
    dc = d - d.mean()
    lags = min(horizon - 1, n - 1)
    gamma = [dc @ dc / n] + [dc[k:] @ dc[:-k] / n for k in range(1, lags + 1)]
    var = (gamma[0] + 2 * sum(gamma[1:])) / n
    if var <= 0:
        return float("nan"), float("nan")
    dm = d.mean() / np.sqrt(var)
    hln = np.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    stat = float(dm * hln)
    return stat, float(2 * stats.t.sf(abs(stat), df=n - 1))


def forecast_metrics(y_true: np.ndarray, y_pred: np.ndarray, last_close: np.ndarray,
                     significance: bool = False) -> pd.DataFrame:
    """One row per horizon plus "all": model metrics, the naive baseline's, and MAE skill.

    Price terms: mae, rmse, mape, mean/max/min_error (signed, predicted - actual); return terms
    (log returns): ret_mae, ret_rmse, r2, dir_acc. With `significance`, also the 95% Wilson
    interval of dir_acc on an effective sample size (forecasts h bars ahead from consecutive bars
    overlap, so n/h independent outcomes; n/H for "all") and the Diebold-Mariano test of absolute
    price errors against naive ("all" pools the horizons per origin).
    """
    y_true, y_pred = np.atleast_2d(y_true), np.atleast_2d(y_pred)
    p0 = np.asarray(last_close, dtype=float)[:, None]
    actual, pred = p0 * np.exp(y_true), p0 * np.exp(y_pred)
    naive = np.broadcast_to(p0, actual.shape)
    horizon = y_true.shape[1]
    rows = {}
    cols = [(f"{h + 1}", np.s_[:, h], h + 1) for h in range(horizon)] + [("all", np.s_[:, :], horizon)]
    for name, sel, lag in cols:
        a, p, n, yt, yp = actual[sel], pred[sel], naive[sel], y_true[sel], y_pred[sel]
        err = p - a
        row = {"mae": mae(a, p), "rmse": rmse(a, p), "mape": mape(a, p), "mean_error": float(err.mean()),
               "max_error": float(err.max()), "min_error": float(err.min()), "ret_mae": mae(yt, yp),
               "ret_rmse": rmse(yt, yp), "r2": r2(yt, yp), "dir_acc": directional_accuracy(yt, yp),
               "naive_mae": mae(a, n), "naive_rmse": rmse(a, n), "naive_mape": mape(a, n),
               "skill": 1 - mae(a, p) / mae(a, n), "n": int(np.size(a))}
        if significance:
            side = yp != 0
            hits = int((np.sign(yp[side]) == np.sign(yt[side])).sum())
            # h-bar forecasts from consecutive origins overlap, and the horizons of one origin
            # share a path: count ~ one independent outcome per `lag` origins (x columns pooled)
            overlap = lag * (yt.shape[1] if yt.ndim == 2 else 1)
            n_eff = int(side.sum()) / overlap
            row["dir_acc_lo"], row["dir_acc_hi"] = wilson_interval(hits / overlap, n_eff)
            row["dir_acc_n_eff"] = n_eff
            loss_m, loss_n = np.abs(err), np.abs(a - n)
            if loss_m.ndim == 2:  # pool horizons per origin
                loss_m, loss_n = loss_m.mean(axis=1), loss_n.mean(axis=1)
            row["dm_stat"], row["dm_pvalue"] = diebold_mariano(loss_m, loss_n, lag)
        rows[name] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "horizon"
    return out
