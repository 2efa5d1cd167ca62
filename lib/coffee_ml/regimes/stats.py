"""What regimes are worth: time share, durations, transitions, and what *follows* each regime.

A regime model that only restates its inputs (a downtrend is labelled BEAR after prices fell) is
of no use for trading. The test of a useful one is whether the returns and volatility of the
bars *after* the label differ between regimes. Forward outcomes overlap and regimes persist, so
the p-value does not come from the textbook Kruskal-Wallis table (it assumes independent draws)
but from circularly shifting the labels against the outcomes: every shift keeps the labels' own
persistence and the outcomes' own autocorrelation, and destroys only their alignment.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from coffee_ml.regimes.detectors import REGIMES

Z95 = 1.959963984540054


def forward_outcomes(close: pd.Series, h: int) -> pd.DataFrame:
    """Per bar t: the log return from t to t+h, and the realised volatility of the h one-bar
    returns after t (RMS). NaN where t+h is past the data. These read the future on purpose:
    they are what the label at t is judged against, never an input."""
    log_close = np.log(close.astype("float64"))
    r = log_close.diff()
    fwd = log_close.shift(-h) - log_close
    sq = (r * r).rolling(h).sum().shift(-h)
    return pd.DataFrame({"fwd_return": fwd, "fwd_vol": np.sqrt(sq / h)}, index=close.index)


def spells(regimes: pd.Series) -> pd.DataFrame:
    """Runs of one label: regime, first and last bar, bars."""
    lab = regimes.dropna()
    values = lab.to_numpy()
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    return pd.DataFrame(
        {"regime": values[starts], "start": lab.index[starts], "end": lab.index[ends - 1], "bars": ends - starts}
    )


def transition_matrix(regimes: pd.Series) -> pd.DataFrame:
    """P(regime at t+1 | regime at t), rows summing to 1, from consecutive labelled bars."""
    lab = regimes.dropna()
    pairs = pd.crosstab(
        pd.Categorical(lab.to_numpy()[:-1], REGIMES), pd.Categorical(lab.to_numpy()[1:], REGIMES), dropna=False
    )
    out = pairs.div(pairs.sum(axis=1).replace(0, np.nan), axis=0)
    out.index.name, out.columns.name = "from", "to"
    return out


def regime_stats(regimes: pd.Series, close: pd.Series, horizons: tuple[int, ...] = (1, 24)) -> pd.DataFrame:
    """Per regime: share of labelled bars, spells, mean spell length (bars), and for each horizon
    h the mean and volatility of the next h bars with 95% confidence intervals.

    Forward returns of neighbouring bars overlap by h-1 bars, so the intervals use the effective
    count n/h; they are still optimistic where a regime's bars cluster in a few long spells.
    """
    lab = regimes.dropna()
    runs = spells(lab)
    rows = []
    for name in REGIMES:
        mask = (lab == name).to_numpy()
        row: dict[str, float | str] = {
            "regime": name,
            "share": mask.mean() if len(mask) else np.nan,
            "spells": int((runs["regime"] == name).sum()),
            "mean_bars": float(runs.loc[runs["regime"] == name, "bars"].mean()),
        }
        for h in horizons:
            out = forward_outcomes(close, h).reindex(lab.index)[mask]
            ret, vol = out["fwd_return"].dropna(), out["fwd_vol"].dropna()
            n_eff = max(len(ret) / h, 1.0)
            half = Z95 * ret.std() / np.sqrt(n_eff)
            vol_half = Z95 * vol.std() / np.sqrt(max(len(vol) / h, 1.0))
            row |= {
                f"ret_{h}": ret.mean(),
                f"ret_{h}_lo": ret.mean() - half,
                f"ret_{h}_hi": ret.mean() + half,
                f"vol_{h}": vol.mean(),
                f"vol_{h}_lo": vol.mean() - vol_half,
                f"vol_{h}_hi": vol.mean() + vol_half,
                f"n_{h}": len(ret),
            }
        rows.append(row)
    return pd.DataFrame(rows).set_index("regime")


def _kw_statistic(ranks: np.ndarray, groups: np.ndarray, k: int) -> float:
    """Kruskal-Wallis H from precomputed ranks (no tie correction: the same for every shift)."""
    n = len(ranks)
    counts = np.bincount(groups, minlength=k)
    sums = np.bincount(groups, weights=ranks, minlength=k)
    used = counts > 0
    return float(12.0 / (n * (n + 1)) * (sums[used] ** 2 / counts[used]).sum() - 3 * (n + 1))


def forward_test(regimes: pd.Series, close: pd.Series, h: int, n_shifts: int = 999, seed: int = 0) -> pd.DataFrame:
    """Do the regimes differ in what follows them? Kruskal-Wallis H across regimes of the next-h
    return and of the next-h volatility, with the p-value from `n_shifts` random circular shifts
    of the labels (at least a week of bars or 5h apart from the alignment), next to the i.i.d.
    p-value that overlapping, persistent data would overstate."""
    lab = regimes.dropna()
    out = forward_outcomes(close, h).reindex(lab.index)
    keep = out.notna().all(axis=1).to_numpy()
    codes = pd.Categorical(lab.to_numpy()[keep], REGIMES).codes
    rng = np.random.default_rng(seed)
    n = int(keep.sum())
    gap = max(5 * h, 168)
    if n <= 2 * gap:
        raise ValueError(f"forward test at h={h}: {n} labelled bars with outcomes, need more than {2 * gap}")
    shifts = rng.integers(gap, n - gap, size=n_shifts)
    rows = []
    for col, what in (("fwd_return", f"next {h}-bar return"), ("fwd_vol", f"next {h}-bar volatility")):
        values = out[col].to_numpy()[keep]
        ranks = sps.rankdata(values)
        h_obs = _kw_statistic(ranks, codes, len(REGIMES))
        h_null = np.array([_kw_statistic(ranks, np.roll(codes, s), len(REGIMES)) for s in shifts])
        groups = [values[codes == k] for k in range(len(REGIMES)) if (codes == k).sum() > 1]
        iid_p = float(sps.kruskal(*groups).pvalue) if len(groups) > 1 else np.nan
        rows.append(
            {
                "outcome": what,
                "h": h,
                "kruskal_h": h_obs,
                "p_shift": (1 + (h_null >= h_obs).sum()) / (1 + n_shifts),
                "p_iid": iid_p,
                "bars": n,
                "shifts": n_shifts,
            }
        )
    return pd.DataFrame(rows)


def agreement(a: pd.Series, b: pd.Series) -> tuple[pd.DataFrame, dict[str, float]]:
    """Where two label series agree: the confusion table (rows `a`, columns `b`), the share of
    bars with the same label, and Cohen's kappa (agreement beyond what the shares alone give)."""
    from sklearn.metrics import cohen_kappa_score

    both = pd.concat([a.rename("a"), b.rename("b")], axis=1).dropna()
    table = pd.crosstab(pd.Categorical(both["a"], REGIMES), pd.Categorical(both["b"], REGIMES), dropna=False)
    table.index.name, table.columns.name = a.name or "a", b.name or "b"
    same = float((both["a"] == both["b"]).mean()) if len(both) else np.nan
    kappa = float(cohen_kappa_score(both["a"], both["b"], labels=list(REGIMES))) if len(both) else np.nan
    return table, {"agree": same, "kappa": kappa, "bars": len(both)}
