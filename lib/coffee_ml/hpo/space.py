"""Search spaces as params-file entries, checked before any trial runs.

    space:
      hidden: [32, 64, 128]               # a list: these values (grid, random and Optuna)
      window: [20, 40, 60]
      epochs: [50, 100, 150]              # the cap for early stopping (the model's max_epochs)
      lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # a range: random and Optuna only
      layers: {low: 1, high: 3}           # whole-number bounds give an integer range
      model: [lstm, gru, gbm]             # the model type (the cell type) is searched too

With `model` in the space, each parameter goes to the models that have it (hidden to lstm and
gru, num_leaves to gbm) and must belong to at least one of them.

Every value is tried on the models before the search starts: an unknown parameter, an empty
list, a value a model's constructor or network rejects, or a range on a grid search is one
clear error naming the parameter.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from coffee_ml.models.specs import get_spec

ALIASES = {"epochs": "max_epochs", "sequence_length": "window"}
# The platform's default space (its "Train (HPO)" page).
DEFAULT_SPACE: dict[str, Any] = {"hidden": [32, 64, 128], "window": [20, 40, 60], "epochs": [50, 100, 150]}


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    integer: bool = False


@dataclass(frozen=True)
class SearchSpace:
    """Parameter name (the model's constructor name) -> list of choices or a `Range`."""

    model: str
    params: dict[str, list[Any] | Range]

    @property
    def models(self) -> list[str]:
        """The model types searched: the space's `model` list, or the one model."""
        chosen = self.params.get("model")
        return list(chosen) if isinstance(chosen, list) else [self.model]

    @classmethod
    def parse(cls, model: str, space: dict[str, Any] | None) -> "SearchSpace":
        space = DEFAULT_SPACE if space is None else space
        if not isinstance(space, dict) or not space:
            raise ValueError(f"space for model {model!r} is empty: give at least one parameter with values")
        models = space.get("model", [model])
        if not isinstance(models, list) or not models:
            raise ValueError(f"space.model: expected a non-empty list of model names, got {models!r}")
        for name in models:
            get_spec(name)  # unknown model names fail with the list of known ones
        valid = set().union(*(get_spec(m).estimator._param_names() for m in models))
        parsed: dict[str, list[Any] | Range] = {}
        for key, values in space.items():
            if key == "model":
                parsed["model"] = list(models)
                continue
            name = ALIASES.get(key, key)
            if name not in valid:
                raise ValueError(
                    f"space: model {'/'.join(models)!r} has no parameter {key!r}; valid: "
                    f"{', '.join(sorted(valid | {'epochs'}))}"
                )
            if isinstance(values, dict):
                extra = set(values) - {"low", "high", "log"}
                if extra or not {"low", "high"} <= set(values):
                    raise ValueError(f"space.{key}: a range is {{low: ..., high: ..., log: true|false}}, got {values}")
                low, high = values["low"], values["high"]
                if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high):
                    raise ValueError(f"space.{key}: range needs numbers with low < high, got {low} .. {high}")
                if values.get("log") and low <= 0:
                    raise ValueError(f"space.{key}: a log range needs low > 0, got {low}")
                integer = isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool)
                parsed[name] = Range(float(low), float(high), bool(values.get("log", False)), integer)
            elif isinstance(values, (list, tuple)):
                if not values:
                    raise ValueError(f"space.{key} is empty: list at least one value")
                parsed[name] = list(values)
            else:
                raise ValueError(f"space.{key}: expected a list of values or a range {{low, high}}, got {values!r}")
        out = cls(model, parsed)
        out._check_values()
        return out

    def _check_values(self) -> None:
        """Build each model that has the parameter with each value (and its network, for neural
        models) so that a bad value fails now, not an hour into the search."""
        for name, values in self.params.items():
            if name == "model":
                continue
            probes = [values.low, values.high] if isinstance(values, Range) else values
            for model in self.models:
                spec = get_spec(model)
                if name not in spec.estimator._param_names():
                    continue
                for v in probes:
                    value = int(v) if isinstance(values, Range) and values.integer else v
                    try:
                        check_value(spec.build(**{name: value}), name, value)
                    except (ValueError, TypeError, RuntimeError) as exc:
                        raise ValueError(f"space.{name}: model {model!r} rejects {value!r}: {exc}") from None

    def for_model(self, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(model name, its parameters) from one point of the space."""
        params = dict(params)
        model = params.pop("model", self.model)
        names = set(get_spec(model).estimator._param_names())
        return model, {k: v for k, v in params.items() if k in names}

    @property
    def is_grid(self) -> bool:
        return all(isinstance(v, list) for v in self.params.values())

    def grid(self) -> dict[str, list[Any]]:
        if not self.is_grid:
            ranged = [k for k, v in self.params.items() if isinstance(v, Range)]
            raise ValueError(
                f"grid search needs a list of values for every parameter; {', '.join(ranged)} "
                "is a range (use method random or optuna)"
            )
        return {k: list(v) for k, v in self.params.items()}

    @property
    def size(self) -> int | None:
        """Number of grid points (None with a range)."""
        return len(list(itertools.product(*self.grid().values()))) if self.is_grid else None

    @property
    def max_window(self) -> int:
        """The longest window any trial can ask for (the shared dataset's window)."""
        windows = self.params.get("window")
        searched = [] if windows is None else [int(windows.high if isinstance(windows, Range) else max(windows))]
        return max([*searched, *(int(get_spec(m).build().window) for m in self.models)])

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One point of the space from an Optuna trial (any sampler)."""
        out = {}
        for name, values in self.params.items():
            if isinstance(values, Range):
                out[name] = (
                    trial.suggest_int(name, int(values.low), int(values.high), log=values.log)
                    if values.integer
                    else trial.suggest_float(name, values.low, values.high, log=values.log)
                )
            else:
                out[name] = trial.suggest_categorical(name, values)
        return out


def check_value(model: Any, name: str, value: Any) -> None:
    """Reject what the model would only reject at fit time: non-positive sizes and rates, a
    dropout outside [0, 1), and anything its network or optimiser refuses to be built with."""
    if name in ("window", "hidden", "layers", "max_epochs", "batch_size", "patience") and (
        not isinstance(value, int) or isinstance(value, bool) or value < 1
    ):
        raise ValueError(f"{name} must be a whole number >= 1")
    if name == "lr" and not (isinstance(value, (int, float)) and value > 0):
        raise ValueError("lr must be > 0")
    if name == "dropout" and not (isinstance(value, (int, float)) and 0 <= value < 1):
        raise ValueError("dropout must be in [0, 1)")
    if hasattr(model, "_net"):  # neural: the network and its optimiser must build
        import torch

        net = model._net(n_features=4, horizon=2)
        torch.optim.Adam(net.parameters(), lr=model.lr)
