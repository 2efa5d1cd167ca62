"""scikit-learn's estimator conventions without importing scikit-learn.

`import sklearn` pulls in scipy.stats (about 1.6 s here), which would dominate the start-up of a
process that only loads a model and forecasts. Classes used at inference therefore take
get_params/set_params/clone/repr from this mixin, with the same semantics as
`sklearn.base.BaseEstimator` (parameters are the constructor's keyword arguments, stored
unchanged; fitted state ends with an underscore); scikit-learn is imported where fitting needs it.
"""

from __future__ import annotations

import inspect
from typing import Any


class NotFittedError(ValueError, AttributeError):
    """Used before `fit`; same bases as scikit-learn's error of the same name."""


class ParamsMixin:
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "ParamsMixin":
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"invalid parameter {name!r} for {type(self).__name__}; valid: {', '.join(sorted(valid))}"
                )
            setattr(self, name, value)
        return self

    def clone(self) -> "ParamsMixin":
        """A new unfitted instance with the same parameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = {k: v for k, v in self.get_params().items() if defaults.get(k, inspect.Parameter.empty) != v}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


def require_fitted(obj: object, attributes: tuple[str, ...]) -> None:
    missing = [a for a in attributes if not hasattr(obj, a)]
    if missing:
        raise NotFittedError(f"this {type(obj).__name__} is not fitted yet (no {', '.join(missing)}); call fit first")
