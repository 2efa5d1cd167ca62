"""Walk-forward benchmarks: 12 folds over two years of hourly BTCUSDT with the Hybrid model and
with the full LSTM (from scratch and warm-started), and what warm starting costs in accuracy."""

from __future__ import annotations

import time
from collections.abc import Iterator

from coffee_ml.backtest import run_backtest
from coffee_ml.data import load_sample

SPAN = ("2023-12-01", "2025-12-01")
BASE = {
    "symbol": "BTCUSDT",
    "method": "walk_forward",
    "retrainEvery": 730,
    "test_fraction": 0.5,
    "horizon": 24,
    "window": 60,
    "n_jobs": 1,
}
LSTM_EPOCHS = 2  # per fold from scratch (CPU budget); warm start fine-tunes 1 epoch per later fold


def _timed(request: dict, candles) -> tuple[float, object]:
    t0 = time.perf_counter()
    report = run_backtest(request, candles=candles, progress=False)
    return time.perf_counter() - t0, report


def run() -> Iterator[dict]:
    """Rows as they are measured (the LSTM runs take minutes; the Hybrid row shows at once)."""
    candles = load_sample().loc[SPAN[0] : SPAN[1]]
    hybrid_s, hybrid = _timed({**BASE, "modelType": "hybrid"}, candles)
    folds = len(hybrid.folds)
    yield {
        "benchmark": f"walk-forward, {folds} folds, 2 years hourly, Hybrid (features + fits + forecasts)",
        "measured": hybrid_s,
        "unit": "s",
        "target": "< 10 s",
    }
    lstm = {**BASE, "modelType": "lstm", "max_epochs": LSTM_EPOCHS}
    scratch_s, scratch = _timed(lstm, candles)
    warm_s, warm = _timed({**lstm, "warm_start": True, "warm_epochs": 1}, candles)
    names = ["mae", "naive_mae", "skill"]
    ms, mw = scratch.results["lstm"].scores(names), warm.results["lstm"].scores(names)
    yield from [
        {
            "benchmark": f"walk-forward, {folds} folds, full LSTM, {LSTM_EPOCHS} epochs per fold from scratch, CPU",
            "measured": scratch_s,
            "unit": "s",
            "target": "(report)",
        },
        {
            "benchmark": "same with warm start (1 fine-tuning epoch per later fold)",
            "measured": warm_s,
            "unit": "s",
            "target": "(report)",
        },
        {
            "benchmark": "warm-start / from-scratch time ratio",
            "measured": warm_s / scratch_s,
            "unit": "x",
            "target": "(report)",
        },
        {
            "benchmark": f"MAE from scratch {ms['mae']:.1f} vs warm {mw['mae']:.1f} (naive {ms['naive_mae']:.1f}): "
            "warm - scratch",
            "measured": mw["mae"] - ms["mae"],
            "unit": "USD",
            "target": "(report)",
        },
        {
            "benchmark": f"skill vs naive: scratch {ms['skill']:+.4f}, warm {mw['skill']:+.4f}; warm - scratch",
            "measured": mw["skill"] - ms["skill"],
            "unit": "",
            "target": "(report)",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
