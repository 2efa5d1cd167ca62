"""The hand-off to trading: which version serves a symbol (`registry.production`, promotion by
validation score), the sidebar's answer (`serving.Predictor`, `coffee-ml predict`), stale data,
and a warm predictor that follows new candles and new promotions."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from coffee_ml import promotion, registry, serving
from coffee_ml.cli import main
from coffee_ml.config import RUN_ID_ENV
from coffee_ml.data import load_sample, open_store
from coffee_ml.features import build_dataset
from coffee_ml.models import make_model
from coffee_ml.models.persistence import save_model

SYMBOL, INTERVAL, HORIZON = "BTCUSDT", "1h", 6
FEED = "BTCFEED"  # the sample's candles written as a live feed would write them (the store also loads the sample)


@pytest.fixture(scope="module")
def fitted():
    """Two quick models on a slice of the sample that ends two months before its newest candle."""
    ds = build_dataset(
        load_sample().loc["2025-06-01":"2025-10-01"],
        INTERVAL,
        groups=["price", "volatility"],
        window=24,
        horizon=HORIZON,
    )
    return ds, {"hybrid": make_model("hybrid", window=24).fit(ds), "drift": make_model("drift", window=24).fit(ds)}


def _fake_version(model: str, val: float, test: float, run_id: str | None = "run-a") -> registry.ModelRef:
    """A registry version with given validation and test skill (choice reads metadata only)."""
    meta = {
        "metrics": {"val": {"skill": val, "mae": 100 * (1 - val), "origins": 500}, "test": {"skill": test}},
        "data_range": {"splits": {"val": ["2025-01-01T00:00:00+00:00", "2025-02-01T00:00:00+00:00"]}},
        **({"run_id": run_id} if run_id else {}),
    }
    return registry.save({}, meta, symbol=SYMBOL, interval=INTERVAL, model=model)


def test_production_pointer_per_symbol():
    with pytest.raises(registry.RegistryError, match="no production model for BTCUSDT 1h.*make run"):
        registry.production(SYMBOL, INTERVAL)
    a, b = _fake_version("gbm", 0.01, 0.0), _fake_version("hybrid", 0.02, 0.0)
    (a.path.parent / registry.PRODUCTION).write_text("v0001\n")  # a registry from before symbol-level promotion
    assert registry.production(SYMBOL, INTERVAL) == a  # one per-model pointer: unambiguous
    (b.path.parent / registry.PRODUCTION).write_text("v0001\n")
    with pytest.raises(registry.RegistryError, match=r"several models.*\(gbm, hybrid\).*models promote"):
        registry.production(SYMBOL, INTERVAL)
    registry.promote(b, reason="because")
    assert registry.production(SYMBOL, INTERVAL) == b
    assert registry.promotion(SYMBOL, INTERVAL)["reason"] == "because"
    registry.promote(a)
    assert registry.production(SYMBOL, INTERVAL) == a  # the newest promotion serves
    (a.path.parent.parent / registry.SERVING).write_text("{not json")
    with pytest.raises(registry.RegistryError, match="production.json: corrupted"):
        registry.production(SYMBOL, INTERVAL)


def test_production_json_is_the_only_production_record():
    """Promoting a second model moves production: `models list`, `resolve(..., "production")` and
    `delete` all read production.json, so two versions never both claim production."""
    a, b = _fake_version("gbm", 0.01, 0.0), _fake_version("hybrid", 0.02, 0.0)
    registry.promote(a)
    registry.promote(b)
    table = registry.list_models()
    assert table.loc[table["production"], ["model", "version"]].values.tolist() == [["hybrid", "v0001"]]
    assert registry.resolve(SYMBOL, INTERVAL, "hybrid", "production") == b
    with pytest.raises(registry.RegistryError, match="gbm is not in production: hybrid v0001 serves BTCUSDT 1h"):
        registry.resolve(SYMBOL, INTERVAL, "gbm", "production")
    registry.delete(a)  # no longer production: may go
    with pytest.raises(registry.RegistryError, match="is in production"):
        registry.delete(b)
    folder = b.path.parent.parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [".production.json.lock", "gbm", "hybrid", registry.SERVING]
    )
    assert not list(folder.glob(f"*/{registry.PRODUCTION}"))  # no second pointer is written
    # a registry from before production.json: its per-model pointers go with the first promotion
    (a.path.parent / registry.PRODUCTION).write_text("v0001\n")
    assert registry.list_models()["production"].tolist() == [True]  # production.json wins; the old file goes
    assert not (a.path.parent / registry.PRODUCTION).exists()


def test_promote_best_by_validation_never_test(monkeypatch):
    _fake_version("lstm", val=0.004, test=0.09)  # the best test score: must not matter
    best = _fake_version("gbm", val=0.012, test=-0.01)
    _fake_version("hybrid", val=0.05, test=0.05, run_id="another-run")  # not saved by this run
    monkeypatch.setenv(RUN_ID_ENV, "run-a")
    choice = promotion.promote_best(SYMBOL, INTERVAL)
    assert choice.ref == best and choice.promoted and registry.production(SYMBOL, INTERVAL) == best
    assert set(choice.candidates["model"]) == {"lstm", "gbm"}
    assert "best validation skill of 2" in choice.reason and "runner-up lstm v0001" in choice.reason
    assert registry.promotion(SYMBOL, INTERVAL)["reason"] == choice.reason
    # outside a run: the newest version of every model; a scorer where lower is better picks the same
    monkeypatch.delenv(RUN_ID_ENV)
    assert promotion.promote_best(SYMBOL, INTERVAL, promote=False).ref.model == "hybrid"
    assert promotion.promote_best(SYMBOL, INTERVAL, metric="mae", promote=False).ref.model == "hybrid"
    assert registry.production(SYMBOL, INTERVAL) == best  # promote=False changed nothing
    with pytest.raises(ValueError, match="unknown scorer 'nope'"):
        promotion.promote_best(SYMBOL, INTERVAL, metric="nope")


def test_promote_best_says_when_nothing_beats_naive(monkeypatch):
    _fake_version("lstm", val=-0.01, test=0.0)
    _fake_version("gbm", val=-0.002, test=0.0)
    monkeypatch.setenv(RUN_ID_ENV, "run-a")
    choice = promotion.promote_best(SYMBOL, INTERVAL)
    assert choice.ref.model == "gbm" and "least bad, not a good model" in choice.reason
    monkeypatch.setenv(RUN_ID_ENV, "run-without-models")
    with pytest.raises(ValueError, match="no BTCUSDT 1h model versions saved by run run-without-models"):
        promotion.promote_best(SYMBOL, INTERVAL)


def test_sidebar_answer_is_the_production_forecast(fitted):
    ds, models = fitted
    ref = save_model(models["hybrid"], ds, symbol=SYMBOL, name="hybrid")
    registry.promote(ref, reason="test")
    answer = serving.Predictor(SYMBOL, INTERVAL).predict()
    forecast = serving.predict(SYMBOL, INTERVAL, "hybrid", "production")
    np.testing.assert_allclose(answer.path["price"], forecast.prices[0].round(2))
    lo, hi = forecast.bounds(0.8, price=True)
    np.testing.assert_allclose(answer.path["lower"], lo[0].round(2))
    np.testing.assert_allclose(answer.path["upper"], hi[0].round(2))
    np.testing.assert_allclose(answer.path["confidence"], (100 * forecast.confidence[0]).round(1))
    body = answer.to_json()
    assert {"predictions", "model", "version", "trained_at", "regime"} <= set(body)
    assert (body["as_of"], body["snapshot"], body["level"]) == ("2025-11-30T23:00:00+00:00", True, 0.8)
    assert set(body["predictions"][0]) == {"timestamp", "price", "lower", "upper", "confidence"}
    assert len(body["predictions"]) == HORIZON and body["version"] == "v0001" and body["model"] == "hybrid"
    assert body["regime"]["name"] in {"BULL", "BEAR", "SIDEWAYS"} and 0 <= body["regime"]["confidence"] <= 100
    json.dumps(body, allow_nan=False)  # plain JSON types only
    assert answer.snapshot  # the bundled sample is a frozen history: no staleness error a year on
    assert "bundled sample" in answer.text() and f"{HORIZON} bars ahead" in answer.text()
    assert len(serving.Predictor(SYMBOL, INTERVAL, level=0.95).predict(2).path) == 2
    with pytest.raises(ValueError, match=f"--horizon 7: hybrid v0001 forecasts 1..{HORIZON} bars"):
        serving.Predictor(SYMBOL, INTERVAL).predict(7)
    with pytest.raises(ValueError, match="--level 0.5: hybrid has intervals at 0.8, 0.95 only"):
        serving.Predictor(SYMBOL, INTERVAL, level=0.5).predict()
    as_of = serving.Predictor(SYMBOL, INTERVAL, end="2025-11-01").predict()  # a research run's as-of date
    assert as_of.as_of == pd.Timestamp("2025-10-31 23:00", tz="UTC")
    np.testing.assert_allclose(
        as_of.path["price"], serving.predict(SYMBOL, INTERVAL, "hybrid", end="2025-11-01").prices[0].round(2)
    )


def test_stale_live_data_are_refused_with_their_age(fitted, tmp_path, monkeypatch):
    ds, models = fitted
    registry.promote(save_model(models["drift"], ds, symbol=FEED, name="drift"))
    monkeypatch.setenv("COFFEE_ML_STORE", str(tmp_path / "live"))
    store = open_store("embedded", path=tmp_path / "live")
    candles = load_sample().loc["2025-09-01":]
    store.write_candles(candles.reset_index(), FEED, INTERVAL)  # a feed, not the sample
    closed = candles.index[-1] + pd.Timedelta(hours=1)
    predictor = serving.Predictor(FEED, INTERVAL)
    assert not predictor.predict(now=closed + pd.Timedelta(minutes=30)).snapshot
    with pytest.raises(
        serving.StaleDataError,
        match=r"stale: the newest candle \(2025-11-30 23:00 UTC\) closed "
        r"3 days 5 h ago, over the limit of 2 h",
    ):
        predictor.predict(now=closed + pd.Timedelta(days=3, hours=5))
    relaxed = serving.Predictor(FEED, INTERVAL, max_age=pd.Timedelta(days=4))
    assert relaxed.predict(now=closed + pd.Timedelta(days=3, hours=5)).as_of == candles.index[-1]
    # the newest candle is still open half an hour before it closes: the forecast reads the one before
    warm = serving.Predictor(FEED, INTERVAL)
    assert warm.predict(now=closed - pd.Timedelta(minutes=30)).as_of == candles.index[-2]
    warm.store_.load_last = None  # warm: while the bar is open, and once it has closed, only newer bars are read
    assert warm.predict(now=closed - pd.Timedelta(minutes=10)).as_of == candles.index[-2]
    assert warm.predict(now=closed + pd.Timedelta(minutes=10)).as_of == candles.index[-1]


def _feed_short_of_three_bars(fitted, tmp_path, monkeypatch):
    """A live feed's store holding the sample from September but its last three bars, and the
    hybrid promoted for it; returns the store and the whole sample slice."""
    ds, models = fitted
    monkeypatch.setenv("COFFEE_ML_STORE", str(tmp_path / "live"))
    store = open_store("embedded", path=tmp_path / "live")
    sample = load_sample().loc["2025-09-01":]
    store.write_candles(sample.iloc[:-3].reset_index(), FEED, INTERVAL)
    registry.promote(save_model(models["hybrid"], ds, symbol=FEED, name="hybrid"))
    return store, sample


def test_warm_predictor_follows_new_candles_and_promotions(fitted, tmp_path, monkeypatch):
    ds, models = fitted
    store, sample = _feed_short_of_three_bars(fitted, tmp_path, monkeypatch)
    warm = serving.Predictor(FEED, INTERVAL, max_age=pd.Timedelta(days=3650))
    first, cached = warm.predict(), warm.answer_
    assert first.as_of == sample.index[-4]
    assert warm.predict().to_json() == first.to_json() and warm.answer_ is cached  # no new bar: not recomputed
    store.write_candles(sample.iloc[-3:].reset_index(), FEED, INTERVAL)
    again = warm.predict()
    cold = serving.Predictor(FEED, INTERVAL, max_age=pd.Timedelta(days=3650)).predict()
    assert again.as_of == sample.index[-1]
    pd.testing.assert_frame_equal(again.path, cold.path)  # only the new bars were read, same answer
    registry.promote(save_model(models["drift"], ds, symbol=FEED, name="drift"))
    assert warm.predict().model == "drift"


def test_cli_predict(fitted, capsys):
    code = main(["predict", SYMBOL, "--interval", INTERVAL, "--horizon", "3"])
    assert code == 1 and "no production model for BTCUSDT 1h" in capsys.readouterr().err
    ds, models = fitted
    registry.promote(save_model(models["hybrid"], ds, symbol=SYMBOL, name="hybrid"))
    assert main(["predict", SYMBOL, "--interval", INTERVAL, "--horizon", "3", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert len(body["predictions"]) == 3 and body["model"] == "hybrid"
    assert main(["predict", SYMBOL, "--interval", INTERVAL]) == 0
    out = capsys.readouterr().out
    assert "predicted price" in out and "80% interval" in out and "market regime" in out and "hybrid v0001" in out
    for bad in ("soon", "3", "-2h"):
        with pytest.raises(SystemExit):
            main(["predict", SYMBOL, "--interval", INTERVAL, f"--max-age={bad}"])
        assert f"expected a positive duration with a unit such as 3h or 90min, got '{bad}'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", SYMBOL, "--interval", INTERVAL, "--level", "2"])
    assert "expected a number with 0 < x < 1 such as 0.8" in capsys.readouterr().err


def test_a_polling_predictor_answers_from_memory_and_picks_up_new_candles_aside(fitted, tmp_path, monkeypatch):
    """`poll_s` (the service's setting): calls between polls never read the store; a due poll reads
    the newer candles in a background thread, and a later call answers from them."""
    store, sample = _feed_short_of_three_bars(fitted, tmp_path, monkeypatch)
    warm = serving.Predictor(FEED, INTERVAL, max_age=pd.Timedelta(days=3650), poll_s=0.2)
    assert warm.predict().as_of == sample.index[-4] and warm.warm
    store.write_candles(sample.iloc[-3:].reset_index(), FEED, INTERVAL)
    deadline = time.monotonic() + 60  # a condition, not a fixed sleep: the machine may be slow
    while (answer := warm.predict()).as_of != sample.index[-1]:
        assert answer.as_of == sample.index[-4] and time.monotonic() < deadline
        time.sleep(0.05)
    cold = serving.Predictor(FEED, INTERVAL, max_age=pd.Timedelta(days=3650)).predict()
    pd.testing.assert_frame_equal(answer.path, cold.path)
    reads = []
    warm.store_.load_candles = lambda *a, **k: reads.append(a)  # within poll_s: memory only
    warm.polled_ = time.monotonic()
    warm.predict()
    assert reads == []
