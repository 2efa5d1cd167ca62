"""The feature registry: every feature column has a name, a group, a one-line description,
its look-back and whether it is scale-free.

Features are computed in *families*: one function yields several related columns (MACD line,
signal and histogram come from one TA-Lib call), so selecting any column of a family computes
the family once. The registry is the single place that knows which columns exist, which groups
they belong to and which candle columns they need, so params files can select by name or group
and the pipeline can report what it skipped and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

GROUPS: tuple[str, ...] = ("price", "trend", "volatility", "volume", "orderflow", "calendar")


@dataclass(frozen=True)
class FeatureSpec:
    """Metadata of one feature column.

    `lookback` is the number of leading bars for which the feature has no value (TA-Lib's
    lookback, or the lag of a return); the pipeline drops that many warm-up rows. `requires`
    names the candle columns the computation reads, so a feature whose inputs are absent or
    all-NaN (e.g. taker columns of ETHUSDC) can be skipped with a reason. `scale_free=False`
    marks features in price units (ATR as a level): they stay available by explicit name but are
    never part of the default model set, because a model trained on 2017 price levels would not
    transfer to 2025 levels.
    """

    name: str
    group: str
    description: str
    lookback: int
    requires: tuple[str, ...] = ("close",)
    scale_free: bool = True


# A family function receives the `CandleArrays` of indicators.py and returns its columns by name.
FamilyFn = Callable[..., dict[str, np.ndarray]]


class FeatureRegistry:
    """Feature specs in registration order plus the family function that computes each."""

    def __init__(self) -> None:
        self._specs: dict[str, FeatureSpec] = {}
        self._family_of: dict[str, FamilyFn] = {}

    def family(self, *specs: FeatureSpec) -> Callable[[FamilyFn], FamilyFn]:
        """Decorator registering `specs` as the columns produced by the decorated function."""

        def register(fn: FamilyFn) -> FamilyFn:
            for spec in specs:
                if spec.name in self._specs:
                    raise ValueError(f"feature {spec.name!r} registered twice")
                if spec.group not in GROUPS:
                    raise ValueError(f"feature {spec.name!r}: unknown group {spec.group!r}")
                self._specs[spec.name] = spec
                self._family_of[spec.name] = fn
            return fn

        return register

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def __getitem__(self, name: str) -> FeatureSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"unknown feature {name!r}; known: {', '.join(self._specs)}") from None

    def names(self, group: str | None = None, scale_free_only: bool = False) -> list[str]:
        """Feature names in registration order, optionally of one group / scale-free only."""
        if group is not None and group not in GROUPS:
            raise ValueError(f"unknown feature group {group!r}; expected one of {', '.join(GROUPS)}")
        return [
            s.name
            for s in self._specs.values()
            if (group is None or s.group == group) and (s.scale_free or not scale_free_only)
        ]

    def family_of(self, name: str) -> FamilyFn:
        return self._family_of[self[name].name]

    def select(self, features: Iterable[str] | None = None, groups: Iterable[str] | None = None) -> list[str]:
        """Resolve a params-style selection to feature names in registration order.

        Neither given: the default model set, i.e. every scale-free feature. `groups` adds the
        scale-free features of those groups; `features` adds named features (a non-scale-free
        one only when named explicitly). Both given: their union. Unknown names raise.
        """
        features = list(features) if features is not None else None
        groups = list(groups) if groups is not None else None
        if features is None and groups is None:
            return self.names(scale_free_only=True)
        wanted: set[str] = set()
        for g in groups or ():
            wanted.update(self.names(group=g, scale_free_only=True))
        for name in features or ():
            wanted.add(self[name].name)
        return [n for n in self._specs if n in wanted]

    def describe(self) -> pd.DataFrame:
        """One row per feature: group, description, look-back, required columns, scale-free."""
        rows = [
            {
                "name": s.name,
                "group": s.group,
                "description": s.description,
                "lookback": s.lookback,
                "requires": ", ".join(s.requires),
                "scale_free": s.scale_free,
            }
            for s in self._specs.values()
        ]
        return pd.DataFrame(rows).set_index("name")


REGISTRY = FeatureRegistry()
