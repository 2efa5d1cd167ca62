"""Real sample data shipped inside the package, so a fresh clone works offline."""

from __future__ import annotations

from importlib import resources

import pandas as pd

SAMPLE_SYMBOL = "BTCUSDT"
SAMPLE_INTERVAL = "1h"


def sample_path():
    """Path of the bundled Binance BTCUSDT hourly candles (2017-08 .. 2025-11)."""
    return resources.files("coffee_ml") / "sample_data" / "BTCUSDT-1h.parquet"


def load_sample() -> pd.DataFrame:
    """The bundled candles indexed by UTC `open_time`, read straight from Parquet (no store)."""
    with resources.as_file(sample_path()) as path:
        df = pd.read_parquet(path)
    df["open_time"] = df["open_time"].astype("datetime64[ms, UTC]")
    df["trades"] = df["trades"].astype("float64")
    return df.set_index("open_time")
