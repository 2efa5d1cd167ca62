"""Train several models on one dataset and compare them, always with the naive baseline."""

from __future__ import annotations

from typing import Any

import pandas as pd

from coffee_ml.features import FeatureDataset
from coffee_ml.models import Forecaster, build_model
from coffee_ml.models.forecast import evaluate


def fit_models(ds: FeatureDataset, names: list[str], params: dict[str, dict[str, Any]] | None = None,
               max_epochs: int | None = None, device: str = "auto", seed: int = 0,
               progress: bool = True) -> dict[str, Forecaster]:
    """Fit each named model (params per name override defaults; `max_epochs`, `device`, `seed`
    apply to the neural ones). The naive baseline is always added."""
    params = params or {}
    unknown = set(params) - set(names)
    if unknown:
        raise ValueError(f"model params given for {', '.join(sorted(unknown))}, which are not in models={names}")
    fitted: dict[str, Forecaster] = {}
    for name in dict.fromkeys([*names, "naive"]):
        fitted[name] = build_model(name, params.get(name), max_epochs=max_epochs, seed=seed, device=device,
                                   progress=progress).fit(ds)
    return fitted


def compare(models: dict[str, Forecaster], ds: FeatureDataset, split: str = "test") -> pd.DataFrame:
    """One row per model: metrics over all horizons, naive's on the same windows, interval coverage."""
    rows = {}
    for name, model in models.items():
        result = evaluate(model, ds, split)
        rows[name] = result["metrics"].loc["all"].to_dict() | result["coverage"]
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table[["mae", "naive_mae", "skill", "rmse", "naive_rmse", "mape", "naive_mape", "r2", "dir_acc",
                  "coverage_80", "coverage_95", "n"]]
