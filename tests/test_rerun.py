"""Reproducing a run: data fingerprints in the manifest, `coffee-ml rerun` on unchanged data gives
the recorded numbers, newer candles do not leak into a rerun, changed candles are named; and a
symbol without data fails before any kernel starts."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from coffee_ml import provenance, rerun, runner
from coffee_ml.cli import main
from coffee_ml.data import load_sample, open_store

PARAMS = """
name: small
parameters: {symbol: BTCUSDT, interval: 1h, start: "2025-08-01", end: null}
notebooks:
  - notebook: 02_training.ipynb
    parameters: {models: [hybrid, drift], model_params: {}, window: 48, horizon: 6, groups: [price, volatility]}
"""


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One small run on the bundled sample (outputs and store in a folder of this module)."""
    folder = tmp_path_factory.mktemp("rerun")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COFFEE_ML_OUTPUTS", str(folder))
        mp.setenv("COFFEE_ML_STORE", str(folder / "store"))
        (folder / "small.yaml").write_text(PARAMS)
        index = runner.run(folder / "small.yaml")
    return folder, index.parent


@pytest.fixture
def outputs(first_run, monkeypatch):
    folder, _ = first_run
    monkeypatch.setenv("COFFEE_ML_OUTPUTS", str(folder))
    monkeypatch.setenv("COFFEE_ML_STORE", str(folder / "store"))
    return folder


def test_manifest_records_a_fingerprint_of_what_each_notebook_read(first_run):
    _, run_dir = first_run
    (entry,) = json.loads((run_dir / "manifest.json").read_text())["notebooks"]
    (read,) = entry["data"]
    bars = load_sample().loc["2025-08-01":]
    assert (read["symbol"], read["interval"], read["rows"]) == ("BTCUSDT", "1h", len(bars))
    assert read["first"] == bars.index[0].isoformat() and read["last"] == bars.index[-1].isoformat()
    assert read["sha256"] == provenance.fingerprint(open_store().load_candles("BTCUSDT", "1h", "2025-08-01"))
    assert not list(run_dir.glob(".reads-*"))  # the kernel's reads file is folded into the manifest


def test_fingerprint_sees_one_changed_number():
    bars = load_sample().iloc[-100:]
    changed = bars.copy()
    changed.iloc[50, changed.columns.get_loc("close")] *= 1 + 1e-12
    assert provenance.fingerprint(bars) == provenance.fingerprint(bars.copy())
    assert provenance.fingerprint(bars) != provenance.fingerprint(changed)


def test_rerun_reproduces_and_ignores_newer_candles(outputs, first_run):
    _, run_dir = first_run
    store = open_store()
    last = store.load_last("BTCUSDT", "1h", 1)
    newer = last.set_axis(last.index + pd.Timedelta(hours=1)).rename_axis("open_time").reset_index()
    store.write_candles(newer, "BTCUSDT", "1h")  # a candle arrived after the run: `end: null` must not read it
    result = rerun.rerun(run_dir.name)
    assert result.reproduced, result.summary()
    assert result.compared > 100 and "reproduced" in result.summary()
    manifest = json.loads((result.index.parent / "manifest.json").read_text())
    assert manifest["rerun_of"] == run_dir.name and manifest["reproduction"]["reproduced"] is True
    assert manifest["notebooks"][0]["parameters"]["end"] == "2025-12-01T00:00:00+00:00"  # pinned


def test_a_rerun_never_promotes_and_needs_numbers_to_reproduce(first_run):
    _, run_dir = first_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["notebooks"].append({"notebook": "08_production.ipynb", "parameters": {"promote": True}})
    spec = rerun.spec_from_manifest(manifest)
    assert spec.steps[-1].parameters["promote"] is False  # checking a run must not change production
    nothing = rerun.Reproduction("a", "b", run_dir / "index.html", compared=0)
    assert not nothing.reproduced and "nothing to compare" in nothing.summary()


def test_rerun_names_changed_data_and_overrides(outputs, first_run, capsys):
    _, run_dir = first_run
    store = open_store()
    bar = store.load_candles("BTCUSDT", "1h", "2025-10-01 00:00", "2025-10-01 01:00")
    store.write_candles(bar.assign(close=(bar["low"] + bar["high"]) / 2).reset_index(), "BTCUSDT", "1h")
    assert main(["rerun", run_dir.name]) == 0  # differences explained by changed data: reported, not an error
    out = capsys.readouterr().out
    assert "the data changed in 1 read(s)" in out and "BTCUSDT 1h 2025-08-01T00:00:00+00:00" in out
    assert main(["rerun", run_dir.name, "-p", "models=[drift]"]) == 0
    out = capsys.readouterr().out
    assert (
        "numbers differ (overrides {'models': ['drift']})" in out and "hybrid" in out and "only in the first run" in out
    )
    assert main(["rerun", "no-such-run"]) == 1
    assert "no run 'no-such-run'" in capsys.readouterr().err


def test_a_rerun_uses_the_runs_thread_settings(monkeypatch):
    """A batch entry ran with its share of the cores: its rerun's kernels get the same setting."""
    monkeypatch.setenv("MKL_NUM_THREADS", "8")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with rerun._threads_of({"threads": {"cpus": 2, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": None}}):
        assert os.environ["OMP_NUM_THREADS"] == "1" and "MKL_NUM_THREADS" not in os.environ
    assert "OMP_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "8"
    assert provenance.threads()["MKL_NUM_THREADS"] == "8"


def test_compare_records_tolerates_round_off_not_changes():
    old = {"02": {"leaderboard": {"gru": {"mae": 1.0, "seconds": 3.0}}, "trials": [{"value": 2.0}]}}
    same = {"02": {"leaderboard": {"gru": {"mae": 1.0 + 1e-12, "seconds": 9.0}}, "trials": [{"value": 2.0}]}}
    moved = {"02": {"leaderboard": {"gru": {"mae": 1.001}}, "trials": [{"value": 2.0}]}}
    assert rerun.compare_records(old, same) == (2, [])  # timings are not results
    compared, differing = rerun.compare_records(old, moved)
    assert compared == 2 and differing == ["02.leaderboard.gru.mae: 1.0 -> 1.001"]


def test_a_symbol_without_data_fails_before_any_kernel(tmp_path):
    (tmp_path / "eth.yaml").write_text(PARAMS.replace("BTCUSDT", "ETHUSDC"))
    with pytest.raises(
        runner.ParamsError,
        match=r"no ETHUSDC candles in the store \(it holds BTCUSDT 1h\); "
        r"import them first, e\.g\. coffee-ml import <files> --symbol "
        r"ETHUSDC --interval 1h \(\.\./shared/data/ETHUSDC-1h\.parquet",
    ):
        runner.run(tmp_path / "eth.yaml")
    assert not (tmp_path / "outputs" / "runs").exists()
