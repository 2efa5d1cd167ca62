"""Regime detection on the full hourly BTCUSDT history (the bundled sample, 72,540 bars)."""

from __future__ import annotations

import statistics

from common import timed

from coffee_ml.data import load_sample
from coffee_ml.regimes import HMMRegimes, RuleRegimes


def run() -> list[dict]:
    candles = load_sample()
    n = len(candles)
    rules = statistics.median(timed(lambda: RuleRegimes().fit().predict(candles), 5))
    hmm = statistics.median(timed(lambda: HMMRegimes().fit(candles).predict(candles), 3))
    return [
        {
            "benchmark": f"rule-based regime labels, {n:,} hourly bars",
            "measured": rules,
            "unit": "s",
            "target": "< 0.5 s",
        },
        {
            "benchmark": f"HMM regimes: fit + filtered labels, {n:,} hourly bars",
            "measured": hmm,
            "unit": "s",
            "target": "< 10 s",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
