"""`Forecast`: the one value every model, backtest, plot, registry entry and CLI command exchanges.

A forecast is made at n origins (the close of a bar) for steps 1..H ahead. Everything is held
in log-return space relative to the origin's close, so one object serves every price level:

- `returns` (n, H): predicted cumulative log returns; `prices` follow from `last_close`;
- `intervals`: per level (0.8, 0.95, ...; levels are data) the lower/upper log-return bounds;
  `constant_intervals` optionally the constant-width intervals they are compared against;
- `confidence` (n, H): the calibrated probability that the predicted direction is right;
- `scale` (n,): the causal volatility at the origin that the intervals and confidence used;
- what was known at the origin to judge it by: `base_rate` (n, H), the direction hit rate a
  forecaster without skill would be credited with, and `up_share` (n, H), the share of rising
  training targets (its majority sign is the direction baseline);
- `actual` (n, H): realised log returns, when known; `fold` (n,): walk-forward fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property

import numpy as np
import pandas as pd

from coffee_ml.data.schema import interval_timedelta

Bounds = dict[float, tuple[np.ndarray, np.ndarray]]


def level_tag(level: float) -> str:
    """0.8 -> "80", 0.95 -> "95", 0.975 -> "97.5": the suffix of column and scorer names."""
    return f"{level * 100:g}"


@dataclass(frozen=True, eq=False)
class Forecast:
    model: str
    interval: str
    origins: pd.DatetimeIndex
    last_close: np.ndarray
    returns: np.ndarray
    intervals: Bounds
    confidence: np.ndarray
    scale: np.ndarray
    base_rate: np.ndarray
    up_share: np.ndarray
    actual: np.ndarray | None = None
    fold: np.ndarray | None = None
    constant_intervals: Bounds | None = None
    steps: np.ndarray = field(default=None)  # type: ignore[assignment]  # 1..H unless a step subset

    def __post_init__(self) -> None:
        n, horizon = np.shape(self.returns)
        if self.steps is None:
            object.__setattr__(self, "steps", np.arange(1, horizon + 1))
        if len(self.steps) != horizon:
            raise ValueError(f"{len(self.steps)} steps for {horizon} forecast columns")
        for name in ("confidence", "base_rate", "up_share", "actual"):
            value = getattr(self, name)
            if value is not None and np.shape(value) != (n, horizon):
                raise ValueError(f"Forecast.{name} has shape {np.shape(value)}, expected {(n, horizon)}")
        for name in ("origins", "last_close", "scale", "fold"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Forecast.{name} has {len(value)} entries, expected {n}")

    # ------------------------------------------------------------------------------ shape
    @property
    def n(self) -> int:
        return len(self.origins)

    @property
    def horizon(self) -> int:
        """Furthest step ahead (forecasts h steps ahead from consecutive origins overlap h-fold)."""
        return int(self.steps.max())

    @property
    def levels(self) -> tuple[float, ...]:
        return tuple(sorted(self.intervals))

    @property
    def has_actual(self) -> bool:
        return self.actual is not None

    # ------------------------------------------------------------------------------ prices
    @cached_property
    def prices(self) -> np.ndarray:
        return self.last_close[:, None] * np.exp(self.returns)

    @cached_property
    def actual_prices(self) -> np.ndarray:
        if self.actual is None:
            raise ValueError(f"{self.model}: realised values are not known for this forecast")
        return self.last_close[:, None] * np.exp(self.actual)

    def bounds(self, level: float, price: bool = False, constant: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Lower/upper bounds of the `level` interval (log returns, or prices with `price`)."""
        source = self.constant_intervals if constant else self.intervals
        level = next((k for k in (source or {}) if level_tag(k) == level_tag(level)), level)
        if source is None or level not in source:
            have = ", ".join(level_tag(v) for v in (source or {}))
            raise ValueError(
                f"{self.model}: no {'constant-width ' if constant else ''}{level_tag(level)}% interval "
                f"(have: {have or 'none'})"
            )
        lo, hi = source[level]
        if price:
            return self.last_close[:, None] * np.exp(lo), self.last_close[:, None] * np.exp(hi)
        return lo, hi

    @property
    def times(self) -> pd.DatetimeIndex:
        """Open times of the forecast bars, origin by origin (n * H, the order of `to_frame`)."""
        horizon = len(self.steps)
        return self.origins.repeat(horizon) + np.tile(self.steps, self.n) * interval_timedelta(self.interval)

    @property
    def majority_sign(self) -> np.ndarray:
        """The direction baseline: +1 where most training targets rose, else -1."""
        return np.where(self.up_share >= 0.5, 1.0, -1.0)

    # ------------------------------------------------------------------------------ views
    def select(self, rows: np.ndarray | slice) -> "Forecast":
        """The forecast at a subset of origins (boolean mask, indices or slice)."""

        def take(v):
            if v is None:
                return None
            if isinstance(v, dict):
                return {k: (lo[rows], hi[rows]) for k, (lo, hi) in v.items()}
            return v[rows]

        per_origin = {
            f.name: take(getattr(self, f.name)) for f in fields(self) if f.name not in ("model", "interval", "steps")
        }
        return replace(self, **per_origin)

    def at_steps(self, steps: Sequence[int]) -> "Forecast":
        """The forecast for some steps ahead only (e.g. `at_steps([24])`)."""
        cols = np.searchsorted(self.steps, np.asarray(steps))
        if not np.array_equal(self.steps[np.minimum(cols, len(self.steps) - 1)], np.asarray(steps)):
            raise ValueError(f"steps {list(steps)} not in this forecast (steps {self.steps.min()}..{self.horizon})")

        def take(v):
            if v is None:
                return None
            if isinstance(v, dict):
                return {k: (lo[:, cols], hi[:, cols]) for k, (lo, hi) in v.items()}
            return v[:, cols]

        per_step = {
            name: take(getattr(self, name))
            for name in ("returns", "confidence", "base_rate", "up_share", "actual", "intervals", "constant_intervals")
        }
        return replace(self, steps=self.steps[cols], **per_step)

    def with_actual(self, actual: np.ndarray) -> "Forecast":
        return replace(self, actual=np.asarray(actual, dtype=float))

    @classmethod
    def concat(cls, parts: Sequence["Forecast"]) -> "Forecast":
        """Forecasts of consecutive blocks (walk-forward folds) as one; same model and steps."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        for p in parts[1:]:
            if p.model != first.model or not np.array_equal(p.steps, first.steps) or p.levels != first.levels:
                raise ValueError("can only concatenate forecasts of one model with the same steps and levels")

        def join(name):
            values = [getattr(p, name) for p in parts]
            if all(v is None for v in values):
                return None
            if any(v is None for v in values):
                raise ValueError(f"cannot concatenate forecasts where only some have {name}")
            if isinstance(values[0], dict):
                return {
                    k: (np.concatenate([v[k][0] for v in values]), np.concatenate([v[k][1] for v in values]))
                    for k in values[0]
                }
            if isinstance(values[0], pd.DatetimeIndex):
                return values[0].append(values[1:])
            return np.concatenate(values)

        return replace(
            first, **{f.name: join(f.name) for f in fields(cls) if f.name not in ("model", "interval", "steps")}
        )

    # ------------------------------------------------------------------------------ tables
    def to_frame(self) -> pd.DataFrame:
        """Long table, one row per origin and step: time, price, bounds per level, confidence,
        and the realised price as `actual` when known (the platform's prediction rows)."""
        n, horizon = self.returns.shape
        p0 = np.repeat(self.last_close, horizon)
        data = {
            "origin": np.repeat(self.origins.to_numpy(), horizon),
            "step": np.tile(self.steps, n),
            "time": self.times,
            "last_close": p0,
            "price": self.prices.ravel(),
        }
        if self.fold is not None:
            data["fold"] = np.repeat(self.fold, horizon)
        for level in self.levels:
            lo, hi = self.bounds(level, price=True)
            data[f"lower_{level_tag(level)}"], data[f"upper_{level_tag(level)}"] = lo.ravel(), hi.ravel()
        data["confidence"] = self.confidence.ravel()
        if self.actual is not None:
            data["actual"] = self.actual_prices.ravel()
        return pd.DataFrame(data)

    def step_frame(self, step: int) -> pd.DataFrame:
        """One step ahead over time (indexed by origin): the view plots use."""
        frame = self.at_steps([step]).to_frame()
        return frame.set_index(pd.DatetimeIndex(frame["origin"]))
