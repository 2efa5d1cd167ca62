"""Predict from the registry: what the CLI and the trading sidebar show.

`predict(symbol, interval, model, version)` loads a registry version, reads from the store only
the candles that version needs (window + feature look-back + burn-in, not the whole history) and
returns a `Forecast` for the next H bars: prices, intervals per level, confidence.
"""

from __future__ import annotations

from pathlib import Path

from coffee_ml.forecast import Forecast
from coffee_ml.models.persistence import load_model


def predict(symbol: str, interval: str, model: str, version: str = "production", *, backend: str = "auto",
            end: str | None = None, root: Path | None = None) -> Forecast:
    """Forecast the next H bars after the newest stored candle (or the last one before `end`)."""
    from coffee_ml.data import open_store

    loaded = load_model(symbol, interval, model, version, root=root)
    candles = open_store(backend).load_last(symbol, interval, loaded.history_bars, end=end)
    if candles.empty:
        raise ValueError(f"no {symbol} {interval} candles in the store to forecast from")
    return loaded.predict(candles)
