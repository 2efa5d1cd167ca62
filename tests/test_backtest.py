"""Backtests: fold plans, no look-ahead anywhere in a walk-forward, identical folds across models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coffee_ml.backtest import BacktestRequest, FoldHook, PooledCalibration, plan_folds, run_backtest, walk_forward
from coffee_ml.data import load_sample
from coffee_ml.features import feature_panel
from coffee_ml.models import make_model


@pytest.fixture(scope="module")
def candles():
    return load_sample().loc["2025-03-01":"2025-07-01"]


PARAMS = {
    "hybrid": {"window": 24, "shrinks": (0.5, 1.0)},
    "drift": {"window": 24},
    "lstm": {"window": 24, "hidden": 8, "layers": 1, "max_epochs": 2},
}


def _request(**kw):
    base = {
        "symbol": "BTCUSDT",
        "modelType": "hybrid",
        "method": "walk_forward",
        "retrainEvery": 300,
        "horizon": 6,
        "window": 24,
        "groups": ["price", "volatility"],
        "test_fraction": 0.4,
        "n_jobs": 1,
    }
    request = {**base, **kw}
    names = [request["modelType"]] if isinstance(request["modelType"], str) else request["modelType"]
    return {"model_params": {k: v for k, v in PARAMS.items() if k in names}, **request}


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
    r = BacktestRequest.from_dict(
        {"symbol": "BTCUSDT", "modelType": "lstm", "method": "simple", "from": "2024-01-01", "to": "2025-01-01"}
    )
    assert (r.model_type, r.method, r.start, r.end) == ("lstm", "simple", "2024-01-01", "2025-01-01")
    with pytest.raises(ValueError, match="unknown backtest request field 'modeltype'"):
        BacktestRequest.from_dict({"symbol": "X", "modeltype": "lstm"})
    with pytest.raises(ValueError, match="method must be one of simple, walk_forward"):
        run_backtest({"symbol": "X", "modelType": "naive", "method": "monte_carlo"}, candles=pd.DataFrame())
    # every bad parameter fails before any candle is read or model fitted (the frame is empty)
    with pytest.raises(ValueError, match="model 'lstm' has no parameter 'hiden'"):
        run_backtest(
            {"symbol": "X", "modelType": ["lstm"], "model_params": {"lstm": {"hiden": 8}}}, candles=pd.DataFrame()
        )
    with pytest.raises(ValueError, match="model_params given for gru, which are not in modelType"):
        run_backtest({"symbol": "X", "modelType": "lstm", "model_params": {"gru": {}}}, candles=pd.DataFrame())
    with pytest.raises(ValueError, match="unknown model 'tft'"):
        run_backtest({"symbol": "X", "modelType": ["naive", "tft"]}, candles=pd.DataFrame())
    with pytest.raises(ValueError, match="calibration must be one of validation, pooled"):
        run_backtest({"symbol": "X", "modelType": "naive", "calibration": "isotonic"}, candles=pd.DataFrame())


@pytest.mark.parametrize("model", ["hybrid", "lstm"])
def test_walk_forward_never_looks_ahead(candles, model):
    """Scramble every bar from time R on: every forecast made before R must be bit-identical,
    its interval bounds and confidence included (features, volatility, per-fold scalers, models
    and the pooled/ACI calibration hook only ever saw earlier bars); later ones must change."""
    base = run_backtest(_request(modelType=model), candles=candles).results[model].forecast
    r_time = base.origins[len(base.origins) // 2]
    rng = np.random.default_rng(0)
    changed = candles.copy()
    late = changed.index >= r_time
    factor = rng.uniform(0.8, 1.25, late.sum())
    for col in ("open", "high", "low", "close"):
        changed.loc[late, col] = changed.loc[late, col] * factor
    moved = run_backtest(_request(modelType=model), candles=changed).results[model].forecast
    assert moved.origins.equals(base.origins)
    before = base.origins < r_time
    np.testing.assert_array_equal(moved.returns[before], base.returns[before])
    np.testing.assert_array_equal(moved.confidence[before], base.confidence[before])
    np.testing.assert_array_equal(moved.scale[before], base.scale[before])
    for level in base.levels:
        for a, b in zip(moved.bounds(level), base.bounds(level)):
            np.testing.assert_array_equal(a[before], b[before])
    assert not np.allclose(moved.returns[~before], base.returns[~before])
    assert not np.allclose(moved.bounds(0.8)[1][~before], base.bounds(0.8)[1][~before])


def test_folds_cover_the_test_span_and_train_before_it(candles):
    res = run_backtest(_request(), candles=candles).results["hybrid"]
    folds, forecast = res.folds, res.forecast
    assert len(folds) >= 2 and folds["fold"].tolist() == list(range(len(folds)))
    assert (folds["test_from"].iloc[1:].to_numpy() > folds["test_to"].iloc[:-1].to_numpy()).all()
    assert np.all(np.diff(forecast.origins.asi8) > 0)
    for _, f in folds.iterrows():
        in_fold = forecast.origins[forecast.fold == f["fold"]]
        assert in_fold.min() >= f["test_from"] and in_fold.max() <= f["test_to"]


def test_comparison_runs_identical_folds_in_parallel(candles):
    models = ["hybrid", "drift", "naive"]
    parallel = run_backtest(_request(modelType=models, n_jobs=2), candles=candles)
    serial = run_backtest(_request(modelType=models, n_jobs=1), candles=candles)
    assert list(parallel.results) == models
    for name in models:
        np.testing.assert_array_equal(parallel.forecasts[name].returns, serial.forecasts[name].returns)
        np.testing.assert_array_equal(parallel.forecasts[name].bounds(0.95)[0], serial.forecasts[name].bounds(0.95)[0])
        assert parallel.forecasts[name].origins.equals(parallel.forecasts["naive"].origins)
    table = parallel.summary()
    assert table.loc["naive", "verdict"] == "baseline"
    for name in ("hybrid", "drift"):
        row = table.loc[name]
        beats = row["dm_pvalue"] < 0.05 and row["dm_stat"] < 0
        assert row["verdict"].startswith(f"beats naive: {'yes' if beats else 'no'} at p<0.05")
    assert {
        "dm_pvalue",
        "dir_acc_lo",
        "dir_acc_hi",
        "pt_pvalue",
        "brier_skill",
        "coverage_80_highvol",
        "winkler_ratio_95",
        "sharpe",
        "hold_sharpe",
        "direction",
    } <= set(table.columns)
    assert table.loc["naive", "direction"] == "no call"
    _, trade = parallel.results["drift"].trading(parallel.request.rules())
    assert table.loc["drift", "sharpe"] == trade.loc["strategy", "sharpe"]
    assert table.loc["drift", "hold_return"] == trade.loc["buy_and_hold", "total_return"]


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
    ref = save_model(
        last.final_model,
        last.final_dataset,
        symbol="BTCUSDT",
        name="hybrid",
        root=tmp_path,
        extra={"backtest": report.summary().loc["hybrid"].to_dict()},
    )
    loaded = load_model("BTCUSDT", "1h", "hybrid", root=tmp_path)
    assert loaded.metadata["backtest"]["verdict"] == report.summary().loc["hybrid", "verdict"]
    assert ref.version == "v0001"


class _Spy(FoldHook):
    """Records what each fold's hook was shown."""

    seen: list = []

    def fit(self, context):
        ds, fold = context.dataset, context.fold
        _Spy.seen.append(
            {
                "block": fold.test_rows[0],
                "horizon": ds.horizon,
                "cutoff": fold.val_rows[1],
                "train_last": int(ds.splits["train"].max()),
                "val_last": int(ds.splits["val"].max()),
                "past": None if context.past is None else context.past.origins,
                "index": ds.features.index,
                "hidden": bool(np.isnan(ds.y[fold.val_rows[1] :]).all()),
                "val_known": bool(np.isfinite(ds.y[ds.splits["val"]]).all()),
            }
        )
        return self

    def transform(self, forecast):
        return forecast


def test_hooks_and_models_see_only_the_past(candles):
    """Each fold's hook sees training/validation windows whose targets end before the test block
    and earlier forecasts only once their outcomes were realised; the estimator handed to the
    walk-forward is cloned per fold and itself never fitted."""
    panel = feature_panel(candles, "1h", groups=["price"], window=24, horizon=6)
    folds = plan_folds(len(panel.features), int(len(panel.features) * 0.6), 300, 24)
    estimator = make_model("drift", window=24)
    _Spy.seen = []
    result = walk_forward(panel, folds, estimator, hooks=[_Spy()])
    assert not hasattr(estimator, "calibration_") and len(_Spy.seen) == len(folds) >= 3
    for k, seen in enumerate(_Spy.seen):
        assert seen["val_last"] + seen["horizon"] < seen["block"] and seen["train_last"] < seen["val_last"]
        assert seen["hidden"] and seen["val_known"]  # the block's outcomes are not even in the dataset
        if k == 0:
            assert seen["past"] is None
            continue
        realised = seen["index"].get_indexer(seen["past"]) + seen["horizon"]
        assert (realised < seen["cutoff"]).all()
        earlier = result.forecast.origins[result.forecast.fold < k]
        assert seen["past"].isin(earlier).all() and len(seen["past"]) > 0


def test_adaptive_conformal_widens_after_misses_and_narrows_after_hits(candles):
    forecast = run_backtest(_request(modelType="drift", calibration="validation"), candles=candles).forecasts["drift"]
    hook = PooledCalibration(aci_rate=0.005)
    lo, hi = forecast.bounds(0.8)
    always_missed = forecast.with_actual(hi + 1.0)
    never_missed = forecast.with_actual((lo + hi) / 2)
    assert (hook._aci_target(always_missed, 0.8) > 0.8).all() and (hook._aci_target(never_missed, 0.8) < 0.8).all()
    few = always_missed.select(slice(0, 50))  # one ACI step per outcome: 0.2 - 0.005 * 0.2 * 50 * 0.8
    assert hook._aci_target(few, 0.8) == pytest.approx(1 - (0.2 - 0.005 * 0.2 * 50 * 0.8))
    # many misses: the miscoverage floor (a quarter of nominal) keeps the interval finite
    assert hook._aci_target(always_missed, 0.95) == pytest.approx(1 - 0.05 / 4)
