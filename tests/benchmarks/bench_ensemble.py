"""What the five ensemble strategies add to the members' walk-forward: BTCUSDT hours 2021-01 ..
2025-11, test from 2024-01 in blocks of 2,190 bars; members lstm_fast (32 hidden, 5 epochs),
hybrid and gbm (200 trees), the configuration of the README's ensemble findings (minutes)."""

from __future__ import annotations

from coffee_ml.data import load_sample
from coffee_ml.ensemble import STRATEGIES, run_comparison


def run() -> list[dict]:
    candles = load_sample().loc["2021-01-01":]
    res = run_comparison(
        candles,
        "1h",
        ["lstm_fast", "hybrid", "gbm"],
        list(STRATEGIES),
        window=48,
        horizon=24,
        test_start="2024-01-01",
        retrain_every=2190,
        max_epochs=5,
        progress=False,
        member_params={"lstm_fast": {"hidden": 32}, "gbm": {"n_estimators": 200}},
    )
    s = res.seconds
    return [
        {
            "benchmark": f"members' walk-forward ({len(res.folds)} folds: fits + forecasts)",
            "measured": s["members"],
            "unit": "s",
            "target": "(reference)",
        },
        {
            "benchmark": "all five strategies over the members' predictions, share of the members' time",
            "measured": 100 * s["strategies"] / s["members"],
            "unit": "%",
            "target": "< 10 %",
        },
        {
            "benchmark": "  out-of-fold member fits of the first fold (inner walk-forward), share",
            "measured": 100 * s["out_of_fold"] / s["members"],
            "unit": "%",
            "target": "(report)",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
