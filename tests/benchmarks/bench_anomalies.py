"""All three anomaly detectors (pump-and-dump, flash-crash risk, Isolation Forest) and the events
from them: one month of 1-minute candles (March 2024, ../shared/data) and the full hourly history."""

from __future__ import annotations

import statistics

import pandas as pd
from common import MINUTE_FILE, timed

from coffee_ml.anomalies import find_events
from coffee_ml.data import load_sample


def run() -> list[dict]:
    rows = []
    minutes = pd.read_parquet(MINUTE_FILE)
    minutes["open_time"] = pd.to_datetime(minutes["open_time"], utc=True)
    minutes = minutes.set_index("open_time")
    kw = dict(
        move_bars=60,
        baseline_bars=1440,
        dump_bars=60,
        rank_bars=1440,
        train_bars=10080,
        refit_every=1440,
        min_rise=0.01,
    )
    rows.append(
        {
            "benchmark": f"anomalies: three detectors + events, {len(minutes):,} 1-minute bars",
            "measured": statistics.median(timed(lambda: find_events(minutes, "1m", **kw), 3)),
            "unit": "s",
            "target": "< 3 s",
        }
    )
    hours = load_sample()
    rows.append(
        {
            "benchmark": f"anomalies: three detectors + events, {len(hours):,} hourly bars",
            "measured": statistics.median(timed(lambda: find_events(hours, "1h"), 3)),
            "unit": "s",
            "target": "< 3 s",
        }
    )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
