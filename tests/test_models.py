"""Forecasters and their calibration: specs, the one predict path, known answers, no peeking past
the origin, intervals that adapt to volatility and confidence that means what it says."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from torch import nn

from coffee_ml.data import load_sample
from coffee_ml.estimator import NotFittedError
from coffee_ml.features import build_dataset
from coffee_ml.models import (
    SPECS,
    Calibration,
    DriftForecaster,
    HybridForecaster,
    NaiveForecaster,
    get_spec,
    make_model,
)
from forecasts import scramble_after

TINY = {"window": 30, "hidden": 8, "layers": 1, "max_epochs": 2, "batch_size": 128, "progress": False}


@pytest.fixture(scope="module")
def candles():
    return load_sample().loc["2025-05-01":"2025-09-01"]


@pytest.fixture(scope="module")
def ds(candles):
    return build_dataset(candles, "1h", groups=["price", "trend", "volatility"], window=30, horizon=6)


def test_specs_carry_defaults_and_capabilities():
    lstm, fast = make_model("lstm"), make_model("lstm_fast")
    assert (lstm.hidden, lstm.layers, lstm.dropout, lstm.window, lstm.lr, lstm.max_epochs, lstm.patience) == (
        128,
        2,
        0.2,
        60,
        1e-3,
        100,
        10,
    )
    assert (fast.window, fast.hidden, fast.model_type) == (20, 32, "lstm")
    assert isinstance(make_model("gru")._net(5, 3).rnn, nn.GRU) and isinstance(lstm._net(5, 3).rnn, nn.LSTM)
    caps = {name: (s.neural, s.fine_tunable, s.needs_torch) for name, s in SPECS.items()}
    assert caps == {
        "lstm": (True, True, True),
        "gru": (True, True, True),
        "lstm_fast": (True, True, True),
        "hybrid": (False, False, False),
        "naive": (False, False, False),
        "drift": (False, False, False),
        "gbm": (False, False, False),
        "ensemble": (False, False, False),
    }
    with pytest.raises(ValueError, match="unknown model 'transformer'; expected one of lstm, gru"):
        make_model("transformer")
    with pytest.raises(ValueError, match="model 'hybrid' has no parameter 'hiden'; valid: alphas"):
        get_spec("hybrid").check_params({"hiden": 3})


def test_clone_is_unfitted_with_the_same_params(ds):
    model = make_model("drift", window=12).fit(ds)
    twin = model.clone()
    assert twin.get_params() == model.get_params() and not hasattr(twin, "calibration_")
    with pytest.raises(NotFittedError, match="DriftForecaster is not fitted yet"):
        twin.predict(ds)


@pytest.mark.parametrize(
    "name, params",
    [("lstm", TINY), ("gru", TINY), ("hybrid", {"window": 30}), ("naive", {}), ("drift", {"window": 24})],
)
def test_every_model_predicts_a_calibrated_forecast(ds, name, params):
    model = make_model(name, **params).fit(ds)
    f = model.predict(ds, "test", name=name)
    rows = ds.splits["test"]
    assert f.returns.shape == (len(rows), 6) and np.isfinite(f.returns).all() and f.levels == (0.8, 0.95)
    np.testing.assert_array_equal(f.actual, ds.y[rows])
    np.testing.assert_allclose(f.actual_prices[:, 0], ds.close.to_numpy()[rows + 1], rtol=1e-12)
    lo95, lo80, hi80, hi95 = f.bounds(0.95)[0], f.bounds(0.8)[0], f.bounds(0.8)[1], f.bounds(0.95)[1]
    assert (lo95 <= lo80).all() and (lo80 < f.returns).all() and (f.returns < hi80).all() and (hi80 <= hi95).all()
    assert ((f.confidence > 0) & (f.confidence < 1)).all()
    frame = f.to_frame()
    assert len(frame) == 6 * len(rows) and frame["actual"].notna().all()
    first = frame[frame["origin"] == frame["origin"].iloc[0]]
    assert (first["time"] - first["origin"]).dt.total_seconds().tolist() == [3600.0 * h for h in range(1, 7)]


def test_naive_and_drift_known_answers(ds):
    naive = NaiveForecaster().fit(ds)
    assert not naive.predict(ds).returns.any()
    g = 0.001  # a price growing exactly 0.1% per bar
    log_close = np.log(100.0) + g * np.arange(48)[None, :]
    drift = DriftForecaster(window=24).fit(ds)
    np.testing.assert_allclose(drift._predict_returns(None, log_close), g * np.arange(1, 7)[None, :])


def test_hybrid_is_exact_on_a_straight_log_trend(ds):
    hybrid = HybridForecaster(window=30, weights=(1.0,)).fit(ds)
    log_close = np.log(50.0) + 0.002 * np.arange(30)[None, :]
    np.testing.assert_allclose(hybrid._blend(log_close), 0.002 * np.arange(1, 7)[None, :], atol=1e-12)


def test_hybrid_is_never_worse_than_naive_on_the_data_it_was_tuned_on(ds):
    """Its damping factor, chosen on validation, includes 0 (no change) by default; the undamped
    model of before (`shrinks=(1.0,)`) is worse than naive on the same windows."""
    rows = ds.splits["val"]
    p0, actual = ds.close.to_numpy()[rows][:, None], ds.close.to_numpy()[rows][:, None] * np.exp(ds.y[rows])
    naive_mae = np.abs(p0 - actual).mean()
    hybrid = HybridForecaster(window=30).fit(ds)
    assert np.abs(hybrid.predict(ds, "val").prices - actual).mean() <= naive_mae
    undamped = HybridForecaster(window=30, shrinks=(1.0,)).fit(ds)
    assert undamped.shrink_ == 1.0 and np.abs(undamped.predict(ds, "val").prices - actual).mean() > naive_mae
    with pytest.raises(ValueError, match=r"hybrid shrinks must be factors in \[0, 1\]"):
        HybridForecaster(window=30, shrinks=(2.0,)).fit(ds)


@pytest.mark.parametrize("name", ["lstm", "hybrid", "drift"])
def test_forecasts_never_read_past_their_origin(candles, ds, name):
    """Scramble every candle after an origin and rebuild the dataset: the forecasts made at or
    before it (returns, interval bounds, confidence, volatility scale) must not change."""
    params = {"lstm": TINY, "hybrid": {"window": 24, "shrinks": (1.0,)}, "drift": {"window": 24}}[name]
    model = make_model(name, **params).fit(ds)  # an undamped hybrid, so its forecasts are not all 0
    rows = ds.splits["val"]
    cut = int(rows[len(rows) // 2])
    cut_time = ds.features.index[cut]
    scrambled = scramble_after(candles, cut_time)
    again = build_dataset(scrambled, "1h", groups=["price", "trend", "volatility"], window=30, horizon=6)
    np.testing.assert_array_equal(again.scaler.scale_, ds.scaler.scale_)  # cut is after the train rows
    before, after = model.predict(ds, rows=rows[rows <= cut]), model.predict(again, rows=rows[rows <= cut])
    np.testing.assert_array_equal(after.returns, before.returns)
    np.testing.assert_array_equal(after.scale, before.scale)
    np.testing.assert_array_equal(after.confidence, before.confidence)
    for level in before.levels:
        np.testing.assert_array_equal(after.bounds(level)[0], before.bounds(level)[0])
    later = rows[rows > cut + 30]
    assert not np.array_equal(model.predict(again, rows=later).scale, model.predict(ds, rows=later).scale)
    assert not np.array_equal(model.predict(again, rows=later).returns, model.predict(ds, rows=later).returns)


def test_conformal_quantile_is_the_finite_sample_order_statistic():
    y_true = np.arange(1.0, 100.0)[:, None]  # residuals 1..99 against a zero forecast
    cal = Calibration.fit(y_true, np.zeros_like(y_true), np.ones(99), np.array([0.5]))
    # ceil((99 + 1) * 0.8) = 80th smallest, ceil(100 * 0.95) = 95th smallest
    np.testing.assert_array_equal(cal.constant_q[:, 0], [80.0, 95.0])


def _heteroscedastic(rng, n, horizon=3):
    """Exchangeable (origin, volatility, error) draws: log sigma spread over a factor ~10, errors
    sigma ** 0.8 * t(3) (heavy tails, less than proportional to the volatility estimate)."""
    sigma = 0.01 * np.exp(rng.normal(scale=0.6, size=n))
    pred = rng.normal(scale=0.001, size=(n, horizon))
    actual = pred + (sigma[:, None] ** 0.8) * 0.05 * rng.standard_t(df=3, size=(n, horizon))
    return pred, actual, sigma


def test_adaptive_intervals_hold_in_every_volatility_tercile():
    """Fresh exchangeable data with errors that grow with volatility: the adaptive intervals
    cover at their level in calm, middle and turbulent terciles; constant-width ones do not."""
    rng = np.random.default_rng(1)
    pred, actual, sigma = _heteroscedastic(rng, 30000)
    cal = Calibration.fit(actual[:15000], pred[:15000], sigma[:15000], np.full(3, 0.5))
    assert np.allclose(cal.exponent, 0.8, atol=0.1)
    new, y_new, s_new = pred[15000:], actual[15000:], sigma[15000:]
    terc = np.searchsorted(np.quantile(s_new, [1 / 3, 2 / 3]), s_new, side="right")
    for level in (0.8, 0.95):
        lo, hi = cal.bounds(new, s_new, level)
        clo, chi = cal.constant_bounds(new, level)
        inside, c_inside = (y_new >= lo) & (y_new <= hi), (y_new >= clo) & (y_new <= chi)
        for k in range(3):
            assert abs(inside[terc == k].mean() - level) < 0.02, (level, k)
        assert c_inside[terc == 2].mean() < level - 0.05 and c_inside[terc == 0].mean() > level + 0.03


def test_confidence_tracks_a_real_direction_signal():
    rng = np.random.default_rng(2)
    pred = rng.normal(scale=1.0, size=(40000, 1))
    # the larger the predicted move, the likelier the sign is right: P(right) = 0.5 + 0.3 * min(|p|, 1)
    right = rng.uniform(size=pred.shape) < 0.5 + 0.3 * np.minimum(np.abs(pred), 1)
    actual = np.where(right, np.sign(pred), -np.sign(pred)) * rng.uniform(0.1, 1, size=pred.shape)
    scale = np.ones(40000)
    cal = Calibration.fit(actual[:20000], pred[:20000], scale[:20000], np.array([0.5]))
    conf, new, y_new = cal.confidence(pred[20000:], scale[20000:]), pred[20000:], actual[20000:]
    for lo, hi in ((0.0, 0.25), (0.5, 0.75), (1.5, 3.0)):
        sel = (np.abs(new) >= lo) & (np.abs(new) < hi)
        hit = (np.sign(new[sel]) == np.sign(y_new[sel])).mean()
        assert abs(conf[sel].mean() - hit) < 0.05, (lo, hi)
    assert cal.confidence(np.zeros((2, 1)), np.ones(2)).tolist() == [[0.5], [0.5]]
    assert Calibration.from_dict(cal.to_dict()).confidence(new[:5], scale[:5]).tolist() == conf[:5].tolist()


def test_no_direction_skill_gives_the_base_rate_not_extremes():
    """Hits independent of the predicted move (and overlapping 24-bar outcomes): the old isotonic
    fit reached 0 and 1; the shrunk calibration stays near the base rate."""
    rng = np.random.default_rng(3)
    n, horizon = 3000, 24
    pred = rng.normal(scale=0.01, size=(n, horizon))
    actual = rng.normal(scale=0.02, size=(n, horizon))
    cal = Calibration.fit(actual, pred, np.full(n, 0.004), np.full(horizon, 0.5))
    conf = cal.confidence(rng.normal(scale=0.02, size=(n, horizon)), np.full(n, 0.004))
    assert conf.min() > 0.45 and conf.max() < 0.55


def test_output_scale_comes_from_training_targets_only(ds):
    model = make_model("lstm", **{**TINY, "max_epochs": 1}).fit(ds)
    expected = ds.y[ds.splits["train"]].std(axis=0)
    np.testing.assert_allclose(model.net_.output_scale.cpu().numpy(), expected, rtol=1e-6)
    poisoned_y = ds.targets.copy()
    later = np.concatenate([ds.splits["val"], ds.splits["test"]])
    poisoned_y.iloc[later] = 5.0
    poisoned = dataclasses.replace(ds, targets=poisoned_y)
    again = make_model("lstm", **{**TINY, "max_epochs": 1}).fit(poisoned)
    np.testing.assert_array_equal(again.net_.output_scale.cpu().numpy(), model.net_.output_scale.cpu().numpy())
    np.testing.assert_array_equal(again.up_share_, model.up_share_)  # the direction baseline: train rows only
    assert "output_scale" in model.tensors()  # saved with the weights
