"""Helpers shared by the benchmark scripts: timing and the ~4.3M-row minute history."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
MINUTE_FILE = SHARED_DATA / "BTCUSDT-1m-2024-03.parquet"
TILES = 97  # 97 x 44,640 one-minute bars = 4,330,080 rows, about eight years


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall-clock seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def tiled_minutes(tiles: int = TILES) -> pd.DataFrame:
    """The real March 2024 minute month repeated `tiles` times, each copy shifted by the month
    length, so the index stays gap-free; indexed by UTC `open_time` like the store's output."""
    month = pd.read_parquet(MINUTE_FILE)
    times = pd.DatetimeIndex(month["open_time"]).as_unit("ms").asi8
    span = int(times[-1] - times[0]) + 60_000
    index = pd.DatetimeIndex(
        (np.tile(times, tiles) + np.repeat(np.arange(tiles) * span, len(times))).view("datetime64[ms]"),
        name="open_time",
    ).tz_localize("UTC")
    columns = {c: np.tile(month[c].to_numpy(dtype=np.float64), tiles) for c in month.columns if c != "open_time"}
    return pd.DataFrame(columns, index=index)
