"""The scikit-learn conventions our estimators follow without importing scikit-learn."""

from __future__ import annotations

import pytest
from sklearn.base import BaseEstimator

from coffee_ml.estimator import NotFittedError, ParamsMixin, require_fitted
from coffee_ml.features import FeatureScaler
from coffee_ml.models import HybridForecaster, LSTMForecaster


class _Sk(BaseEstimator):
    def __init__(self, a: int = 1, b: tuple = (1, 2), c: str = "x") -> None:
        self.a, self.b, self.c = a, b, c


class _Ours(ParamsMixin):
    def __init__(self, a: int = 1, b: tuple = (1, 2), c: str = "x") -> None:
        self.a, self.b, self.c = a, b, c


def test_get_set_params_and_repr_match_scikit_learn():
    ours, sk = _Ours(a=3, c="y"), _Sk(a=3, c="y")
    assert ours.get_params() == sk.get_params()
    assert repr(ours) == "_Ours(a=3, c='y')" and repr(sk) == "_Sk(a=3, c='y')"
    assert ours.set_params(b=(5,)).b == (5,) and sk.set_params(b=(5,)).b == (5,)
    with pytest.raises(ValueError, match="invalid parameter 'd'"):
        ours.set_params(d=1)


def test_clone_is_unfitted_with_the_same_params():
    model = HybridForecaster(window=12)
    model.alpha_ = 0.3
    twin = model.clone()
    assert twin.get_params() == model.get_params() and not hasattr(twin, "alpha_")
    assert LSTMForecaster(hidden=7).clone().hidden == 7


def test_not_fitted_error_is_clear():
    with pytest.raises(NotFittedError, match="FeatureScaler is not fitted yet"):
        FeatureScaler().transform([[1.0]])
    with pytest.raises(AttributeError):  # also an AttributeError, as in scikit-learn
        require_fitted(object(), ("coef_",))
