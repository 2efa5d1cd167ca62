"""Search spaces as params-file entries, checked before any trial runs.

    space:
      hidden: [32, 64, 128]               # a list: these values (grid, random and Optuna)
      window: [20, 40, 60]
      epochs: [50, 100, 150]              # the cap for early stopping (the model's max_epochs)
      lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # a range: random and Optuna only
      layers: {low: 1, high: 3}           # whole-number bounds give an integer range

Every value is tried on the model before the search starts: an unknown parameter, an empty
list, a value the model's constructor or network rejects, or a range on a grid search is one
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

    @classmethod
    def parse(cls, model: str, space: dict[str, Any] | None) -> "SearchSpace":
        spec = get_spec(model)
        space = DEFAULT_SPACE if space is None else space
        if not isinstance(space, dict) or not space:
            raise ValueError(f"space for model {model!r} is empty: give at least one parameter with values")
        parsed: dict[str, list[Any] | Range] = {}
        valid = set(spec.estimator._param_names())
        for key, values in space.items():
            name = ALIASES.get(key, key)
            if name not in valid:
                raise ValueError(f"space: model {model!r} has no parameter {key!r}; valid: "
                                 f"{', '.join(sorted(valid | {'epochs'}))}")
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
        """Build the model with each value (and its network, for neural models) so that a bad
        value fails now, not an hour into the search."""
        spec = get_spec(self.model)
        for name, values in self.params.items():
            probes = [values.low, values.high] if isinstance(values, Range) else values
            for v in probes:
                value = int(v) if isinstance(values, Range) and values.integer else v
                try:
                    check_value(spec.build(**{name: value}), name, value)
                except (ValueError, TypeError, RuntimeError) as exc:
                    raise ValueError(f"space.{name}: model {self.model!r} rejects {value!r}: {exc}") from None

    @property
    def is_grid(self) -> bool:
        return all(isinstance(v, list) for v in self.params.values())

    def grid(self) -> dict[str, list[Any]]:
        if not self.is_grid:
            ranged = [k for k, v in self.params.items() if isinstance(v, Range)]
            raise ValueError(f"grid search needs a list of values for every parameter; {', '.join(ranged)} "
                             "is a range (use method random or optuna)")
        return {k: list(v) for k, v in self.params.items()}

    @property
    def size(self) -> int | None:
        """Number of grid points (None with a range)."""
        return len(list(itertools.product(*self.grid().values()))) if self.is_grid else None

    @property
    def max_window(self) -> int:
        windows = self.params.get("window")
        if windows is None:
            return int(get_spec(self.model).build().window)
        return int(windows.high if isinstance(windows, Range) else max(windows))

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One point of the space from an Optuna trial (any sampler)."""
        out = {}
        for name, values in self.params.items():
            if isinstance(values, Range):
                out[name] = (trial.suggest_int(name, int(values.low), int(values.high), log=values.log)
                             if values.integer else trial.suggest_float(name, values.low, values.high, log=values.log))
            else:
                out[name] = trial.suggest_categorical(name, values)
        return out


def check_value(model: Any, name: str, value: Any) -> None:
    """Reject what the model would only reject at fit time: non-positive sizes and rates, a
    dropout outside [0, 1), and anything its network or optimiser refuses to be built with."""
    if name in ("window", "hidden", "layers", "max_epochs", "batch_size", "patience") and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a whole number >= 1")
    if name == "lr" and not (isinstance(value, (int, float)) and value > 0):
        raise ValueError("lr must be > 0")
    if name == "dropout" and not (isinstance(value, (int, float)) and 0 <= value < 1):
        raise ValueError("dropout must be in [0, 1)")
    if hasattr(model, "_net"):  # neural: the network and its optimiser must build
        import torch

        net = model._net(n_features=4, horizon=2)
        torch.optim.Adam(net.parameters(), lr=model.lr)
