"""Do the intervals hold where it matters? Coverage pooled, by volatility tercile and per fold,
and the Winkler score against the constant-width intervals.

Coverage on average can hide intervals that are too wide in calm stretches and too narrow in
turbulent ones; terciles of the causal volatility at the origin (`Forecast.scale`) show it.
The Winkler (interval) score of a level-a interval is its width plus 2/(1-a) times the distance
by which the outcome falls outside: lower is better, and it rewards narrow intervals only where
they still cover. Units are log returns (x100 ~ percent of price).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coffee_ml.forecast import Forecast, level_tag

TERCILES = ("lowvol", "midvol", "highvol")


def winkler(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float) -> np.ndarray:
    alpha = 1 - level
    return (upper - lower) + (2 / alpha) * (np.maximum(lower - actual, 0) + np.maximum(actual - upper, 0))


def volatility_tercile(f: Forecast) -> np.ndarray:
    """0, 1, 2 per origin: the tercile of its volatility among these origins, by rank (ties, such
    as a stretch at the volatility floor, are split so each tercile holds a third)."""
    rank = np.empty(f.n, dtype=np.int64)
    rank[np.argsort(f.scale, kind="stable")] = np.arange(f.n)
    return rank * 3 // max(f.n, 1)


def interval_scores(f: Forecast, level: float) -> dict[str, float]:
    tag = level_tag(level)
    lo, hi = f.bounds(level)
    if f.n == 0:
        kinds = ["", *(f"_{t}" for t in TERCILES)]
        names = [f"coverage_{tag}{k}" for k in kinds] + [f"width_{tag}", f"winkler_{tag}"]
        if f.constant_intervals is not None:
            names += [f"coverage_{tag}{k}_const" for k in kinds] + [f"winkler_{tag}_const", f"winkler_ratio_{tag}"]
        return dict.fromkeys(names, float("nan"))
    inside = (f.actual >= lo) & (f.actual <= hi)
    out = {
        f"coverage_{tag}": float(inside.mean()),
        f"width_{tag}": float(np.mean(hi - lo)),
        f"winkler_{tag}": float(winkler(f.actual, lo, hi, level).mean()),
    }
    terc = volatility_tercile(f)
    for k, name in enumerate(TERCILES):
        out[f"coverage_{tag}_{name}"] = float(inside[terc == k].mean()) if (terc == k).any() else float("nan")
    if f.constant_intervals is not None and any(level_tag(k) == tag for k in f.constant_intervals):
        clo, chi = f.bounds(level, constant=True)
        c_inside = (f.actual >= clo) & (f.actual <= chi)
        out[f"coverage_{tag}_const"] = float(c_inside.mean())
        out[f"winkler_{tag}_const"] = w_const = float(winkler(f.actual, clo, chi, level).mean())
        out[f"winkler_ratio_{tag}"] = out[f"winkler_{tag}"] / w_const if w_const > 0 else float("nan")
        for k, name in enumerate(TERCILES):
            sel = terc == k
            out[f"coverage_{tag}_{name}_const"] = float(c_inside[sel].mean()) if sel.any() else float("nan")
    return out


def coverage_by_tercile(forecasts: dict[str, Forecast]) -> pd.DataFrame:
    """Rows: model x interval kind (adaptive, constant); columns: level x (pooled, terciles)."""
    rows = {}
    for name, f in forecasts.items():
        for kind, suffix in (("adaptive", ""), ("constant", "_const")):
            if suffix and f.constant_intervals is None:
                continue
            row = {}
            for level in f.levels:
                s, tag = interval_scores(f, level), level_tag(level)
                row[f"{tag}% pooled"] = s[f"coverage_{tag}{suffix}"]
                for t in TERCILES:
                    row[f"{tag}% {t}"] = s[f"coverage_{tag}_{t}{suffix}"]
            rows[(name, kind)] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["model", "intervals"]
    return table


def coverage_by_fold(f: Forecast) -> pd.DataFrame:
    """Coverage of each level per walk-forward fold (one row per fold)."""
    if f.fold is None:
        raise ValueError(f"{f.model}: forecast has no folds (not from a walk-forward)")
    rows = {}
    for fold in np.unique(f.fold):
        part = f.select(f.fold == fold)
        rows[int(fold)] = {
            f"coverage_{level_tag(lv)}": float(((part.actual >= lo) & (part.actual <= hi)).mean())
            for lv in part.levels
            for lo, hi in [part.bounds(lv)]
        } | {"origins": part.n}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "fold"
    return table
