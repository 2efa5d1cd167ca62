"""Point forecasts that must not change when code around the models is reorganised.

`golden_forecasts.npz` was written by `python tests/golden/forecasts.py` at commit 49a3aca, before
the evaluation layer (issue 8) moved calibration, scoring and the walk-forward around the
models. `tests/test_golden.py` recomputes the same forecasts and compares them. The hybrid is
left out on purpose: its search space gained the no-change limit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
FILE = HERE / "golden_forecasts.npz"
TINY = {"hidden": 8, "layers": 2, "max_epochs": 2, "batch_size": 128, "progress": False, "device": "cpu", "seed": 3}
MODELS = {
    "lstm": {**TINY, "window": 30},
    "gru": {**TINY, "window": 30},
    "lstm_fast": {**TINY, "window": 20},
    "drift": {"window": 24},
    "naive": {},
}
BACKTEST = {
    "symbol": "BTCUSDT",
    "modelType": ["lstm", "drift"],
    "method": "walk_forward",
    "retrainEvery": 400,
    "horizon": 6,
    "window": 24,
    "groups": ["price", "volatility"],
    "test_fraction": 0.4,
    "n_jobs": 1,
    "warm_start": True,
    "warm_epochs": 1,
    "seed": 5,
    "model_params": {
        "drift": {"window": 24},
        "lstm": {"window": 24, "hidden": 8, "layers": 1, "max_epochs": 2, "device": "cpu"},
    },
}


# float32 networks: oneDNN picks kernels per CPU model, so sums may round differently elsewhere
# (5e-10 seen between two Xeons); a real change moves a forecast by 6e-5 or more.
NEURAL_ATOL = 1e-7


def assert_same(key: str, actual: np.ndarray, expected: np.ndarray) -> None:
    """Bit-equal for the float64 models and plumbing; within NEURAL_ATOL (of a log return) for
    the float32 neural networks."""
    if key.split("/")[1].startswith(("lstm", "gru")):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=NEURAL_ATOL, err_msg=key)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=key)


def compute() -> dict[str, np.ndarray]:
    from coffee_ml.backtest import run_backtest
    from coffee_ml.data import load_sample
    from coffee_ml.features import build_dataset
    from coffee_ml.models import make_model

    torch.set_num_threads(1)
    out = {}
    ds = build_dataset(
        load_sample().loc["2025-05-01":"2025-09-01"],
        "1h",
        groups=["price", "trend", "volatility"],
        window=30,
        horizon=6,
    )
    for name, params in MODELS.items():
        model = make_model(name, **params).fit(ds)
        out[f"model/{name}"] = model.predict(ds, "test").returns
    report = run_backtest(BACKTEST, candles=load_sample().loc["2025-03-01":"2025-07-01"], progress=False)
    for name, result in report.results.items():
        out[f"walk_forward/{name}"] = result.forecast.returns
    return out


if __name__ == "__main__":
    arrays = compute()
    np.savez_compressed(FILE, **arrays)
    print(FILE, {k: v.shape for k, v in arrays.items()})
