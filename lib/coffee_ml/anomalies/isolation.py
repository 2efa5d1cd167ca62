"""Statistical anomalies: scikit-learn's IsolationForest, fitted on trailing past bars only.

Features per bar (all causal): the log return in volatility units, the log volume against its
trailing median, and the volatility spike (causal volatility over its trailing median). Every
`refit_every` bars a forest is fitted on the `train_bars` bars before the block and scores the
block; `contamination` sets the share of training bars its threshold calls anomalous. The
per-bar score is 0-100 (100 x the forest's anomaly score, which lies in [0, 1]) with a flag.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coffee_ml.anomalies.settings import resolve
from coffee_ml.features.volatility import causal_volatility


def isolation_features(candles: pd.DataFrame, interval: str, baseline_bars: int = 168) -> pd.DataFrame:
    close, volume = candles["close"].astype(float), candles["volume"].astype(float)
    vol = causal_volatility(close, interval)
    med_vol = vol.rolling(baseline_bars, min_periods=20).median()
    log_volume = np.log(volume.clip(lower=1e-12))
    return pd.DataFrame(
        {
            "return_z": np.log(close).diff() / vol.shift(1),
            "volume_z": log_volume - log_volume.rolling(baseline_bars, min_periods=20).median(),
            "vol_spike": np.log(vol / med_vol),
        },
        index=candles.index,
    )


def isolation_scores(
    candles: pd.DataFrame,
    interval: str,
    train_bars: int | None = None,
    refit_every: int | None = None,
    contamination: float | None = None,
    n_estimators: int = 50,
    seed: int = 0,
) -> pd.DataFrame:
    """Per bar: score 0-100 and `anomaly` (bool); NaN before the first `train_bars` usable bars.
    Settings left None take the defaults for `interval` (see `settings`)."""
    from sklearn.ensemble import IsolationForest

    s = resolve(
        interval,
        {"train_bars": train_bars, "refit_every": refit_every, "contamination": contamination},
        ("train_bars", "refit_every", "contamination"),
    )
    train_bars, refit_every, contamination = s["train_bars"], s["refit_every"], s["contamination"]
    feats = isolation_features(candles, interval)
    ok = feats.notna().all(axis=1).to_numpy()
    x = feats.to_numpy()
    score = np.full(len(x), np.nan)
    flag = np.zeros(len(x), dtype=bool)
    rows = np.flatnonzero(ok)
    if len(rows) > train_bars:
        for b0 in range(train_bars, len(rows), refit_every):
            past, block = rows[b0 - train_bars : b0], rows[b0 : b0 + refit_every]
            forest = IsolationForest(n_estimators=n_estimators, contamination=contamination, random_state=seed)
            forest.fit(x[past])
            score[block] = -100.0 * forest.score_samples(x[block])
            flag[block] = forest.predict(x[block]) < 0
    return pd.DataFrame({"score": score, "anomaly": flag}, index=candles.index)
