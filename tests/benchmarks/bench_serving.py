"""The hand-off to trading: `coffee-ml predict` from a fresh process, a warm `serving.Predictor`
(no new bar, and a new bar to forecast from), and `monitor` over a year of hourly bars.

Models are trained quickly on the bundled sample and saved into a throw-away registry and store
(never the user's outputs/); each is promoted in turn and served from the newest candles.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, timed

SYMBOL, INTERVAL = "BTCUSDT", "1h"
MODELS = {"hybrid": {}, "lstm_fast": {"hidden": 32, "max_epochs": 2, "progress": False}, "gbm": {"n_estimators": 100}}


def _cold(env: dict[str, str]) -> float:
    """Fresh process to printed answer, as a user or the platform runs it."""
    cli = Path(sys.executable).with_name("coffee-ml")
    command = [str(cli), "predict", SYMBOL, "--interval", INTERVAL, "--horizon", "24", "--json"]
    return statistics.median(timed(lambda: subprocess.run(command, env=env, check=True, capture_output=True), 3))


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["COFFEE_ML_OUTPUTS"], os.environ["COFFEE_ML_STORE"] = tmp, str(Path(tmp) / "store")
        from coffee_ml import monitor, registry, serving
        from coffee_ml.data import open_store
        from coffee_ml.features import build_dataset
        from coffee_ml.models import make_model
        from coffee_ml.models.persistence import save_model

        candles = open_store().load_candles(SYMBOL, INTERVAL, "2024-01-01", "2024-12-01")
        ds = build_dataset(candles, INTERVAL, window=60, horizon=24)
        env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
        rows = []
        for name, params in MODELS.items():
            registry.promote(save_model(make_model(name, window=60, **params).fit(ds), ds, symbol=SYMBOL, name=name))
            cold = _cold(env)
            predictor = serving.Predictor(SYMBOL, INTERVAL)
            predictor.predict()
            hit = statistics.median(timed(predictor.predict, 50))

            def new_bar() -> None:
                predictor.answer_ = None  # as when a bar has closed: features, model, intervals, regime again
                predictor.predict()

            fresh = statistics.median(timed(new_bar, 20))
            watch = statistics.median(timed(lambda: monitor.monitor(SYMBOL, INTERVAL), 3))
            report = monitor.monitor(SYMBOL, INTERVAL)
            rows += [
                {
                    "benchmark": f"coffee-ml predict, fresh process to printed answer ({name})",
                    "measured": cold,
                    "unit": "s",
                    "target": "< 5 s",
                },
                {
                    "benchmark": f"warm predict, no new bar ({name})",
                    "measured": 1000 * hit,
                    "unit": "ms",
                    "target": "< 50 ms",
                },
                {
                    "benchmark": f"warm predict, a new bar to forecast from ({name})",
                    "measured": 1000 * fresh,
                    "unit": "ms",
                    "target": "< 50 ms",
                },
                {
                    "benchmark": f"models monitor over {report.forecast.n:,} origins since training ({name})",
                    "measured": watch,
                    "unit": "s",
                    "target": "< 10 s",
                },
            ]
        return rows


if __name__ == "__main__":
    for row in run():
        print(row)
