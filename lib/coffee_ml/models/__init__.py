"""Forecasters with scikit-learn conventions: params in the constructor, `fit(dataset)`, fitted
state with a trailing underscore, `predict(dataset) -> Forecast`. All predict cumulative forward
log returns for horizons 1..H. Model types are looked up by name in `SPECS`."""

from __future__ import annotations

from coffee_ml.models.base import FineTunable, Forecaster, contexts
from coffee_ml.models.baselines import DriftForecaster, NaiveForecaster
from coffee_ml.models.calibration import LEVELS, Calibration
from coffee_ml.models.gbm import GBMForecaster
from coffee_ml.models.hybrid import HybridForecaster
from coffee_ml.models.neural import GRUForecaster, LSTMForecaster
from coffee_ml.models.specs import SPECS, ModelSpec, build_model, get_spec, make_model

__all__ = [
    "LEVELS",
    "SPECS",
    "Calibration",
    "DriftForecaster",
    "FineTunable",
    "Forecaster",
    "GBMForecaster",
    "GRUForecaster",
    "HybridForecaster",
    "LSTMForecaster",
    "ModelSpec",
    "NaiveForecaster",
    "build_model",
    "contexts",
    "get_spec",
    "make_model",
]
