"""Significance tests and intervals for forecast comparisons.

Forecasts h bars ahead made at consecutive bars overlap (their outcomes share h-1 bars), so
every test here works on an effective sample size or a HAC variance with lag h-1, never on the
raw count, which would make intervals about sqrt(h) too narrow.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
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
    since h-step forecasts made at consecutive bars overlap (Bartlett weights where the plain sum
    is not positive). Returns (statistic, two-sided p-value from Student's t with n-1 degrees of
    freedom); a negative statistic favours the model. NaN with 2h origins or fewer.
    """
    d = np.asarray(loss_model, dtype=float) - np.asarray(loss_baseline, dtype=float)
    n = len(d)
    if n <= max(2, 2 * horizon):  # too few origins to estimate h-1 autocovariances (and HLN > 1)
        return float("nan"), float("nan")
    dc = d - d.mean()
    gamma = np.array([dc @ dc / n] + [dc[k:] @ dc[:-k] / n for k in range(1, horizon)])
    var = (gamma[0] + 2 * gamma[1:].sum()) / n
    if var <= 0:  # the rectangular kernel can go negative: Bartlett (Newey-West) weights cannot
        weights = 1 - np.arange(1, horizon) / horizon
        var = (gamma[0] + 2 * (weights * gamma[1:]).sum()) / n
    if var <= 0:
        return float("nan"), float("nan")
    hln = np.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    stat = float(d.mean() / np.sqrt(var) * hln)
    return stat, float(2 * _t_sf(abs(stat), n - 1))


def pesaran_timmermann(pred_up: np.ndarray, actual_up: np.ndarray, n_eff: float | None = None) -> tuple[float, float]:
    """Pesaran-Timmermann (1992) test that predicted and realised directions are independent.

    Compares the hit rate P with P* = Py Px + (1-Py)(1-Px), the rate expected if the predicted
    signs were independent of the outcomes (so a forecaster that is always "up" in a rising
    sample gets no credit). Variances use `n_eff` outcomes (default: all). Returns (statistic,
    one-sided p-value for skill, P > P*); NaN when every prediction or outcome has one sign.
    """
    x, y = np.asarray(pred_up, dtype=bool), np.asarray(actual_up, dtype=bool)
    n = len(x)
    if n == 0:
        return float("nan"), float("nan")
    m = float(n_eff if n_eff is not None else n)
    p_hat, px, py = float(np.mean(x == y)), float(x.mean()), float(y.mean())
    p_star = py * px + (1 - py) * (1 - px)
    var_p = p_star * (1 - p_star) / m
    var_star = (
        (2 * py - 1) ** 2 * px * (1 - px) / m
        + (2 * px - 1) ** 2 * py * (1 - py) / m
        + 4 * py * px * (1 - py) * (1 - px) / m**2
    )
    if var_p - var_star <= 0:
        return float("nan"), float("nan")
    stat = (p_hat - p_star) / math.sqrt(var_p - var_star)
    return float(stat), float(0.5 * math.erfc(stat / math.sqrt(2)))


def _t_sf(x: float, df: int) -> float:
    from scipy import stats

    return float(stats.t.sf(x, df=df))
