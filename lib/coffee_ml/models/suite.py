"""Train several models on one dataset and compare them, always with the naive baseline."""

from __future__ import annotations

from typing import Any

from coffee_ml.features import FeatureDataset
from coffee_ml.forecast import Forecast
from coffee_ml.models.base import Forecaster
from coffee_ml.models.specs import build_model, get_spec


def fit_models(
    ds: FeatureDataset,
    names: list[str],
    params: dict[str, dict[str, Any]] | None = None,
    max_epochs: int | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Forecaster]:
    """Fit each named model (params per name override defaults; `max_epochs`, `device`, `seed`
    apply to the neural ones). The naive baseline is always added. Names and params are checked
    before anything is trained."""
    params = params or {}
    unknown = set(params) - set(names)
    if unknown:
        raise ValueError(f"model params given for {', '.join(sorted(unknown))}, which are not in models={names}")
    names = list(dict.fromkeys([*names, "naive"]))
    for name in names:
        get_spec(name).check_params(params.get(name))
    return {
        name: build_model(
            name, params.get(name), max_epochs=max_epochs, seed=seed, device=device, progress=progress
        ).fit(ds)
        for name in names
    }


def predict_all(models: dict[str, Forecaster], ds: FeatureDataset, split: str = "test") -> dict[str, Forecast]:
    """Each model's `Forecast` of one split, named as in `models` (for `evaluation.summary_table`)."""
    return {name: model.predict(ds, split, name=name) for name, model in models.items()}
