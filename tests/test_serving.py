"""Serving: a forecast from a registry version and only the newest candles the store holds, the
same as from the whole history; `CandleStore.load_last`; `coffee-ml models predict`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coffee_ml import registry, serving
from coffee_ml.cli import main
from coffee_ml.data import load_sample, open_store
from coffee_ml.data.store import CandleStore
from coffee_ml.features import build_dataset
from coffee_ml.forecast import Forecast
from coffee_ml.models import make_model
from coffee_ml.models.persistence import load_model, save_model

SYMBOL, INTERVAL, HORIZON = "BTCUSDT", "1h", 4


@pytest.fixture(scope="module")
def fitted():
    """A small hybrid and a tiny LSTM (which reads the features, not only closes) on a slice of
    the sample that ends two months before its newest candle."""
    ds = build_dataset(
        load_sample().loc["2025-06-01":"2025-10-01"],
        INTERVAL,
        groups=["price", "volatility"],
        window=24,
        horizon=HORIZON,
    )
    models = {
        "hybrid": make_model("hybrid", window=24).fit(ds),
        "lstm": make_model("lstm", window=24, hidden=8, layers=1, max_epochs=1, progress=False).fit(ds),
    }
    return ds, models


@pytest.fixture
def sample_store(tmp_path, monkeypatch):
    """The embedded store in this test's folder, filled with the bundled sample; `open_store()`
    without a path (what serving and the CLI call) opens the same one."""
    path = tmp_path / "store"
    monkeypatch.setenv("COFFEE_ML_STORE", str(path))
    return open_store("embedded", path=path)


def _promoted(fitted, name: str, root=None) -> registry.ModelRef:
    ds, models = fitted
    ref = save_model(models[name], ds, symbol=SYMBOL, name=name, root=root)
    registry.promote(ref)
    return ref


def _assert_close(a: Forecast, b: Forecast) -> None:
    """Same origin and step; returns, every bound, confidence and volatility within 1e-9 relative."""
    assert a.origins.equals(b.origins) and np.array_equal(a.steps, b.steps) and a.levels == b.levels
    np.testing.assert_array_equal(a.last_close, b.last_close)
    np.testing.assert_allclose(a.returns, b.returns, rtol=1e-9, atol=0)
    np.testing.assert_allclose(a.scale, b.scale, rtol=1e-9, atol=0)
    np.testing.assert_allclose(a.confidence, b.confidence, rtol=1e-9, atol=0)
    for level in a.levels:
        for constant in (False, True):
            for x, y in zip(a.bounds(level, constant=constant), b.bounds(level, constant=constant)):
                np.testing.assert_allclose(x, y, rtol=1e-9, atol=0)


@pytest.mark.parametrize("name", ["hybrid", "lstm"])
def test_predict_from_the_newest_candles_equals_the_full_history(fitted, sample_store, tmp_path, monkeypatch, name):
    root = tmp_path / "models"
    _promoted(fitted, name, root)
    loaded = load_model(SYMBOL, INTERVAL, name, "production", root=root)
    requested = []
    load_last = CandleStore.load_last

    def spy(self, symbol, interval, bars, end=None):
        requested.append(bars)
        return load_last(self, symbol, interval, bars, end=end)

    monkeypatch.setattr(CandleStore, "load_last", spy)
    f = serving.predict(SYMBOL, INTERVAL, name, root=root, backend="embedded")
    assert requested == [loaded.history_bars]  # the version's needs, not the whole history

    history = sample_store.load_candles(SYMBOL, INTERVAL)
    assert len(history) > 50 * loaded.history_bars
    assert isinstance(f, Forecast) and f.n == 1 and f.horizon == HORIZON and f.steps.tolist() == [1, 2, 3, 4]
    assert f.origins[0] == history.index[-1] == load_sample().index[-1]
    assert f.last_close[0] == history["close"].iloc[-1] and f.actual is None and f.model == name
    row = f.to_frame()
    assert len(row) == HORIZON and (row["time"] == history.index[-1] + pd.to_timedelta(row["step"], unit="h")).all()
    assert (row["lower_95"] <= row["lower_80"]).all() and (row["lower_80"] <= row["price"]).all()
    assert (row["price"] <= row["upper_80"]).all() and (row["upper_80"] <= row["upper_95"]).all()
    assert (row["lower_95"] < row["upper_95"]).all()  # the intervals are not degenerate
    assert ((f.confidence > 0) & (f.confidence < 1)).all()
    # `history_bars` is enough: the forecast from the whole stored history is the same
    _assert_close(f, loaded.predict(history))
    # and so is the version resolved by number, and a forecast as of an earlier time
    _assert_close(serving.predict(SYMBOL, INTERVAL, name, "v0001", root=root, backend="embedded"), f)
    earlier = serving.predict(SYMBOL, INTERVAL, name, root=root, backend="embedded", end="2025-11-01")
    assert earlier.origins[0] == pd.Timestamp("2025-10-31 23:00", tz="UTC")
    _assert_close(earlier, loaded.predict(history.loc[:"2025-10-31 23:00"]))


def test_predict_needs_a_promoted_version_and_candles(fitted, sample_store, tmp_path):
    root = tmp_path / "models"
    ds, models = fitted
    save_model(models["hybrid"], ds, symbol=SYMBOL, name="hybrid", root=root)
    with pytest.raises(registry.RegistryError, match="has no production version; promote one first"):
        serving.predict(SYMBOL, INTERVAL, "hybrid", root=root, backend="embedded")
    assert serving.predict(SYMBOL, INTERVAL, "hybrid", "latest", root=root, backend="embedded").n == 1
    with pytest.raises(ValueError, match="no BTCUSDT 1h candles in the store"):
        serving.predict(SYMBOL, INTERVAL, "hybrid", "latest", root=root, backend="embedded", end="2010-01-01")


# ------------------------------------------------------------------------------ load_last
def test_load_last_returns_the_newest_candles_in_order(store):
    """On both backends: exactly the last n stored candles, oldest first, before `end` (exclusive),
    deduplicated after a re-import, and nothing from other symbols or intervals."""
    candles = load_sample().loc["2025-11-01":"2025-11-30"].drop(pd.Timestamp("2025-11-29 12:00", tz="UTC"))
    store.write_candles(candles.reset_index(), SYMBOL, INTERVAL)
    store.write_candles(candles.iloc[-50:].reset_index(), "OTHER", INTERVAL)
    store.write_candles(candles[candles.index.hour % 2 == 0].reset_index(), SYMBOL, "2h")
    newer = candles.iloc[-5:].copy()
    newer["close"] += 1.0  # re-imported: the newest import wins, once
    store.write_candles(newer.reset_index(), SYMBOL, INTERVAL)
    expected = pd.concat([candles.iloc[:-5], newer])

    last = store.load_last(SYMBOL, INTERVAL, 100)
    pd.testing.assert_frame_equal(last, store.load_candles(SYMBOL, INTERVAL).iloc[-100:])
    pd.testing.assert_frame_equal(last, expected.iloc[-100:], check_freq=False, check_names=False)
    assert last.index.is_monotonic_increasing and last.index.is_unique and len(last) == 100
    assert last.index[-1] == candles.index[-1]

    end = pd.Timestamp("2025-11-29 13:00", tz="UTC")  # right after the missing bar: the gap is skipped
    before = store.load_last(SYMBOL, INTERVAL, 30, end=end)
    pd.testing.assert_frame_equal(
        before, expected.loc[: end - pd.Timedelta(milliseconds=1)].iloc[-30:], check_freq=False, check_names=False
    )
    assert before.index[-1] == pd.Timestamp("2025-11-29 11:00", tz="UTC")  # end is exclusive, 12:00 missing
    assert len(store.load_last(SYMBOL, INTERVAL, 30, end="2025-11-29 13:00")) == 30  # naive strings are UTC

    assert len(store.load_last(SYMBOL, INTERVAL, 10**6)) == len(expected)  # fewer stored than asked: all
    assert len(store.load_last("OTHER", INTERVAL, 1000)) == 50
    assert len(store.load_last(SYMBOL, "2h", 1000)) == (candles.index.hour % 2 == 0).sum()
    empty = store.load_last(SYMBOL, "4h", 10)
    assert empty.empty and list(empty.columns) == list(last.columns)
    with pytest.raises(ValueError, match="bars must be >= 1"):
        store.load_last(SYMBOL, INTERVAL, 0)


# ------------------------------------------------------------------------------ the CLI
def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_predict_cli(fitted, sample_store, capsys):
    """`coffee-ml models predict` reads the registry under COFFEE_ML_OUTPUTS and the default store."""
    argv = ("models", "predict", SYMBOL, INTERVAL, "hybrid", "production")
    code, out, err = _run(capsys, *argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("coffee-ml: error: no saved versions of BTCUSDT/1h/hybrid")
    ds, models = fitted
    ref = save_model(models["hybrid"], ds, symbol=SYMBOL, name="hybrid")  # root: registry.models_dir()
    assert ref.path.parent.parent.parent.parent == registry.models_dir()
    code, out, err = _run(capsys, *argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "BTCUSDT/1h/hybrid has no production version; promote one first" in err
    registry.promote(ref)

    code, out, err = _run(capsys, *argv)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "origin",
        "step",
        "time",
        "last_close",
        "price",
        "lower_80",
        "upper_80",
        "lower_95",
        "upper_95",
        "confidence",
    ]
    assert len(lines) == 1 + HORIZON
    assert lines[1].split()[:5] == ["2025-11-30", "23:00:00+00:00", "1", "2025-12-01", "00:00:00+00:00"]
    expected = serving.predict(SYMBOL, INTERVAL, "hybrid").to_frame()
    printed = [float(line.split()[-1]) for line in lines[1:]]
    np.testing.assert_allclose(printed, expected["confidence"], atol=1e-6)
