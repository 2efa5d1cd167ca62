"""Forecasters with scikit-learn conventions: params in the constructor, `fit(dataset)`, fitted
state with a trailing underscore. All predict cumulative forward log returns for horizons 1..H."""

from __future__ import annotations

from typing import Any

from coffee_ml.models.base import Forecaster, contexts
from coffee_ml.models.baselines import DriftForecaster, NaiveForecaster
from coffee_ml.models.calibration import LEVELS, Calibration
from coffee_ml.models.hybrid import HybridForecaster
from coffee_ml.models.neural import GRUForecaster, LSTMForecaster, fast_lstm

MODEL_TYPES: dict[str, Any] = {
    "lstm": LSTMForecaster,
    "gru": GRUForecaster,
    "lstm_fast": fast_lstm,
    "hybrid": HybridForecaster,
    "naive": NaiveForecaster,
    "drift": DriftForecaster,
}


NEURAL_MODELS = frozenset({"lstm", "gru", "lstm_fast"})


def make_model(name: str, **params: Any) -> Forecaster:
    """A model by its name in params files; unknown names list the known ones."""
    try:
        factory = MODEL_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_TYPES)}") from None
    return factory(**params)


def build_model(name: str, params: dict[str, Any] | None = None, *, max_epochs: int | None = None, seed: int = 0,
                device: str = "auto", progress: bool = True) -> Forecaster:
    """`make_model` with run-level settings (epochs, seed, device, progress bar) applied to the
    neural models; entries in `params` override them."""
    kwargs = dict(params or {})
    if name in NEURAL_MODELS:
        kwargs = {"device": device, "seed": seed, "progress": progress,
                  **({"max_epochs": max_epochs} if max_epochs else {}), **kwargs}
    return make_model(name, **kwargs)


__all__ = ["LEVELS", "MODEL_TYPES", "NEURAL_MODELS", "build_model", "Calibration", "DriftForecaster", "Forecaster", "GRUForecaster",
           "HybridForecaster", "LSTMForecaster", "NaiveForecaster", "contexts", "fast_lstm", "make_model"]
