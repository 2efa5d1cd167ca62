"""The gradient-boosting forecaster `gbm` on real BTCUSDT hours: a normal `Forecaster` (shapes,
calibrated intervals and confidence, clear errors), fitted on train only and stopped early on
val only (test never read), causal at prediction time, deterministic, and saved without pickle
(LightGBM's text model inside the registry's JSON) so that a reload forecasts identically."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest

from coffee_ml.data import load_sample
from coffee_ml.estimator import NotFittedError
from coffee_ml.features import build_dataset
from coffee_ml.models import GBMForecaster, contexts, get_spec, make_model
from coffee_ml.models.persistence import load_model, save_model
from forecasts import assert_same_forecast, scramble_after

GROUPS = ["price", "trend", "volatility"]
H = 6


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return load_sample().loc["2025-05-01":"2025-09-01"]


@pytest.fixture(scope="module")
def ds(candles):
    return build_dataset(candles, "1h", groups=GROUPS, window=30, horizon=H)


@pytest.fixture(scope="module")
def model(ds) -> GBMForecaster:
    return make_model("gbm").fit(ds)


def boosters(m: GBMForecaster) -> list[str]:
    return m.fitted_state()["boosters"]


def test_spec_defaults_are_quickstart_sized_and_params_are_checked():
    spec = get_spec("gbm")
    assert (spec.neural, spec.fine_tunable, spec.needs_torch) == (False, False, False)
    m = make_model("gbm")
    assert isinstance(m, GBMForecaster) and m.model_type == "gbm"
    assert (m.n_estimators, m.learning_rate, m.num_leaves, m.min_data_in_leaf, m.n_jobs) == (200, 0.05, 15, 50, 2)
    assert make_model("gbm", num_leaves=7).num_leaves == 7
    with pytest.raises(ValueError, match="model 'gbm' has no parameter 'num_trees'; valid: bagging_fraction"):
        make_model("gbm", num_trees=50)
    with pytest.raises(NotFittedError, match="GBMForecaster is not fitted yet"):
        make_model("gbm").predict(None)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"lags": 30}, r"gbm lags must be in \[0, window - 1 = 23\], got 30"),
        ({"spans": (3, 24)}, r"gbm spans must be in \[1, window - 1 = 23\], got \[24\]"),
        ({"objective": "quantile"}, "gbm objective must be one of l1, l2, got 'quantile'"),
        ({"window": 40}, "gbm needs windows of 40 bars; the dataset has 30"),
    ],
)
def test_bad_values_fail_before_training(ds, params, message):
    with pytest.raises(ValueError, match=message):
        make_model("gbm", **params).fit(ds)


def test_predicts_a_calibrated_forecast(ds, model):
    rows = ds.splits["test"]
    f = model.predict(ds, "test", name="gbm")
    assert f.model == "gbm" and f.returns.shape == (len(rows), H) and np.isfinite(f.returns).all()
    np.testing.assert_array_equal(f.actual, ds.y[rows])
    assert f.levels == (0.8, 0.95)
    lo95, lo80, hi80, hi95 = f.bounds(0.95)[0], f.bounds(0.8)[0], f.bounds(0.8)[1], f.bounds(0.95)[1]
    assert (lo95 <= lo80).all() and (lo80 < f.returns).all() and (f.returns < hi80).all() and (hi80 <= hi95).all()
    assert ((f.confidence > 0) & (f.confidence < 1)).all()
    assert np.unique(f.returns[:, 0]).size > 10  # not a constant: the boosters learned something
    some = rows[::7]
    np.testing.assert_array_equal(model.predict(ds, rows=some).returns, f.returns[::7])
    # inputs: last bar's features, `lags` one-bar returns, one return per span, the window's std
    assert model.input_names_[: ds.X.shape[1]] == ds.feature_names
    assert len(model.input_names_) == ds.X.shape[1] + model.lags + len(model.spans) + 1
    assert len(model.boosters_) == H and model.best_iteration_.shape == (H,)
    # fitting and calibration gather inputs without whole feature windows: the same values as the
    # predict path's `contexts`
    X, log_close = contexts(ds, some)
    np.testing.assert_array_equal(model._inputs_at(ds, some), model._tabular(X[:, -1, :], log_close))


def test_early_stopping_stops_and_keeps_the_best_rounds(ds, model):
    """On real hourly returns validation loss stops improving long before the 200-round cap; each
    step keeps exactly its best rounds (the saved text holds no trees past them)."""
    assert (model.best_iteration_ >= 1).all() and (model.best_iteration_ < model.n_estimators).all()
    assert [b.num_trees() for b in model.boosters_] == model.best_iteration_.tolist()
    capped = make_model("gbm", n_estimators=3, early_stopping_rounds=50).fit(ds)
    assert (capped.best_iteration_ <= 3).all()


def test_fitted_on_train_stopped_on_val_never_test(ds, model):
    """Poisoned test targets change nothing; poisoned val targets change the stopping point (so
    val is what early stopping reads); poisoned train targets change the trees."""

    def poisoned(split: str):
        y = ds.targets.copy()
        y.iloc[ds.splits[split]] = np.random.default_rng(0).normal(0, 0.5, (len(ds.splits[split]), H))
        return dataclasses.replace(ds, targets=y)

    test_poisoned = make_model("gbm").fit(poisoned("test"))
    assert boosters(test_poisoned) == boosters(model)
    assert test_poisoned.fitted_state()["calibration"] == model.fitted_state()["calibration"]
    np.testing.assert_array_equal(test_poisoned.predict(ds, "test").returns, model.predict(ds, "test").returns)
    val_poisoned = make_model("gbm").fit(poisoned("val"))
    assert not np.array_equal(val_poisoned.best_iteration_, model.best_iteration_)
    assert boosters(make_model("gbm").fit(poisoned("train"))) != boosters(model)


def test_deterministic_with_a_seed(ds, model):
    again = make_model("gbm").fit(ds)
    assert boosters(again) == boosters(model)
    np.testing.assert_array_equal(again.predict(ds, "test").returns, model.predict(ds, "test").returns)
    other = make_model("gbm", seed=1).fit(ds)  # feature_fraction 0.8 samples columns by the seed
    assert boosters(other) != boosters(model)


def test_forecasts_never_read_past_their_origin(candles, ds, model):
    """Scramble every candle after an origin inside val and rebuild the dataset: forecasts made at
    or before it (returns, bounds, confidence, scale) do not change; later ones do."""
    rows = ds.splits["val"]
    cut = int(rows[len(rows) // 2])
    again = build_dataset(scramble_after(candles, ds.features.index[cut]), "1h", groups=GROUPS, window=30, horizon=H)
    np.testing.assert_array_equal(again.scaler.scale_, ds.scaler.scale_)
    early = rows[rows <= cut]
    assert_same_forecast(model.predict(again, rows=early), model.predict(ds, rows=early))
    later = rows[rows > cut + 30]
    assert not np.array_equal(model.predict(again, rows=later).returns, model.predict(ds, rows=later).returns)


def test_fit_reads_nothing_after_the_validation_targets(candles, ds, model):
    """Scramble every candle after the last bar a validation target reaches (so only test bars
    change) and refit: the same trees, calibration and validation forecasts."""
    last_val_bar = int(ds.splits["val"][-1]) + H
    again = build_dataset(
        scramble_after(candles, ds.features.index[last_val_bar]), "1h", groups=GROUPS, window=30, horizon=H
    )
    for split in ("train", "val"):
        np.testing.assert_array_equal(again.splits[split], ds.splits[split])
    test_rows = ds.splits["test"]
    assert not np.array_equal(again.y[test_rows], ds.y[test_rows])  # the scramble reached the test span
    refit = make_model("gbm").fit(again)
    assert boosters(refit) == boosters(model)
    assert refit.fitted_state()["calibration"] == model.fitted_state()["calibration"]
    assert_same_forecast(refit.predict(again, "val"), model.predict(ds, "val"))


def test_registry_round_trip_is_identical_and_pickle_free(candles, ds, model, tmp_path):
    import lightgbm as lgb

    ref = save_model(model, ds, symbol="BTCUSDT", root=tmp_path)
    assert ref.model == "gbm" and sorted(os.listdir(ref.path)) == ["metadata.json", "weights.pt"]
    loaded = load_model("BTCUSDT", "1h", "gbm", root=tmp_path)
    assert isinstance(loaded.model, GBMForecaster) and loaded.model.get_params()["num_leaves"] == 15
    for split in ("val", "test"):
        assert_same_forecast(loaded.model.predict(ds, split), model.predict(ds, split))
    np.testing.assert_array_equal(loaded.model.best_iteration_, model.best_iteration_)
    # the stored boosters are LightGBM's own text format, loadable by plain LightGBM
    meta = json.loads((ref.path / "metadata.json").read_text())
    texts = meta["state"]["boosters"]
    assert len(texts) == H and all(t.startswith("tree\nversion=") for t in texts)
    inputs = model._inputs_at(ds, ds.splits["test"])
    np.testing.assert_array_equal(
        lgb.Booster(model_str=texts[0]).predict(inputs), model.predict(ds, "test").returns[:, 0]
    )
    # serving from raw candles agrees with the dataset path at the same origin
    latest = loaded.predict(candles.iloc[-loaded.history_bars :])
    same = model.predict(ds, rows=[len(ds.features) - 1])
    assert latest.origins.equals(same.origins) and latest.n == 1 and latest.horizon == H
    np.testing.assert_allclose(latest.returns, same.returns, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(latest.confidence, same.confidence, rtol=1e-9)
