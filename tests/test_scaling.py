"""FeatureScaler: agreement with scikit-learn, inverse, and JSON round trips without pickle."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from coffee_ml.data.sample import load_sample
from coffee_ml.estimator import NotFittedError
from coffee_ml.features import FeatureScaler, compute_features

SKLEARN = {"standard": StandardScaler(), "minmax": MinMaxScaler(), "robust": RobustScaler()}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    feats = compute_features(load_sample().iloc[-3000:], groups=["trend", "volume"]).iloc[60:]
    return feats.assign(constant=1.5)  # a zero-variance column must not divide by zero


@pytest.mark.parametrize("method", list(SKLEARN))
def test_matches_sklearn_and_inverts(frame: pd.DataFrame, method: str) -> None:
    train, later = frame.iloc[:2000], frame.iloc[2000:]
    scaler = FeatureScaler(method).fit(train)
    expected = SKLEARN[method].fit(train.to_numpy()).transform(later.to_numpy())
    out = scaler.transform(later)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)
    assert out.flags.c_contiguous and np.isfinite(out).all()
    np.testing.assert_allclose(scaler.inverse_transform(out), later.to_numpy(), rtol=1e-10, atol=1e-10)
    assert list(scaler.get_feature_names_out()) == list(frame.columns)
    assert scaler.n_samples_seen_ == 2000 and scaler.get_params()["method"] == method


@pytest.mark.parametrize("method", list(SKLEARN))
def test_json_round_trip_is_identical(frame: pd.DataFrame, method: str, tmp_path) -> None:
    scaler = FeatureScaler(method, quantile_range=(10.0, 90.0)).fit(frame.iloc[:1500])
    path = tmp_path / "scaler.json"
    text = scaler.to_json(path)
    state = json.loads(path.read_text())
    assert state["params"]["method"] == method and len(state["center"]) == frame.shape[1]
    for restored in (
        FeatureScaler.from_json(text),
        FeatureScaler.from_json(path),
        FeatureScaler.from_dict(scaler.to_dict()),
    ):
        np.testing.assert_array_equal(restored.transform(frame), scaler.transform(frame))
        assert restored.get_params() == scaler.get_params()
        assert list(restored.feature_names_in_) == list(frame.columns)


def test_robust_quantile_range_is_used(frame: pd.DataFrame) -> None:
    narrow = FeatureScaler("robust", quantile_range=(40.0, 60.0)).fit(frame)
    wide = FeatureScaler("robust").fit(frame)
    assert (narrow.scale_[:-1] < wide.scale_[:-1]).all()


def test_errors(frame: pd.DataFrame) -> None:
    with pytest.raises(NotFittedError):
        FeatureScaler().transform(frame)
    with pytest.raises(ValueError, match="unknown scaler method 'zscore'"):
        FeatureScaler("zscore").fit(frame)
    bad = frame.copy()
    bad.iloc[3, 0] = np.nan
    with pytest.raises(ValueError, match=f"non-finite values \\({frame.columns[0]}: 1\\)"):
        FeatureScaler().fit(bad)
    fitted = FeatureScaler().fit(frame)
    with pytest.raises(ValueError, match="differ"):
        fitted.transform(frame[frame.columns[::-1]])
    with pytest.raises(ValueError, match="not a FeatureScaler"):
        FeatureScaler.from_dict({"class": "Pickle", "format": 1})
