"""Backtests: fold plans, no look-ahead anywhere in a walk-forward, identical folds across models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coffee_ml.backtest import BacktestRequest, plan_folds, run_backtest
from coffee_ml.data import load_sample


@pytest.fixture(scope="module")
def candles():
    return load_sample().loc["2025-03-01":"2025-07-01"]


def _request(**kw):
    base = {"symbol": "BTCUSDT", "modelType": "hybrid", "method": "walk_forward", "retrainEvery": 300,
            "horizon": 6, "window": 24, "groups": ["price", "volatility"], "test_fraction": 0.4, "n_jobs": 1,
            "model_params": {"hybrid": {"window": 24}, "drift": {"window": 24},
                             "lstm": {"window": 24, "hidden": 8, "layers": 1, "max_epochs": 2}}}
    return {**base, **kw}


def test_fold_plan_expanding_and_rolling():
    folds = plan_folds(1000, 600, 150, embargo=24)
    assert [f.test_rows for f in folds] == [(600, 750), (750, 900), (900, 1000)]
    for f in folds:
        assert f.fit_rows[0] == 0 and f.val_rows[1] == f.test_rows[0] - 24  # embargo before the block
        assert f.val_rows[0] - f.fit_rows[1] == 24  # and between fitting and validation rows
    rolling = plan_folds(1000, 600, 150, embargo=24, scheme="rolling", train_bars=400)
    assert [f.val_rows[1] - f.fit_rows[0] for f in rolling] == [400, 400, 400]
    assert plan_folds(1000, 600, None, embargo=24)[0].test_rows == (600, 1000)
    with pytest.raises(ValueError, match="needs train_bars"):
        plan_folds(1000, 600, 150, embargo=24, scheme="rolling")
    with pytest.raises(ValueError, match="only 6 training rows"):
        plan_folds(1000, 30, 150, embargo=24)


def test_request_accepts_the_platform_shape():
    r = BacktestRequest.from_dict({"symbol": "BTCUSDT", "modelType": "lstm", "method": "simple",
                                   "from": "2024-01-01", "to": "2025-01-01"})
    assert (r.model_type, r.method, r.start, r.end) == ("lstm", "simple", "2024-01-01", "2025-01-01")
    with pytest.raises(ValueError, match="unknown backtest request field 'modeltype'"):
        BacktestRequest.from_dict({"symbol": "X", "modeltype": "lstm"})
    with pytest.raises(ValueError, match="method must be one of simple, walk_forward"):
        run_backtest({"symbol": "X", "modelType": "naive", "method": "monte_carlo"}, candles=pd.DataFrame())


@pytest.mark.parametrize("model", ["hybrid", "lstm"])
def test_walk_forward_never_looks_ahead(candles, model):
    """Scramble every bar from time R on: every forecast made before R must be bit-identical
    (features, per-fold scalers and models only ever saw earlier bars), later ones must change."""
    base = run_backtest(_request(modelType=model), candles=candles).results[model]
    r_time = base.origins[len(base.origins) // 2]
    rng = np.random.default_rng(0)
    changed = candles.copy()
    late = changed.index >= r_time
    factor = rng.uniform(0.8, 1.25, late.sum())
    for col in ("open", "high", "low", "close"):
        changed.loc[late, col] = changed.loc[late, col] * factor
    moved = run_backtest(_request(modelType=model), candles=changed).results[model]
    assert moved.origins.equals(base.origins)
    before = base.origins < r_time
    np.testing.assert_array_equal(moved.y_pred[before], base.y_pred[before])
    for key in base.bounds:
        np.testing.assert_array_equal(moved.bounds[key][before], base.bounds[key][before])
    assert not np.allclose(moved.y_pred[~before], base.y_pred[~before])


def test_folds_cover_the_test_span_and_train_before_it(candles):
    res = run_backtest(_request(), candles=candles).results["hybrid"]
    folds = res.folds
    assert len(folds) >= 2 and folds["fold"].tolist() == list(range(len(folds)))
    assert (folds["test_from"].iloc[1:].to_numpy() > folds["test_to"].iloc[:-1].to_numpy()).all()
    assert np.all(np.diff(res.origins.asi8) > 0)
    for _, f in folds.iterrows():
        in_fold = res.origins[res.fold == f["fold"]]
        assert in_fold.min() >= f["test_from"] and in_fold.max() <= f["test_to"]


def test_comparison_runs_identical_folds_in_parallel(candles):
    models = ["hybrid", "drift", "naive"]
    parallel = run_backtest(_request(modelType=models, n_jobs=2), candles=candles)
    serial = run_backtest(_request(modelType=models, n_jobs=1), candles=candles)
    assert list(parallel.results) == models
    for name in models:
        np.testing.assert_array_equal(parallel.results[name].y_pred, serial.results[name].y_pred)
        assert parallel.results[name].origins.equals(parallel.results["naive"].origins)
    table = parallel.summary()
    assert table.loc["naive", "verdict"] == "baseline"
    for name in ("hybrid", "drift"):
        row = table.loc[name]
        beats = row["dm_pvalue"] < 0.05 and row["dm_stat"] < 0
        assert row["verdict"].startswith(f"beats naive: {'yes' if beats else 'no'} at p<0.05")
    assert {"dm_pvalue", "dir_acc_lo", "dir_acc_hi", "coverage_80", "strategy_sharpe"} <= set(table.columns)
    assert table.attrs["buy_and_hold"]["bars"] == len(parallel.results["naive"].origins)


def test_simple_method_is_one_fold_and_warm_start_fine_tunes(candles):
    simple = run_backtest(_request(method="simple"), candles=candles).results["hybrid"]
    assert len(simple.folds) == 1
    warm = run_backtest(_request(modelType="lstm", warm_start=True, warm_epochs=1), candles=candles).results["lstm"]
    assert warm.folds["epochs"].iloc[0] == 2 and (warm.folds["epochs"].iloc[1:] == 1).all()


def test_kept_models_of_the_last_fold_can_be_saved(candles, tmp_path):
    from coffee_ml.models.persistence import load_model, save_model

    report = run_backtest(_request(modelType=["hybrid", "drift"]), candles=candles, keep_models=True)
    last = report.results["hybrid"]
    lo, hi = report.folds[-1].test_rows
    ends = last.final_dataset.splits["test"]
    assert len(ends) and ends.min() >= lo and ends.max() < hi  # the model of the last fold
    ref = save_model(last.final_model, last.final_dataset, symbol="BTCUSDT", name="hybrid", root=tmp_path,
                     extra={"backtest": report.summary().loc["hybrid"].to_dict()})
    loaded = load_model("BTCUSDT", "1h", "hybrid", root=tmp_path)
    assert loaded.metadata["backtest"]["verdict"] == report.summary().loc["hybrid", "verdict"]
    assert ref.version == "v0001"
