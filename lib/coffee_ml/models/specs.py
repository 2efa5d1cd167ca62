"""Model types by name: one registry used by params validation, construction and persistence.

A `ModelSpec` names an estimator class and the defaults that make it that model ("lstm_fast" is
an LSTM over 20 bars with 32 hidden units). Capabilities come from the class, not from lists kept
in sync by hand: `neural` (trained by epochs, takes the run's epochs/seed/device/progress),
`fine_tunable` (can warm-start from its previous weights), `needs_torch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coffee_ml.ensemble.forecaster import EnsembleForecaster
from coffee_ml.models.base import FineTunable, Forecaster
from coffee_ml.models.baselines import DriftForecaster, NaiveForecaster
from coffee_ml.models.gbm import GBMForecaster
from coffee_ml.models.hybrid import HybridForecaster
from coffee_ml.models.neural import GRUForecaster, LSTMForecaster, RNNForecaster

RUN_SETTINGS = ("max_epochs", "seed", "device", "progress")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    estimator: type[Forecaster]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def neural(self) -> bool:
        return issubclass(self.estimator, RNNForecaster)

    @property
    def fine_tunable(self) -> bool:
        return issubclass(self.estimator, FineTunable)

    @property
    def needs_torch(self) -> bool:
        return self.estimator.requires_torch

    def check_params(self, params: dict[str, Any] | None) -> None:
        """Unknown constructor parameters fail here, before anything runs."""
        valid = set(self.estimator._param_names())
        unknown = sorted(set(params or {}) - valid)
        if unknown:
            raise ValueError(
                f"model {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(sorted(valid))}"
            )

    def build(self, **params: Any) -> Forecaster:
        """An unfitted estimator: the spec's defaults overridden by `params`."""
        self.check_params(params)
        return self.estimator(**(self.defaults | params))


SPECS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("lstm", LSTMForecaster, "LSTM encoder, linear head for all horizons (hidden 128, 2 layers, 60 bars)"),
        ModelSpec("gru", GRUForecaster, "GRU encoder, linear head for all horizons"),
        ModelSpec(
            "lstm_fast",
            LSTMForecaster,
            "the platform's fast LSTM: 20 bars, 32 hidden units",
            {"window": 20, "hidden": 32},
        ),
        ModelSpec("hybrid", HybridForecaster, "OLS trend + Holt smoothing on log prices, damped toward no change"),
        ModelSpec("naive", NaiveForecaster, "the price stays (random walk)"),
        ModelSpec("drift", DriftForecaster, "random walk with the recent mean return as drift"),
        ModelSpec(
            "ensemble",
            EnsembleForecaster,
            "members combined by average, weights, vote, regime or a stacked "
            "ridge on out-of-fold predictions (coffee_ml.ensemble)",
            {},
        ),
        ModelSpec(
            "gbm",
            GBMForecaster,
            "LightGBM per horizon on last-bar features + lagged returns, early-stopped on val "
            "(<= 200 trees, 15 leaves)",
            {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 50, "n_jobs": 2},
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(SPECS)}") from None


def make_model(name: str, **params: Any) -> Forecaster:
    """An unfitted model by its name in params files."""
    return get_spec(name).build(**params)


def build_model(
    name: str,
    params: dict[str, Any] | None = None,
    *,
    max_epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> Forecaster:
    """`make_model` with the run-level settings (epochs, seed, device, progress bar) applied to
    neural models; entries in `params` override them."""
    spec = get_spec(name)
    kwargs = dict(params or {})
    if spec.neural or "max_epochs" in spec.estimator._param_names():  # an ensemble passes them to its members
        run = {
            "device": device,
            "seed": seed,
            "progress": progress,
            **({"max_epochs": max_epochs} if max_epochs else {}),
        }
        kwargs = run | kwargs
    return spec.build(**kwargs)
