"""Production monitoring: the batch replay of a saved version equals its one-origin `predict` and
reads nothing after each origin; `monitor` scores it with the evaluation layer's scorers, rolls
them over time, fires its degradation rule on a known answer and stays quiet otherwise; errors,
the chart and `coffee-ml models monitor` (exit codes 0/3, --json)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from coffee_ml import evaluation, monitor, plots, registry
from coffee_ml.cli import main
from coffee_ml.data import load_sample
from coffee_ml.features import build_dataset
from coffee_ml.models import make_model
from coffee_ml.models.gbm import GBMForecaster
from coffee_ml.models.persistence import load_model, save_model, trained_through

SYMBOL, INTERVAL, HORIZON = "BTCUSDT", "1h", 4
HOUR = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def fitted():
    """A small GBM (reads the features) and drift (reads only closes) fitted on spring 2025 of the
    bundled sample, which runs on to 2025-11-30 23:00: six months to monitor."""
    ds = build_dataset(
        load_sample().loc["2025-03-01":"2025-06-01"],
        INTERVAL,
        groups=["price", "volatility"],
        window=24,
        horizon=HORIZON,
    )
    return ds, {"gbm": make_model("gbm", n_estimators=20).fit(ds), "drift": make_model("drift", window=24).fit(ds)}


@pytest.fixture
def saved(fitted):
    """Both models saved in this test's registry (COFFEE_ML_OUTPUTS), gbm promoted to serve BTCUSDT 1h."""
    ds, models = fitted
    refs = {name: save_model(m, ds, symbol=SYMBOL, name=name) for name, m in models.items()}
    registry.promote(refs["gbm"])
    return refs


def _candles(loaded) -> pd.DataFrame:
    return load_sample().loc[loaded.trained_through - loaded.history_bars * HOUR :]


def _same(a, b, rows) -> None:
    """Forecast `a` at `rows` equals forecast `b` (all its origins): prices, bounds, confidence."""
    assert a.origins[rows].equals(b.origins)
    for x, y in (
        (a.returns, b.returns),
        (a.confidence, b.confidence),
        (a.scale, b.scale),
        *((a.bounds(lv)[k], b.bounds(lv)[k]) for lv in a.levels for k in (0, 1)),
    ):
        np.testing.assert_allclose(x[rows], y, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(a.last_close[rows], b.last_close)


# ------------------------------------------------------------------------------ the replay
@pytest.mark.parametrize("name", ["gbm", "drift"])
def test_replay_equals_predict_at_each_origin_and_skips_gaps(saved, name):
    loaded = load_model(SYMBOL, INTERVAL, name)
    start = loaded.trained_through + HOUR
    candles = _candles(loaded).drop(start + 100 * HOUR)  # a missing bar
    f = loaded.predict_history(candles, start=start)
    assert f.origins[0] == start and f.origins[-1] == candles.index[-1] and f.model == name
    # origins whose window + feature look-back would read across the gap are absent, as in training
    skipped = pd.date_range(start + 100 * HOUR, periods=loaded.lookback, freq="h")
    assert not f.origins.isin(skipped).any() and len(f.origins) == len(candles.loc[start:]) - loaded.lookback + 1
    with pytest.raises(ValueError, match="not consecutive"):
        loaded.predict(candles.loc[: skipped[-2]])
    for k in (0, 99, 100, 2000, f.n - 1):
        _same(f, loaded.predict(candles.loc[: f.origins[k]]), [k])
    # realised returns where the next H bars are stored and consecutive, NaN otherwise
    close = candles["close"]
    k = 2000
    expected = np.log(close.loc[f.origins[k] + HOUR : f.origins[k] + HORIZON * HOUR].to_numpy() / f.last_close[k])
    np.testing.assert_allclose(f.actual[k], expected, rtol=0, atol=1e-14)
    unknown = ~np.isfinite(f.actual).all(axis=1)
    assert f.origins[unknown][-HORIZON:].equals(candles.index[-HORIZON:])
    assert unknown.sum() == 2 * HORIZON  # the newest H origins, and the H origins before the gap
    with pytest.raises(ValueError, match="no origin"):
        loaded.predict_history(candles.iloc[: loaded.lookback - 1])


def test_replay_reads_nothing_after_its_origins(saved):
    loaded = load_model(SYMBOL, INTERVAL, "gbm")
    candles = _candles(loaded)
    f = loaded.predict_history(candles, start=loaded.trained_through + HOUR)
    cut = 1500
    scrambled = candles.copy()
    after = scrambled.index > f.origins[cut]
    rng = np.random.default_rng(0)
    scrambled.loc[after] = scrambled.loc[after].to_numpy()[rng.permutation(int(after.sum()))] * 1.3
    g = loaded.predict_history(scrambled, start=loaded.trained_through + HOUR)
    _same(g, f.select(slice(0, cut + 1)), np.arange(cut + 1))
    assert not np.allclose(g.returns[cut + 1 :], f.returns[cut + 1 :])  # the scramble did change later forecasts
    assert np.allclose(g.actual[: cut - HORIZON + 1], f.actual[: cut - HORIZON + 1])


def test_trained_through_is_the_last_bar_training_and_validation_read(fitted):
    ds, _ = fitted
    meta = {
        "data_range": {"splits": {k: [ds.end_times(k)[0], ds.end_times(k)[-1]] for k in ds.splits}},
        "horizon": HORIZON,
        "data_interval": INTERVAL,
    }
    assert trained_through(meta) == ds.end_times("val")[-1] + HORIZON * HOUR
    assert ds.end_times("test")[0] > trained_through(meta)


# ------------------------------------------------------------------------------ monitor
def test_monitor_scores_the_production_model_since_training(saved):
    report = monitor.monitor(SYMBOL, INTERVAL, backend="embedded")
    loaded = load_model(SYMBOL, INTERVAL, "gbm")
    f = report.forecast
    assert report.ref == saved["gbm"] and report.trained_through == loaded.trained_through
    assert report.start == f.origins[0] == loaded.trained_through + HOUR
    assert report.end == f.origins[-1] == load_sample().index[-1] - HORIZON * HOUR  # the newest realised origin
    assert np.isfinite(f.actual).all() and report.window == 720
    # the overall scores are the evaluation layer's, on the same forecasts
    names = list(report.summary.index)
    assert {
        "skill",
        "dm_pvalue",
        "dir_acc",
        "dir_acc_lo",
        "dir_acc_hi",
        "dir_base_called",
        "coverage_80",
        "coverage_95",
        "brier_skill",
    } <= set(names)
    assert report.summary.to_dict() == pytest.approx(evaluation.score(f, names), nan_ok=True)
    assert report.summary["origins"] == f.n
    # each rolling row is the scorers over the `window` origins ending there
    assert len(report.rolling) == f.n - report.window + 1 and report.rolling.index[-1] == report.end
    for end in (report.window - 1, f.n // 2, f.n - 1):
        part = evaluation.score(
            f.select(slice(end - report.window + 1, end + 1)),
            ["skill", "dir_acc", "dir_base_called", "brier_skill", "coverage_80", "coverage_95"],
        )
        row = report.rolling.iloc[end - report.window + 1]
        assert row.rename({"dir_base": "dir_base_called"}).to_dict() == pytest.approx(part, rel=1e-9)
    assert report.latest["skill"] == pytest.approx(report.rolling["skill"].iloc[-1], rel=1e-9)
    # an honest model: quiet, with the floor from its save-time validation skill (before the monitored bars)
    assert report.status == "ok" and not report.degraded and report.reasons == []
    assert report.verdict.startswith("OK") and "gbm v0001" in report.verdict
    assert report.floor == pytest.approx(max(loaded.metadata["metrics"]["val"]["skill"], 0) - monitor.THRESHOLD)
    table = report.table()
    assert table.loc["mae", "baseline"] == report.summary["naive_mae"] and table.loc["coverage_80", "baseline"] == 0.8
    assert table.loc["skill", "at_save_val"] == loaded.metadata["metrics"]["val"]["skill"]
    fig = plots.monitor_chart(report)
    assert isinstance(fig, Figure) and len(fig.axes) == 3


def test_the_rule_fires_on_a_model_gone_bad(saved, monkeypatch):
    """Forecasts 50x too large: far worse than naive and intervals off centre; a threshold no
    model can meet fires too; drift, worse than naive since it was saved, is held to -threshold."""
    predict = GBMForecaster._predict_returns
    monkeypatch.setattr(GBMForecaster, "_predict_returns", lambda self, X, lc: 50 * predict(self, X, lc))
    report = monitor.monitor(SYMBOL, INTERVAL, backend="embedded")
    assert report.degraded and report.verdict.startswith("DEGRADED: retrain gbm v0001 — MAE skill vs naive")
    assert any("80% interval coverage" in r for r in report.reasons)
    monkeypatch.setattr(GBMForecaster, "_predict_returns", predict)
    assert monitor.monitor(SYMBOL, INTERVAL, backend="embedded").status == "ok"
    assert monitor.monitor(SYMBOL, INTERVAL, threshold=-1.0, backend="embedded").degraded
    drift = monitor.monitor(SYMBOL, INTERVAL, model="drift", version="latest", backend="embedded")
    assert drift.floor == -monitor.THRESHOLD and drift.latest["skill"] < -0.05 and drift.degraded


def test_too_little_data_since_training_is_no_verdict(saved):
    through = load_model(SYMBOL, INTERVAL, "gbm").trained_through
    report = monitor.monitor(SYMBOL, INTERVAL, window=100, end=through + 50 * HOUR, backend="embedded")
    assert report.status == "insufficient data" and not report.degraded and report.rolling.empty
    assert report.verdict.startswith("INSUFFICIENT DATA: gbm v0001 has 45 realised forecasts since")
    assert report.summary["origins"] == 45
    assert isinstance(plots.monitor_chart(report), Figure)
    message = (
        f"no BTCUSDT 1h candles after {through}, the last bar gbm v0001 was trained on (newest stored "
        f"before {through + HOUR}: {through})"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        monitor.monitor(SYMBOL, INTERVAL, end=through + HOUR, backend="embedded")
    with pytest.raises(ValueError, match="window must be more than 2 x horizon"):
        monitor.monitor(SYMBOL, INTERVAL, window=8, backend="embedded")


def test_without_a_production_model_it_says_so(fitted, capsys):
    ds, models = fitted
    save_model(models["gbm"], ds, symbol=SYMBOL, name="gbm")
    with pytest.raises(registry.RegistryError, match="no production model for BTCUSDT 1h"):
        monitor.monitor(SYMBOL, INTERVAL, backend="embedded")
    assert main(["models", "monitor", SYMBOL, "--interval", INTERVAL, "--backend", "embedded"]) == 1
    assert "no production model for BTCUSDT 1h" in capsys.readouterr().err


def test_cli_exit_codes_and_json(saved, capsys, monkeypatch):
    args = ["models", "monitor", SYMBOL, "--interval", INTERVAL, "--backend", "embedded"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK") and "gbm v0001" in out and "since_training" in out and "coverage_80" in out
    assert main([*args, "--json", "--window", "200"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["status"] == "ok" and body["degraded"] is False and body["window"] == 200
    assert body["model"] == "gbm" and body["version"] == "v0001" and body["latest"]["origins"] == 200
    # exit code 3: a cron job retrains
    assert main([*args, "--model", "drift", "--version", "latest", "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["degraded"] is True
    for bad in ("-1", "1.5"):  # a negative margin would call every model degraded
        with pytest.raises(SystemExit):
            main([*args, "--threshold", bad])
        assert "expected a number with 0 <= x < 1" in capsys.readouterr().err
    assert main([*args, "--version", "v0001"]) == 1  # a version without its model: refused, not ignored
    assert "--version v0001 needs --model" in capsys.readouterr().err
