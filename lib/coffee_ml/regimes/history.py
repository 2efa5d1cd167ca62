"""Regime labels over history, fitted per walk-forward fold, and the current regime (the sidebar, the run records)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from coffee_ml.backtest.folds import plan_folds
from coffee_ml.regimes.detectors import RegimeDetector, make_detector


def label_history(
    detector: RegimeDetector,
    candles: pd.DataFrame,
    *,
    min_train: int = 4000,
    refit_every: int = 4380,
    scheme: str = "expanding",
    train_bars: int | None = None,
    burn_in: int = 1000,
) -> pd.DataFrame:
    """Walk-forward regime labels: every bar from row `min_train` on, each block of `refit_every`
    bars labelled by a clone of `detector` fitted on the bars before the block only.

    Blocks are the backtest's fold plan (`backtest.folds.plan_folds`, "expanding" or "rolling"
    over `train_bars`), counted from the first bar, so adding later bars never moves an earlier
    block. A block is labelled from `burn_in` bars before it (trailing windows and the HMM filter
    warm up there): the label at t reads bars up to t and the fit reads bars before the block.
    Columns: regime, confidence (and the state probabilities of an HMM), fold.
    """
    n = len(candles)
    if n <= min_train:
        raise ValueError(f"regime history needs more than min_train={min_train} bars, got {n}")
    folds = plan_folds(n, min_train, refit_every, embargo=0, scheme=scheme, train_bars=train_bars)
    parts = []
    for fold in folds:
        lo, b0, b1 = fold.fit_rows[0], fold.test_rows[0], fold.test_rows[1]
        model = detector.clone().fit(candles.iloc[lo:b0])
        labels = model.predict(candles.iloc[max(0, b0 - burn_in) : b1]).iloc[-(b1 - b0) :]
        parts.append(labels.assign(fold=fold.index))
    return pd.concat(parts)


def spell_start(regimes: pd.Series) -> pd.Timestamp:
    """When the last run of equal labels began (the first bar of the current regime)."""
    values = regimes.to_numpy()
    changed = np.flatnonzero(values[1:] != values[:-1])
    return regimes.index[changed[-1] + 1 if len(changed) else 0]


def regime_now(labels: pd.DataFrame, method: str) -> dict[str, Any]:
    """The regime of the last labelled bar, its confidence (0-100%) and since when it has held,
    from any label history (a detector's `predict` or `label_history`): one definition for the
    trading sidebar and the run records, so both say the same thing about the same labels.

    `since` is the first bar of the current spell among `labels`; `since_bound` says the regime
    held through all of them (it may have begun earlier).
    """
    lab = labels.dropna(subset=["regime"])
    if lab.empty:
        raise ValueError(f"no labelled bar among {len(labels)} {method} labels")
    since = spell_start(lab["regime"])
    return {
        "method": method,
        "regime": str(lab["regime"].iloc[-1]),
        "confidence": round(100 * float(lab["confidence"].iloc[-1]), 1),
        "since": since,
        "since_bound": bool(since == lab.index[0]),
        "as_of": lab.index[-1],
    }


def current_regime(
    symbol: str,
    interval: str = "1h",
    method: str = "rules",
    *,
    backend: str = "auto",
    history_bars: int = 8760,
    **params: Any,
) -> dict[str, Any]:
    """What the trading sidebar shows: the regime of the newest bar, its confidence (0-100%), and
    since when it has held, from a detector fitted on the last `history_bars` bars (all past).

    The spell start is searched within those bars; if the regime held through all of them,
    `since` is their first bar and `since_bound` says so.
    """
    from coffee_ml.data import open_store

    candles = open_store(backend).load_last(symbol, interval, history_bars)
    if candles.empty:
        raise ValueError(f"no {symbol} {interval} candles stored (see `coffee-ml data list`)")
    detector = make_detector(method, interval=interval, **params).fit(candles)
    labels = detector.predict(candles).dropna(subset=["regime"])
    if labels.empty:
        raise ValueError(f"{len(candles)} {symbol} {interval} candles are too few for {method} regimes")
    return {"symbol": symbol, "interval": interval, **regime_now(labels, method)}
