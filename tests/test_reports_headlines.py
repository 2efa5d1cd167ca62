"""Reports for people: numbers formatted by scorer name, headlines built from the evaluation
layer's scores, run records (atomic, merged per notebook), and progress bars that stay on stderr."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from coffee_ml import evaluation, reports
from coffee_ml.backtest import run_backtest
from coffee_ml.data import load_sample, open_store
from coffee_ml.features import build_dataset
from coffee_ml.forecast import Forecast
from coffee_ml.registry import ModelRef
from coffee_ml.reports import format as fmt
from coffee_ml.training import TrainConfig, train

N, H = 600, 2


def make_forecast(returns, actual, half, model="m") -> Forecast:
    """Origins one hour apart, volatility rising with the origin (terciles = thirds of the rows)."""
    n, h = returns.shape
    return Forecast(
        model=model,
        interval="1h",
        origins=pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC"),
        last_close=np.full(n, 100.0),
        returns=returns,
        intervals={0.8: (returns - half, returns + half)},
        confidence=np.full((n, h), 0.5),
        scale=np.linspace(0.01, 0.03, n),
        base_rate=np.full((n, h), 0.5),
        up_share=np.full((n, h), 0.5),
        actual=actual,
        constant_intervals={0.8: (returns - half, returns + half)},
    )


@pytest.fixture(scope="module")
def forecasts() -> dict[str, Forecast]:
    """naive (no call), a model close to the outcomes (beats naive), one on the wrong side
    (significantly worse); the good model's 80% interval covers 71% of the turbulent third."""
    rng = np.random.default_rng(0)
    actual = rng.normal(0, 0.01, (N, H))
    good = 0.9 * actual + rng.normal(0, 0.001, (N, H))
    miss = np.abs(actual - good)
    covered = rng.uniform(size=(N, H)) < np.where(np.arange(N)[:, None] >= 2 * N // 3, 0.71, 0.80)
    half = np.where(covered, miss + 1e-4, miss / 2)
    zero = np.zeros((N, H))
    return {
        "good": make_forecast(good, actual, half, "good"),
        "bad": make_forecast(-actual, actual, 0.02, "bad"),
        "naive": make_forecast(zero, actual, 0.0128, "naive"),
    }


def cells(styler) -> dict[tuple[str, str], str]:
    """Rendered text per (row, column) label, as a reader sees it."""
    lines = styler.to_string(delimiter="|").splitlines()
    header = lines[0].split("|")
    return {
        (row[0], col): text for line in lines[1:] for row in [line.split("|")] for col, text in zip(header[1:], row[1:])
    }


def flagged(styler) -> set[tuple[str, str]]:
    """(row, column) labels of the cells shaded as coverage off nominal."""
    html = styler.to_html()
    css = re.search(r"<style[^>]*>(.*?)</style>", html, re.S).group(1)
    ids = {
        (int(r), int(c))
        for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", css)
        if "#fde2c8" in body
        for r, c in re.findall(r"_row(\d+)_col(\d+)", selectors)
    }
    shown = styler.data
    return {(str(shown.index[r]), str(shown.columns[c])) for r, c in ids}


# ------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize(
    "p, text",
    [
        (3e-9, "< 1e-4"),
        (0.0, "< 1e-4"),
        (1e-4, "1.0e-04"),
        (3.2e-4, "3.2e-04"),
        (0.00999, "1.0e-02"),
        (0.0123, "0.012"),
        (0.5, "0.500"),
        (1.0, "1.000"),
        (float("nan"), "—"),
        (None, "—"),
    ],
)
def test_pvalues_for_people(p, text):
    assert fmt.pvalue(p) == text


@pytest.mark.parametrize(
    "name, value, text",
    [
        ("n", 25200.0, "25,200"),
        ("origins", 1050.0, "1,050"),
        ("mae", 1234.5678, "1,234.57"),
        ("skill", -0.0391, "-3.9%"),
        ("skill", 0.012, "+1.2%"),
        ("dir_acc", 0.5123, "51.2%"),
        ("coverage_80_highvol", 0.71, "71.0%"),
        ("dir_share", 0.99996, "99.996%"),
        ("dm_pvalue", 2e-7, "< 1e-4"),
        ("pt_pvalue", 0.034, "0.034"),
        ("dm_stat", -4.5312, "-4.53"),
        ("sharpe", 0.1, "0.10"),
        ("mape", 1.2345, "1.23%"),
        ("dir_acc", float("nan"), "—"),
        ("verdict", "baseline", "baseline"),
        ("brier", 0.25099, "0.2510"),
    ],
)
def test_numbers_by_scorer_name(name, value, text):
    assert fmt.number(name, value) == text


def test_leaderboard_table_turns_marks_no_call_and_flags_coverage(forecasts):
    table = evaluation.summary_table(forecasts, evaluation.summary_names((0.8,), trading=False))
    point = cells(reports.table(table, [*evaluation.POINT, "origins"]))  # more scorers than models: turned
    assert point[("dm_pvalue", "bad")] == "< 1e-4" and point[("dm_pvalue", "naive")] == "—"
    assert point[("origins", "good")] == "600" and re.fullmatch(r"\d+\.\d\d", point[("mae", "good")])
    direction = cells(reports.table(table, evaluation.DIRECTION))
    assert direction[("dir_acc", "naive")] == fmt.NO_CALL and direction[("dir_share", "naive")] == "0.0%"
    assert direction[("dir_acc", "good")].endswith("%") and direction[("pt_pvalue", "good")] != fmt.NO_CALL
    probability = cells(reports.table(table, evaluation.PROBABILITY))  # models as rows; no call from dir_share
    assert probability[("naive", "brier_skill")] == fmt.NO_CALL
    intervals = reports.table(table, evaluation.interval_names((0.8,)))
    off = {(r, c) for r, c in flagged(intervals)}
    assert ("coverage_80_highvol", "good") in off and ("coverage_80_lowvol", "good") not in off
    assert "3 pp from nominal" in intervals.caption
    terciles = reports.table(evaluation.coverage_by_tercile(forecasts), kind="coverage")
    assert any(c == "80% highvol" and "good" in r for r, c in flagged(terciles))
    assert "overflow-x: auto" in intervals.to_html()  # wide tables scroll instead of being cut off


def test_plain_tables_integers_dates_and_row_numbers():
    frame = pd.DataFrame(
        {
            "when": pd.to_datetime(["2025-01-01 03:00", "2025-01-02 04:00"], utc=True),
            "bars": [3.0, 12.0],
            "volume": [158.64, 109.0],
            "close": [91500.0, 91459.912],
            "coverage": [0.9995, 1.0],
            "missing": [np.nan, 2.0],
        }
    )
    text = reports.table(frame)
    assert "row_heading" not in text.to_html()  # a RangeIndex says nothing
    c = cells(reports.table(frame.set_index("when")))
    assert c[("2025-01-01 03:00", "bars")] == "3" and c[("2025-01-02 04:00", "volume")] == "109.0"
    assert c[("2025-01-01 03:00", "close")] == "91,500.00" and c[("2025-01-01 03:00", "coverage")] == "99.950%"
    assert c[("2025-01-01 03:00", "missing")] == "—"
    stats = cells(reports.table(pd.Series({"bars": 16800.0, "annualised volatility": 0.489, "skew": -0.1973})))
    assert stats[("bars", "value")] == "16,800" and stats[("annualised volatility", "value")] == "48.9%"
    with pytest.raises(KeyError, match="no column"):
        reports.table(frame, ["sharpe"])


# ---------------------------------------------------------------------------------- headlines


def test_training_headline_verdicts_and_coverage_flag(forecasts):
    h = reports.training_headline(forecasts)
    scores = {m: evaluation.score(f, evaluation.POINT) for m, f in forecasts.items()}
    good = next(line for line in h.lines if line.startswith("good:"))
    bad = next(line for line in h.lines if line.startswith("bad:"))
    assert good.startswith("good: beats naive (skill ") and fmt.number("skill", scores["good"]["skill"]) in good
    assert "DM p < 1e-4, significantly worse" in bad and "does not beat naive" in bad
    assert not any(line.startswith("naive") for line in h.lines)  # the baseline has no verdict
    flag = next(f for f in h.flags if f.startswith("good:"))
    high = evaluation.score(forecasts["good"], ["coverage_80_highvol"])["coverage_80_highvol"]
    assert flag.startswith("good: 80% interval covered ") and abs(high - 0.71) < 0.03
    assert f"{fmt.percent(high)} in high volatility" in flag and "low volatility" not in flag
    assert h.items["models"]["good"]["beats_naive"] is True and h.items["models"]["naive"]["beats_naive"] is None
    assert h.items["best_skill"] == "good" and h.items["origins"] == N
    assert h.table.loc["naive", "direction"] == fmt.NO_CALL and h.table.loc["bad", "DM p"] == "< 1e-4"
    page = h._repr_html_()
    assert 'class="coffee-ml-headline"' in page and "&#9888;" in page and "<table" in page
    assert h.text.splitlines()[0] == h.title and "check: good:" in h.text


@pytest.fixture(scope="module")
def candles():
    return load_sample().loc["2025-03-01":"2025-07-01"]


def _request(**kw):
    return {
        "symbol": "BTCUSDT",
        "modelType": ["drift", "naive"],
        "method": "walk_forward",
        "retrainEvery": 300,
        "horizon": 6,
        "window": 24,
        "groups": ["price", "volatility"],
        "test_fraction": 0.4,
        "n_jobs": 1,
        "model_params": {"drift": {"window": 24}},
        **kw,
    }


def test_backtest_headline_sharpe_against_buy_and_hold(candles):
    report = run_backtest(_request(), candles=candles, progress=False)
    h = reports.backtest_headline(report)
    s = report.summary().loc["drift"]
    line = next(line for line in h.lines if line.startswith("drift:"))
    assert (
        f"Sharpe {fmt.number('sharpe', s['sharpe'])} vs buy-and-hold {fmt.number('hold_sharpe', s['hold_sharpe'])}"
        in line
    )
    assert f"DM {'p ' if fmt.pvalue(s['dm_pvalue']).startswith('<') else 'p = '}{fmt.pvalue(s['dm_pvalue'])}" in line
    assert h.items["folds"] == len(report.folds) and h.items["bps_per_trade"] == 15
    assert h.title.startswith(f"Walk-forward backtest, {len(report.folds)} folds")


def test_data_headline_counts_coverage_and_the_longest_gap(tmp_path):
    sample = load_sample().loc["2025-06-01":"2025-06-08"]
    hole = sample.drop(sample.index[20:26]).drop(sample.index[50:51])
    store = open_store("embedded", path=tmp_path / "store", load_sample=False)
    store.write_candles(hole.reset_index(), "BTCUSDT", "1h")
    start, end = "2025-06-01", "2025-06-09"
    gaps = store.gaps("BTCUSDT", "1h", start, end)
    candles = store.load_candles("BTCUSDT", "1h", start, end)
    h = reports.data_headline(candles, gaps, symbol="BTCUSDT", interval="1h", start=start, end=end)
    assert h.items["expected_bars"] == 8 * 24 and h.items["bars"] == 8 * 24 - 7 and h.items["missing_bars"] == 7
    assert h.lines[0].startswith(f"185 of 192 1h bars ({fmt.percent(185 / 192)} coverage)")
    assert h.lines[1] == "2 gaps, 7 missing 1h bars; longest 6 bars from 2025-06-01 20:00"
    aware = reports.data_headline(
        candles,
        gaps,
        symbol="BTCUSDT",
        interval="1h",
        start=pd.Timestamp(start, tz="UTC"),
        end=pd.Timestamp(end, tz="UTC"),
    )
    assert aware.items == h.items


def test_features_headline_accounts_for_rows_windows_and_skipped_features(candles):
    ds = build_dataset(candles.drop(columns="taker_buy_base"), "1h", window=24, horizon=6)
    r = ds.report
    h = reports.features_headline(ds)
    assert h.items["features"] == len(ds.feature_names) and h.items["windows"] == r.windows
    assert h.title.startswith(f"{len(ds.feature_names)} features kept, {len(r.skipped_features)} skipped")
    assert f"{r.rows_in:,} in, {r.warmup_rows:,} warm-up dropped" in h.text
    assert f"{r.windows_dropped_embargo:,} at split cuts" in h.text
    assert r.skipped_features and len(h.flags) == len(r.skipped_features)
    assert h.flags[0] == f"feature {next(iter(r.skipped_features))} skipped: taker_buy_base absent or all-NaN"


# ------------------------------------------------------------------------------------ records


def test_record_round_trip_merge_and_json_safety(tmp_path, forecasts):
    headline = reports.training_headline(forecasts)
    board = evaluation.summary_table(forecasts, ["skill", "dm_pvalue"])
    ref = ModelRef("BTCUSDT", "1h", "lstm_fast", "v0003", tmp_path / "models" / "x")
    reports.record(
        tmp_path,
        "02_training",
        headline=headline,
        leaderboard=board,
        n=np.int64(3),
        when=pd.Timestamp("2025-01-01", tz="UTC"),
        values=np.array([1.5, np.nan]),
    )
    reports.record(tmp_path, "02_training", saved_models=[ref])
    reports.record(tmp_path, "03_backtesting", sharpe=np.float32(0.5))
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data == reports.read_records(tmp_path)
    stage = data["02_training"]
    assert set(stage["headline"]) == {"text", "items"} and stage["headline"]["text"] == headline.text
    assert stage["headline"]["items"]["best_skill"] == "good"
    assert stage["headline"]["items"]["first_origin"] == "2025-01-01T00:00:00+00:00"
    assert stage["leaderboard"]["naive"]["dm_pvalue"] is None  # NaN -> null, never "NaN" in the file
    assert math.isclose(stage["leaderboard"]["good"]["skill"], board.loc["good", "skill"])
    assert stage["saved_models"] == ["BTCUSDT/1h/lstm_fast/v0003"] and stage["n"] == 3
    assert stage["when"] == "2025-01-01T00:00:00+00:00" and stage["values"] == [1.5, None]
    assert data["03_backtesting"] == {"sharpe": 0.5}
    assert "NaN" not in (tmp_path / "metrics.json").read_text()


def test_record_is_atomic_and_a_no_op_without_a_run(tmp_path):
    reports.record(None, "00_data", bars=1)  # interactive session: nothing to write, no error
    assert reports.read_records(None) == {} and reports.read_records(tmp_path) == {}
    reports.record(tmp_path, "00_data", bars=1)
    before = (tmp_path / "metrics.json").read_bytes()
    with pytest.raises(TypeError, match="cannot record path of type"):
        reports.record(tmp_path, "00_data", bars=2, path=tmp_path / "x")
    with pytest.raises(TypeError, match="object"):
        reports.record(tmp_path, "01_features", thing=object())
    assert (tmp_path / "metrics.json").read_bytes() == before  # untouched: nothing half-written
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        reports.read_records(tmp_path)


def test_model_ref_and_display_path_are_relative(tmp_path, monkeypatch):
    monkeypatch.setenv("COFFEE_ML_OUTPUTS", str(tmp_path))
    ref = ModelRef("BTCUSDT", "1h", "gru", "v0012", tmp_path / "models" / "BTCUSDT" / "1h" / "gru" / "v0012")
    assert reports.model_ref(ref) == "BTCUSDT/1h/gru/v0012"
    assert reports.display_path(tmp_path / "runs" / "r1" / "features.parquet") == "runs/r1/features.parquet"
    assert reports.display_path("/elsewhere/features.parquet") == "features.parquet"
    assert reports.data_range(pd.date_range("2025-01-01", periods=3, freq="h", tz="UTC")) == {
        "first": "2025-01-01T00:00:00+00:00",
        "last": "2025-01-01T02:00:00+00:00",
        "rows": 3,
    }


# ---------------------------------------------------------------------------------- progress


def test_backtest_progress_bar_on_stderr_and_off_on_request(candles, capfd):
    report = run_backtest(_request(), candles=candles, progress=True)
    out, err = capfd.readouterr()
    total = 2 * len(report.folds)
    assert out == "" and f"{total}/{total}" in err and "backtest" in err and "fold" in err
    run_backtest(_request(), candles=candles, progress=False)
    assert capfd.readouterr() == ("", "")


def test_backtest_progress_bar_in_parallel_counts_finished_models(candles, capfd):
    report = run_backtest(_request(n_jobs=2), candles=candles, progress=True)
    err = capfd.readouterr().err
    total = 2 * len(report.folds)
    assert f"{total}/{total}" in err and list(report.results) == ["drift", "naive"]


def test_training_bar_writes_once_per_epoch_to_stderr(capfd):
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    train(nn.Linear(3, 1), [(x, y)], [(x, y)], TrainConfig(max_epochs=3, patience=10))
    out, err = capfd.readouterr()
    assert out == "" and "3/3" in err and "best=" in err
    assert err.count("\r") == 3 + 2  # start, one per epoch, close: not two lines per epoch


def test_tables_escape_names_and_text_from_the_data():
    import pandas as pd

    from coffee_ml.reports import format as fmt

    frame = pd.DataFrame({"mae": [1.0], "note": ["<img src=x onerror=alert(2)>"]}, index=["<script>x()</script>"])
    html = fmt.table(frame).to_html()
    assert "<script>" not in html and "<img src=x" not in html and "&lt;script&gt;" in html
