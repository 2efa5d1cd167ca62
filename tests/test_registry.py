"""Model registry: atomic versions, exact reload, production pointer, clear errors on bad files."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch

from coffee_ml import evaluation, registry
from coffee_ml.cli import main
from coffee_ml.data import load_sample
from coffee_ml.features import build_dataset
from coffee_ml.forecast import Forecast
from coffee_ml.models import make_model
from coffee_ml.models.persistence import load_model, save_model
from forecasts import assert_same_forecast


@pytest.fixture(scope="module")
def trained():
    candles = load_sample().loc["2025-06-01":"2025-10-01"]
    ds = build_dataset(candles, "1h", groups=["price", "volatility"], window=24, horizon=4)
    lstm = make_model("lstm", window=24, hidden=8, layers=1, max_epochs=2, progress=False).fit(ds)
    hybrid = make_model("hybrid", window=24).fit(ds)
    return candles, ds, lstm, hybrid


def test_saved_model_reloads_to_identical_predictions(trained, tmp_path):
    candles, ds, lstm, hybrid = trained
    step = candles.index[1] - candles.index[0]
    for model, name in ((lstm, "lstm"), (hybrid, "hybrid")):
        ref = save_model(model, ds, symbol="BTCUSDT", name=name, root=tmp_path)
        assert ref.version == "v0001" and sorted(os.listdir(ref.path)) == ["metadata.json", "weights.pt"]
        loaded = load_model("BTCUSDT", "1h", name, root=tmp_path)
        # the stored calibration gives the same intervals and confidence, not only the same returns
        assert_same_forecast(loaded.model.predict(ds, "test"), model.predict(ds, "test"))
        np.testing.assert_array_equal(loaded.scaler.transform(ds.features), ds.X)
        latest = loaded.predict(candles.iloc[-loaded.history_bars :])
        assert isinstance(latest, Forecast) and latest.n == 1 and latest.horizon == 4
        assert latest.origins[0] == candles.index[-1] and latest.last_close[0] == candles["close"].iloc[-1]
        assert latest.times[-1] == candles.index[-1] + 4 * step
        assert latest.actual is None and latest.model == name
        # the candle path (features, scaler, volatility recomputed from raw candles) agrees with the
        # dataset path at the same origin
        same = model.predict(ds, rows=[len(ds.features) - 1])
        assert same.origins.equals(latest.origins)
        np.testing.assert_allclose(latest.returns, same.returns, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(latest.intervals[0.95], same.intervals[0.95], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(latest.confidence, same.confidence, rtol=1e-9)
    assert not np.all(lstm.predict(ds, "test").confidence == 0.5)  # so the confidence comparison means something
    meta = json.loads((tmp_path / "BTCUSDT/1h/lstm/v0001/metadata.json").read_text())
    for key in (
        "model_class",
        "params",
        "feature_names",
        "scaler",
        "horizon",
        "vol_halflife",
        "data_range",
        "metrics",
        "metrics_by_horizon",
        "trained_at",
        "git",
        "packages",
    ):
        assert key in meta
    assert meta["params"]["hidden"] == 8 and meta["horizon"] == 4 and meta["vol_halflife"] == ds.vol_halflife
    calibration = meta["state"]["calibration"]
    assert {
        "levels",
        "scaled_q",
        "exponent",
        "group_cuts",
        "constant_q",
        "conf_x",
        "conf_y",
        "base_rate",
        "up_share",
    } <= set(calibration)
    assert calibration["levels"] == [0.8, 0.95]
    # stored metrics are the evaluation layer's scorers, computed on the saved model's forecasts
    stored = meta["metrics"]["test"]
    assert set(stored) >= {
        "mae",
        "naive_mae",
        "skill",
        "rmse",
        "mape",
        "r2",
        "dir_acc",
        "brier_skill",
        "coverage_80",
        "coverage_95",
        "coverage_80_lowvol",
        "winkler_ratio_80",
    }
    assert not set(stored) & set(evaluation.TRADING)
    assert stored == pytest.approx(evaluation.score(lstm.predict(ds, "test"), list(stored)), nan_ok=True)
    assert set(meta["metrics"]) == {"val", "test"}
    assert list(meta["metrics_by_horizon"]["test"]) == ["1", "2", "3", "4", "all"]
    assert meta["metrics_by_horizon"]["test"]["all"]["mae"] == pytest.approx(stored["mae"])
    # weights are a plain state dict: loadable without unpickling any code
    state = torch.load(tmp_path / "BTCUSDT/1h/lstm/v0001/weights.pt", weights_only=True)
    assert set(state) == set(lstm.net_.state_dict())


def _old_calibration(meta: dict) -> None:
    """The calibration as saved before the refactor: constant quantiles and direction curves only."""
    cal = meta["state"]["calibration"]
    meta["state"]["calibration"] = {
        "levels": cal["levels"],
        "quantiles": cal["constant_q"],
        "n": cal["n"],
        "direction_x": cal["conf_x"],
        "direction_y": cal["conf_y"],
    }
    meta.pop("vol_halflife")


def _drop(field):
    def edit(meta: dict) -> None:
        del meta["state"]["calibration"][field]

    return edit


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(_old_calibration, id="pre-refactor"),
        pytest.param(_drop("scaled_q"), id="no-scaled_q"),
        pytest.param(_drop("exponent"), id="no-exponent"),
        pytest.param(_drop("group_cuts"), id="no-group_cuts"),
        pytest.param(lambda meta: meta["state"].pop("calibration"), id="no-calibration"),
    ],
)
def test_metadata_without_the_new_calibration_fails_clearly(trained, tmp_path, capsys, monkeypatch, edit):
    """A version saved before volatility-scaled calibration cannot give the new intervals and
    confidence: loading it says so (and to retrain) instead of failing somewhere inside."""
    _, ds, _, hybrid = trained
    monkeypatch.setenv("COFFEE_ML_OUTPUTS", str(tmp_path))  # the registry root is tmp_path/models
    ref = save_model(hybrid, ds, symbol="BTCUSDT", name="hybrid")
    assert ref.path.parents[3] == tmp_path / "models"
    meta_path = ref.path / "metadata.json"
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))  # the weights are untouched: the checksum still matches
    with pytest.raises(registry.RegistryError, match="saved before volatility-scaled calibration; retrain"):
        load_model("BTCUSDT", "1h", "hybrid")
    assert main(["models", "predict", "BTCUSDT", "1h", "hybrid", "--backend", "embedded"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("coffee-ml: error: ")
    assert "saved before volatility-scaled calibration" in err


def test_versions_list_promote_delete(trained, tmp_path):
    _, ds, _, hybrid = trained
    refs = [save_model(hybrid, ds, symbol="BTCUSDT", name="hybrid", root=tmp_path) for _ in range(3)]
    assert [r.version for r in refs] == ["v0001", "v0002", "v0003"]
    with pytest.raises(registry.RegistryError, match="no production version"):
        registry.resolve("BTCUSDT", "1h", "hybrid", "production", root=tmp_path)
    registry.promote(refs[1])
    assert registry.resolve("BTCUSDT", "1h", "hybrid", "production", root=tmp_path).version == "v0002"
    table = registry.list_models(tmp_path)
    assert table["version"].tolist() == ["v0001", "v0002", "v0003"]
    assert table["production"].tolist() == [False, True, False]
    with pytest.raises(registry.RegistryError, match="in production"):
        registry.delete(refs[1])
    registry.delete(refs[0])
    assert registry.list_models(tmp_path)["version"].tolist() == ["v0002", "v0003"]
    assert registry.resolve("BTCUSDT", "1h", "hybrid", root=tmp_path).version == "v0003"
    registry.delete(refs[2])  # the latest: its number must never name another model
    assert save_model(hybrid, ds, symbol="BTCUSDT", name="hybrid", root=tmp_path).version == "v0004"


def test_metadata_cannot_override_integrity_fields(trained, tmp_path):
    _, ds, _, hybrid = trained
    save_model(
        hybrid,
        ds,
        symbol="BTCUSDT",
        name="hybrid",
        root=tmp_path,
        extra={"weights_sha256": "0" * 64, "format": "mine", "note": "kept"},
    )
    loaded = load_model("BTCUSDT", "1h", "hybrid", root=tmp_path)
    assert loaded.metadata["note"] == "kept" and loaded.metadata["format"] == registry.FORMAT


def test_a_crash_while_saving_leaves_nothing_behind(trained, tmp_path, monkeypatch):
    _, ds, _, hybrid = trained
    save_model(hybrid, ds, symbol="BTCUSDT", name="hybrid", root=tmp_path)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(registry.os, "rename", crash)
    with pytest.raises(OSError, match="disk full"):
        save_model(hybrid, ds, symbol="BTCUSDT", name="hybrid", root=tmp_path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path / "BTCUSDT/1h/hybrid")) == [".last_version", "v0001"]  # no staging left
    load_model("BTCUSDT", "1h", "hybrid", root=tmp_path)


def test_corrupted_or_foreign_files_fail_clearly(trained, tmp_path):
    _, ds, lstm, _ = trained
    ref = save_model(lstm, ds, symbol="BTCUSDT", name="lstm", root=tmp_path)
    weights, meta_path = ref.path / "weights.pt", ref.path / "metadata.json"
    original = weights.read_bytes()
    weights.write_bytes(original[:-10] + b"0123456789")
    with pytest.raises(registry.RegistryError, match="checksum mismatch"):
        load_model("BTCUSDT", "1h", "lstm", root=tmp_path)
    # a foreign pickle that carries code, with a matching checksum, is still refused
    buf = io.BytesIO()
    torch.save({"payload": os.system}, buf)
    weights.write_bytes(buf.getvalue())
    meta = json.loads(meta_path.read_text())
    meta["weights_sha256"] = registry._sha256(buf.getvalue())
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(registry.RegistryError, match="not a plain tensor state dict"):
        load_model("BTCUSDT", "1h", "lstm", root=tmp_path)
    meta_path.write_text("{not json")
    with pytest.raises(registry.RegistryError, match="corrupted metadata"):
        load_model("BTCUSDT", "1h", "lstm", root=tmp_path)
    meta_path.write_text(json.dumps({"format": "someone-else/3"}))
    with pytest.raises(registry.RegistryError, match="not a coffee-ml model"):
        load_model("BTCUSDT", "1h", "lstm", root=tmp_path)
    with pytest.raises(registry.RegistryError, match="has no version 'v0009'"):
        load_model("BTCUSDT", "1h", "lstm", "v0009", root=tmp_path)


@pytest.mark.parametrize("bars_back", [5, 24 + 20])  # inside the window; in the look-back before it
def test_predict_from_candles_refuses_a_gap_in_its_inputs(trained, tmp_path, bars_back):
    candles, ds, _, hybrid = trained
    save_model(hybrid, ds, symbol="BTCUSDT", name="hybrid", root=tmp_path)
    loaded = load_model("BTCUSDT", "1h", "hybrid", root=tmp_path)
    n = loaded.history_bars
    assert loaded.lookback > 24 + 20 and n > loaded.lookback  # 24 + 20 is before the window
    holed = candles.iloc[-n:].drop(candles.index[-bars_back])
    with pytest.raises(ValueError, match="not consecutive 1h bars"):
        loaded.predict(holed)
    older = loaded.predict(candles.iloc[-n:].drop(candles.index[-loaded.lookback - 5]))  # an older gap is fine
    assert older.origins[0] == candles.index[-1] and np.isfinite(older.confidence).all()
    with pytest.raises(ValueError, match=f"need at least {loaded.lookback} candles"):
        loaded.predict(candles.iloc[-loaded.lookback + 1 :])


def test_models_cli(trained, capsys, monkeypatch, tmp_path):
    _, ds, _, hybrid = trained
    monkeypatch.setenv("COFFEE_ML_OUTPUTS", str(tmp_path))
    save_model(hybrid, ds, symbol="BTCUSDT", name="hybrid")
    save_model(hybrid, ds, symbol="BTCUSDT", name="hybrid")
    assert main(["models", "promote", "BTCUSDT", "1h", "hybrid", "v0001"]) == 0
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "v0001 is now production" in out and "v0002" in out
    assert main(["models", "show", "BTCUSDT", "1h", "hybrid", "production"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["model_class"] == "HybridForecaster" and shown["interval"] == "1h"
    assert main(["models", "delete", "BTCUSDT", "1h", "hybrid", "v0001"]) == 1
    assert "in production" in capsys.readouterr().err
    assert main(["models", "delete", "BTCUSDT", "1h", "hybrid", "v0002"]) == 0
    assert main(["models", "predict", "BTCUSDT", "1h", "hybrid", "production", "--backend", "embedded"]) == 0
    out = capsys.readouterr().out  # forecast from the newest candle of the bundled sample (2025-11-30 23:00)
    assert "lower_95" in out and "confidence" in out and "2025-12-01 00:00:00" in out


def test_forecasting_from_a_saved_model_does_not_import_scikit_learn():
    """scikit-learn's import (scipy.stats) costs ~1.6 s; a forecasting process needs none of it."""
    import subprocess
    import sys

    code = (
        "import sys; from coffee_ml.data import load_sample; from coffee_ml.models.persistence import load_model; "
        "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_broken_versions_fail_clearly_and_do_not_hide_the_others(trained, tmp_path, capsys, monkeypatch):
    _, ds, _, hybrid = trained
    monkeypatch.setenv("COFFEE_ML_OUTPUTS", str(tmp_path))
    good, empty, binary = (save_model(hybrid, ds, symbol="BTCUSDT", name="hybrid") for _ in range(3))
    (empty.path / "metadata.json").write_text("[]")
    (binary.path / "metadata.json").write_bytes(b"\xff\xfe\x00garbage")
    table = registry.list_models()
    assert table["version"].tolist() == ["v0001", "v0002", "v0003"]
    assert table.set_index("version").loc["v0002", "saved_at"] == "unreadable metadata.json"
    meta = json.loads((good.path / "metadata.json").read_text())
    for edit, message in (
        (lambda m: m.pop("params"), "no 'params' or 'state' mapping"),
        (lambda m: m["params"].update(windw=3), "params do not fit HybridForecaster"),
    ):
        broken = json.loads(json.dumps(meta))
        edit(broken)
        (good.path / "metadata.json").write_text(json.dumps(broken))
        with pytest.raises(registry.RegistryError, match=message):
            load_model("BTCUSDT", "1h", "hybrid", "v0001")
        assert main(["models", "promote", "BTCUSDT", "1h", "hybrid", "v0001"]) == 1  # never promoted
        assert message.split()[0] in capsys.readouterr().err
    assert not (good.path.parent / "production").exists()
