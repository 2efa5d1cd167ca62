"""Point accuracy in price and return terms, always next to the naive forecast (the price stays).

Price terms (mae, rmse, mape, signed errors) are what a trader sees; return terms (ret_mae,
ret_rmse, r2) are scale-free across the years. `skill` = 1 - MAE/MAE(naive) on the same
forecasts, and the Diebold-Mariano test says whether the difference is more than noise ("all"
pools the horizons per origin, HAC lag H-1).
"""

from __future__ import annotations

import numpy as np

from coffee_ml.evaluation.significance import diebold_mariano
from coffee_ml.forecast import Forecast


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


POINT_NAMES = (
    "mae",
    "rmse",
    "mape",
    "mean_error",
    "max_error",
    "min_error",
    "ret_mae",
    "ret_rmse",
    "r2",
    "naive_mae",
    "naive_rmse",
    "naive_mape",
    "skill",
    "dm_stat",
    "dm_pvalue",
)


def point_scores(f: Forecast) -> dict[str, float]:
    if f.n == 0:
        return dict.fromkeys(POINT_NAMES, float("nan")) | {"n": 0.0, "origins": 0.0}
    a, p = f.actual_prices, f.prices
    naive = np.broadcast_to(f.last_close[:, None], a.shape)
    err, naive_err = p - a, naive - a
    abs_err, naive_abs = np.abs(err), np.abs(naive_err)
    m, m_naive = float(abs_err.mean()), float(naive_abs.mean())
    dm_stat, dm_p = diebold_mariano(abs_err.mean(axis=1), naive_abs.mean(axis=1), f.horizon)
    return {
        "mae": m,
        "rmse": rmse(a, p),
        "mape": mape(a, p),
        "mean_error": float(err.mean()),
        "max_error": float(err.max()),
        "min_error": float(err.min()),
        "ret_mae": mae(f.actual, f.returns),
        "ret_rmse": rmse(f.actual, f.returns),
        "r2": r2(f.actual, f.returns),
        "naive_mae": m_naive,
        "naive_rmse": rmse(a, naive),
        "naive_mape": mape(a, naive),
        "skill": 1 - m / m_naive if m_naive > 0 else float("nan"),
        "dm_stat": dm_stat,
        "dm_pvalue": dm_p,
        "n": float(a.size),
        "origins": float(f.n),
    }
