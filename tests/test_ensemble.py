"""Ensembles on real candles (the bundled BTCUSDT hours): each strategy combines as documented, the
learned combiners see only out-of-fold member predictions, members are fitted and predict once per
fold for all strategies, and an ensemble saves, loads and serves like any model."""

from __future__ import annotations

import numpy as np
import pytest

from coffee_ml import ensemble, reports
from coffee_ml.backtest.folds import plan_folds
from coffee_ml.data import load_sample
from coffee_ml.features import build_dataset, feature_panel
from coffee_ml.models import make_model
from coffee_ml.models.base import contexts

MEMBERS = ["hybrid", "gbm", "drift"]
PARAMS = {"gbm": {"n_estimators": 20, "n_jobs": 1}}


@pytest.fixture(scope="module")
def candles():
    return load_sample().loc["2025-01-01":]


@pytest.fixture(scope="module")
def ds(candles):
    return build_dataset(candles, "1h", window=48, horizon=24)


def _fit(ds, strategy, **kw):
    return make_model("ensemble", members=MEMBERS, strategy=strategy, member_params=PARAMS, **kw).fit(ds)


@pytest.fixture(scope="module")
def fitted(ds):
    return {s: _fit(ds, s) for s in ("average", "voting", "regime", "stacking")}


def _members(model, ds, rows):
    X, lc = contexts(ds, rows)
    return np.stack([m._predict_returns(X, lc) for m in model.members_])


def test_average_and_fixed_weights_combine_as_documented(ds, fitted):
    rows = ds.splits["test"]
    P = _members(fitted["average"], ds, rows)
    np.testing.assert_allclose(fitted["average"].predict(ds, "test").returns, P.mean(axis=0))
    weighted = _fit(ds, "weighted", weights=[2, 1, 1])
    np.testing.assert_allclose(weighted.predict(ds, "test").returns, np.tensordot([0.5, 0.25, 0.25], P, axes=1))


def test_voting_takes_the_majority_side_and_recalibrates_its_bonus(ds, fitted):
    model = fitted["voting"]
    rows = ds.splits["test"]
    P = _members(model, ds, rows)
    f = model.predict(ds, "test")
    majority = np.sign(np.sign(P).sum(axis=0))
    assert np.array_equal(np.sign(f.returns), majority)
    knots_x, knots_y = model.vote_map_
    assert np.all(np.diff(knots_y) >= 0) and knots_y.min() >= 0.02 and knots_y.max() <= 0.98
    assert ((f.confidence > 0) & (f.confidence < 1)).all()


def test_learned_combiners_see_only_out_of_fold_predictions(ds, fitted):
    """Every out-of-fold prediction came from members whose training and early-stopping targets
    ended before its bar, and all of them lie in the training split."""
    for strategy in ("regime", "stacking"):
        oof = fitted[strategy].oof_
        assert (oof.seen < oof.rows).all()
        assert np.isin(oof.rows, ds.splits["train"]).all()
    assert fitted["average"].oof_ is None  # nothing learned: no inner fits


def test_comparison_fits_members_once_and_combiners_learn_from_earlier_folds(candles, monkeypatch):
    from coffee_ml.ensemble import comparison
    from coffee_ml.ensemble.forecaster import EnsembleForecaster
    from coffee_ml.models.baselines import DriftForecaster

    panel = feature_panel(candles, "1h", window=48, horizon=24)
    n = len(panel.features)
    folds = plan_folds(n, int(n * 0.5), 1000, 48)
    calls, seen = [], []
    real_predict = DriftForecaster._predict_returns
    monkeypatch.setattr(
        DriftForecaster, "_predict_returns", lambda self, X, lc: calls.append(len(X)) or real_predict(self, X, lc)
    )
    real_fit = EnsembleForecaster._fit_strategy

    def spy(self, ds):
        if self.oof_ is not None:
            seen.append((self.oof_, ds.splits["test"][0]))
        return real_fit(self, ds)

    monkeypatch.setattr(EnsembleForecaster, "_fit_strategy", spy)
    one = comparison.compare(panel, folds, MEMBERS, ["stacking"], member_params=PARAMS)
    member_calls = len(calls)
    result = comparison.compare(
        panel, folds, MEMBERS, ["average", "weighted", "voting", "regime", "stacking"], member_params=PARAMS
    )
    # five strategies cost the members no more predictions than one: they share them
    assert len(calls) - member_calls == member_calls
    assert set(result.forecasts) == {*MEMBERS, "average", "weighted", "voting", "regime", "stacking"}
    assert len({f.n for f in result.forecasts.values()}) == 1  # identical folds and origins
    np.testing.assert_array_equal(one.forecasts["stacking"].returns, result.forecasts["stacking"].returns)
    for oof, test_start in seen:
        assert (oof.seen < oof.rows).all() and (oof.rows + 24 < test_start).all()


@pytest.mark.parametrize("strategy", ["voting", "regime", "stacking"])
def test_saved_ensemble_loads_and_serves_identically(ds, fitted, candles, strategy, tmp_path):
    from coffee_ml.models.persistence import load_model, save_model

    model = fitted[strategy]
    ref = save_model(model, ds, symbol="BTCUSDT", name=f"ensemble_{strategy}", root=tmp_path)
    loaded = load_model("BTCUSDT", "1h", f"ensemble_{strategy}", root=tmp_path)
    before, after = model.predict(ds, "test"), loaded.model.predict(ds, "test")
    np.testing.assert_array_equal(before.returns, after.returns)
    np.testing.assert_array_equal(before.confidence, after.confidence)
    served = loaded.predict(candles.iloc[-loaded.history_bars :])
    assert served.returns.shape == (1, 24) and np.isfinite(served.returns).all()
    assert ref.model == f"ensemble_{strategy}"


def test_bad_ensembles_fail_clearly(ds):
    with pytest.raises(ValueError, match="strategy must be one of average, weighted, voting, regime, stacking"):
        make_model("ensemble", strategy="boosting").fit(ds)
    with pytest.raises(ValueError, match="at least two members"):
        make_model("ensemble", members=["hybrid"]).fit(ds)
    with pytest.raises(ValueError, match="weights must be 3 non-negative numbers"):
        make_model("ensemble", members=MEMBERS, strategy="weighted", weights=[1, 1]).fit(ds)
    with pytest.raises(ValueError, match="cannot be a member of an ensemble"):
        make_model("ensemble", members=["hybrid", "ensemble"]).fit(ds)


def test_gains_table_and_the_claim_in_the_headline(ds, fitted):
    forecasts = {m: model.predict(ds, "test", name=m) for m, model in zip(MEMBERS, fitted["average"].members_)}
    forecasts |= {s: fitted[s].predict(ds, "test", name=s) for s in ("average", "stacking")}
    table = ensemble.gains(forecasts, MEMBERS, ["average", "stacking"])
    assert list(table.index.get_level_values("step").unique()) == [1, 24]
    row = table.loc[("average", 1)]
    assert row["dir_acc change %"] == pytest.approx(100 * (row["dir_acc"] / row["member dir_acc"] - 1))
    head = reports.ensembles_headline(table, symbol="BTCUSDT", interval="1h", members=MEMBERS)
    assert "+5-15% accuracy from ensembling" in head.title and len(head.lines) == 2
    assert head.items["claim_holds"] == ("does not hold" not in head.title)


def test_registered_versions_are_members_and_may_not_look_ahead(ds, candles, tmp_path):
    """A saved gbm fitted on 2024-06..2024-11 joins an ensemble on 2025 data: its predictions are
    the saved model's on its own features and scaler; on data it was trained on it is refused."""
    from coffee_ml.models.persistence import load_model, save_model

    early = build_dataset(load_sample().loc["2024-06-01":"2024-11-30"], "1h", window=48, horizon=24)
    gbm = make_model("gbm", n_estimators=20, n_jobs=1).fit(early)
    save_model(gbm, early, symbol="BTCUSDT")
    model = make_model("ensemble", members=["registry:gbm@v0001", "hybrid"], strategy="stacking", symbol="BTCUSDT").fit(
        ds
    )
    member = model.members_[0]
    rows = ds.splits["test"]
    own = early.scaler.transform(ds.features[early.feature_names])
    X = np.lib.stride_tricks.sliding_window_view(own, ds.window, axis=0)[rows - ds.window + 1].transpose(0, 2, 1)
    _, lc = contexts(ds, rows)
    np.testing.assert_allclose(
        member._predict_returns(contexts(ds, rows)[0], lc), gbm._predict_returns(X, lc), rtol=1e-9, atol=1e-12
    )
    assert (model.oof_.seen < model.oof_.rows).all()
    # saved and loaded, the ensemble reloads its registered member from the registry
    save_model(model, ds, symbol="BTCUSDT", name="ensemble_registered")
    loaded = load_model("BTCUSDT", "1h", "ensemble_registered")
    np.testing.assert_array_equal(loaded.model.predict(ds, "test").returns, model.predict(ds, "test").returns)
    overlapping = build_dataset(load_sample().loc["2024-08-01":"2025-01-31"], "1h", window=48, horizon=24)
    # its training ended before this dataset's validation, but the stack's inner folds validate on
    # bars it was fitted on
    with pytest.raises(ValueError, match=r"was fitted on bars up to .* it would look ahead"):
        make_model("ensemble", members=["registry:gbm@v0001", "hybrid"], strategy="stacking", symbol="BTCUSDT").fit(
            overlapping
        )
    with pytest.raises(ValueError, match="give the ensemble's symbol"):
        make_model("ensemble", members=["registry:gbm", "hybrid"]).fit(ds)
