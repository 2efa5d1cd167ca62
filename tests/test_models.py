"""Forecasters, calibration and metrics: shapes, known answers, no peeking past the origin."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from torch import nn

from coffee_ml import metrics
from coffee_ml.data import load_sample
from coffee_ml.features import build_dataset
from coffee_ml.models import (Calibration, DriftForecaster, GRUForecaster, HybridForecaster, LSTMForecaster,
                              NaiveForecaster, fast_lstm, make_model)
from coffee_ml.models.forecast import evaluate, predict_split

TINY = {"window": 30, "hidden": 8, "layers": 1, "max_epochs": 2, "batch_size": 128, "progress": False}


@pytest.fixture(scope="module")
def ds():
    candles = load_sample().loc["2025-05-01":"2025-09-01"]
    return build_dataset(candles, "1h", groups=["price", "trend", "volatility"], window=30, horizon=6)


def test_model_defaults_follow_the_spec():
    lstm = LSTMForecaster()
    assert (lstm.hidden, lstm.layers, lstm.dropout, lstm.window, lstm.lr, lstm.max_epochs, lstm.patience) == \
        (128, 2, 0.2, 60, 1e-3, 100, 10)
    fast = fast_lstm()
    assert (fast.window, fast.hidden, fast.model_type) == (20, 32, "lstm")
    assert isinstance(GRUForecaster()._net(5, 3).rnn, nn.GRU)
    assert isinstance(LSTMForecaster()._net(5, 3).rnn, nn.LSTM)
    with pytest.raises(ValueError, match="unknown model 'transformer'"):
        make_model("transformer")


@pytest.mark.parametrize("name, params", [("lstm", TINY), ("gru", TINY), ("hybrid", {"window": 30}), ("naive", {}),
                                          ("drift", {"window": 24})])
def test_every_model_fits_predicts_and_is_calibrated(ds, name, params):
    model = make_model(name, **params).fit(ds)
    test_rows = ds.splits["test"]
    pred = model.predict_rows(ds, test_rows)
    assert pred.shape == (len(test_rows), 6) and np.isfinite(pred).all()
    frame = model.predict(ds, "test")
    pd.testing.assert_frame_equal(frame, predict_split(model, ds, "test"))
    assert len(frame) == 6 * len(test_rows)
    assert (frame["lower_95"] <= frame["lower_80"]).all() and (frame["lower_80"] <= frame["price"]).all()
    assert (frame["price"] <= frame["upper_80"]).all() and (frame["upper_80"] <= frame["upper_95"]).all()
    assert frame["confidence"].between(0, 1).all()
    first = frame[frame["origin"] == frame["origin"].iloc[0]]
    assert (first["time"] - first["origin"]).dt.total_seconds().tolist() == [3600.0 * h for h in range(1, 7)]
    result = evaluate(model, ds, "test")
    assert set(result["coverage"]) == {"coverage_80", "coverage_95"}
    assert list(result["metrics"].index) == ["1", "2", "3", "4", "5", "6", "all"]


def test_naive_and_drift_known_answers(ds):
    naive = NaiveForecaster().fit(ds)
    assert not naive.predict_rows(ds, ds.splits["test"]).any()
    g = 0.001  # a price growing exactly 0.1% per bar
    log_close = np.log(100.0) + g * np.arange(48)[None, :]
    drift = DriftForecaster(window=24).fit(ds)
    np.testing.assert_allclose(drift.predict_returns(None, log_close), g * np.arange(1, 7)[None, :])


def test_hybrid_is_exact_on_a_straight_log_trend(ds):
    hybrid = HybridForecaster(window=30, weights=(1.0,)).fit(ds)
    log_close = np.log(50.0) + 0.002 * np.arange(30)[None, :]
    np.testing.assert_allclose(hybrid.predict_returns(None, log_close), 0.002 * np.arange(1, 7)[None, :], atol=1e-12)


@pytest.mark.parametrize("name", ["lstm", "hybrid", "drift"])
def test_forecasts_never_read_past_their_origin(ds, name):
    """Scramble every bar after an origin: the forecasts made at or before it must not change."""
    model = make_model(name, **(TINY if name == "lstm" else {"window": 24})).fit(ds)
    rows = ds.splits["val"]
    cut = int(rows[len(rows) // 2])
    before = model.predict_rows(ds, rows[rows <= cut])
    rng = np.random.default_rng(0)
    X, close = ds.X.copy(), ds.close.copy()
    X[cut + 1:] = rng.normal(size=X[cut + 1:].shape) * 10
    close.iloc[cut + 1:] = close.iloc[cut + 1:].to_numpy() * rng.uniform(0.5, 2.0, len(close) - cut - 1)
    scrambled = dataclasses.replace(ds, X=X, close=close)
    np.testing.assert_array_equal(model.predict_rows(scrambled, rows[rows <= cut]), before)
    assert not np.array_equal(model.predict_rows(scrambled, rows[rows > cut]), model.predict_rows(ds, rows[rows > cut]))


def test_conformal_quantile_is_the_finite_sample_order_statistic():
    y_true = np.arange(1.0, 100.0)[:, None]  # residuals 1..99 against a zero forecast
    cal = Calibration.fit(y_true, np.zeros_like(y_true))
    # ceil((99 + 1) * 0.8) = 80th smallest, ceil(100 * 0.95) = 95th smallest
    np.testing.assert_array_equal(cal.quantiles[:, 0], [80.0, 95.0])


def test_conformal_intervals_cover_fresh_exchangeable_data():
    rng = np.random.default_rng(1)
    pred = rng.normal(size=(4000, 3))
    y_val = pred[:2000] + rng.standard_t(df=3, size=(2000, 3))  # fat tails: no normal assumption
    y_new = pred[2000:] + rng.standard_t(df=3, size=(2000, 3))
    cal = Calibration.fit(y_val, pred[:2000])
    for level in (0.8, 0.95):
        lo, hi = cal.bounds(pred[2000:], level)
        assert abs(metrics.coverage(y_new, lo, hi) - level) < 0.025


def test_confidence_is_a_calibrated_direction_probability():
    rng = np.random.default_rng(2)
    pred = rng.normal(scale=1.0, size=(20000, 1))
    # the larger the predicted move, the likelier the sign is right: P(right) = 0.5 + 0.4 * min(|p|, 1)
    right = rng.uniform(size=pred.shape) < 0.5 + 0.4 * np.minimum(np.abs(pred), 1)
    actual = np.where(right, np.sign(pred), -np.sign(pred)) * rng.uniform(0.1, 1, size=pred.shape)
    cal = Calibration.fit(actual[:10000], pred[:10000])
    conf = cal.confidence(pred[10000:])
    for lo, hi in ((0.0, 0.25), (0.5, 0.75), (1.5, 3.0)):
        sel = (np.abs(pred[10000:]) >= lo) & (np.abs(pred[10000:]) < hi)
        hit = (np.sign(pred[10000:][sel]) == np.sign(actual[10000:][sel])).mean()
        assert abs(conf[sel].mean() - hit) < 0.03
    assert cal.confidence(np.zeros((2, 1))).tolist() == [[0.5], [0.5]]
    assert Calibration.from_dict(cal.to_dict()).confidence(pred[:5]).tolist() == cal.confidence(pred[:5]).tolist()


def test_metrics_against_hand_computed_values():
    last = np.array([100.0, 200.0])
    y_true = np.log(np.array([[110.0 / 100], [190.0 / 200]]))
    y_pred = np.log(np.array([[105.0 / 100], [196.0 / 200]]))
    table = metrics.forecast_metrics(y_true, y_pred, last)
    row = table.loc["1"]
    assert row["mae"] == pytest.approx((5 + 6) / 2)
    assert row["rmse"] == pytest.approx(np.sqrt((25 + 36) / 2))
    assert row["mape"] == pytest.approx(100 * (5 / 110 + 6 / 190) / 2)
    assert row["naive_mae"] == pytest.approx((10 + 10) / 2)
    assert row["skill"] == pytest.approx(1 - 5.5 / 10)
    assert row["dir_acc"] == 1.0
    yt, yp = y_true.ravel(), y_pred.ravel()
    assert row["r2"] == pytest.approx(1 - np.sum((yt - yp) ** 2) / np.sum((yt - yt.mean()) ** 2))
    assert np.isnan(metrics.directional_accuracy(yt, np.zeros(2)))


def test_output_scale_comes_from_training_targets_only(ds):
    model = LSTMForecaster(**{**TINY, "max_epochs": 1}).fit(ds)
    expected = ds.y[ds.splits["train"]].std(axis=0)
    np.testing.assert_allclose(model.net_.output_scale.numpy(), expected, rtol=1e-6)
    poisoned_y = ds.targets.copy()
    later = np.concatenate([ds.splits["val"], ds.splits["test"]])
    poisoned_y.iloc[later] = 5.0
    poisoned = dataclasses.replace(ds, targets=poisoned_y)
    again = LSTMForecaster(**{**TINY, "max_epochs": 1}).fit(poisoned)
    np.testing.assert_array_equal(again.net_.output_scale.numpy(), model.net_.output_scale.numpy())
    assert "output_scale" in model.tensors()  # saved with the weights
