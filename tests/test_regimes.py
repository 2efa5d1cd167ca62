"""Regimes: causal labels (truncate or scramble the future and nothing earlier moves), stable names
across refits, known answers on synthetic regimes, and a forward test that is neither blind nor
fooled by persistence. Real data: the bundled BTCUSDT hours."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coffee_ml import regimes as rg
from coffee_ml.data import load_sample


@pytest.fixture(scope="module")
def hours() -> pd.DataFrame:
    return load_sample().loc["2022-01-01":"2022-12-31"]


def _scrambled_future(candles: pd.DataFrame, cut: int, seed: int = 0) -> pd.DataFrame:
    """Bars from `cut` on replaced by a shuffle of themselves (same index), so any label that
    read them would change."""
    rng = np.random.default_rng(seed)
    out = candles.copy()
    out.iloc[cut:] = out.iloc[cut:].to_numpy()[rng.permutation(len(out) - cut)]
    return out


@pytest.mark.parametrize("method", ["rules", "hmm"])
def test_labels_at_t_ignore_later_bars(hours, method):
    detector = rg.make_detector(method)
    kwargs = {"min_train": 2500, "refit_every": 1500, "burn_in": 600}
    candles, cut = hours.iloc[:6500], 5000  # blocks from rows 2500, 4000, 5500; the cut inside the second
    full = rg.label_history(detector, candles, **kwargs)
    truncated = rg.label_history(detector, candles.iloc[:cut], **kwargs)
    scrambled = rg.label_history(detector, _scrambled_future(candles, cut), **kwargs)
    assert full["fold"].nunique() == 3
    for other in (truncated, scrambled.iloc[: cut - 2500]):
        pd.testing.assert_frame_equal(full.loc[other.index], other)
    # the scramble is not a no-op: labels after the cut do change
    after = slice(cut - 2500 + 200, None)
    assert not full["confidence"].iloc[after].equals(scrambled["confidence"].iloc[after])


def test_filter_is_causal_and_ends_where_smoothing_ends(hours):
    """Filtered P(s_t | x_<=t) equals the smoothed P(s_t | all x) only at the last bar; earlier
    smoothed values (hmmlearn's predict_proba) read the future and differ."""
    from hmmlearn.hmm import GaussianHMM

    det = rg.HMMRegimes().fit(hours)
    feats = det.features(hours).dropna()
    x = (feats.to_numpy() - det.mean_) / det.scale_
    model = GaussianHMM(3, covariance_type="full")
    model.startprob_, model.transmat_, model.means_, model.covars_ = (
        det.startprob_,
        det.transmat_,
        det.means_,
        det.covars_,
    )
    smoothed = model.predict_proba(x)
    filtered = det.predict_proba(hours).dropna().to_numpy()
    np.testing.assert_allclose(filtered[-1], smoothed[-1], atol=1e-8)
    assert np.abs(filtered[:-100] - smoothed[:-100]).max() > 0.2
    np.testing.assert_allclose(filtered.sum(axis=1), 1.0)
    # the filter over a prefix is the prefix of the filter
    part = det.predict_proba(hours.iloc[:4000]).dropna().to_numpy()
    np.testing.assert_allclose(part, filtered[: len(part)])


def test_state_names_do_not_flip_between_refits(hours):
    """Fits on different spans and seeds: BULL is always the state of highest mean trend, BEAR
    the lowest, and BULL bars rise on average while BEAR bars fall."""
    candles = load_sample()
    for seed, span in ((0, slice("2019", "2020")), (1, slice("2021", "2022")), (2, slice("2023", "2024"))):
        det = rg.HMMRegimes(seed=seed).fit(candles.loc[span])
        assert np.all(np.diff(det.means_[:, 0]) < 0)
        feats = det.features(candles.loc[span])
        lab = det.predict(candles.loc[span])["regime"]
        assert feats["trend_z"][lab == "BULL"].mean() > 0 > feats["trend_z"][lab == "BEAR"].mean()


def _synthetic(seed: int = 0, spell: int = 400, spells: int = 24) -> tuple[pd.DataFrame, np.ndarray]:
    """Known answer: hourly prices from BULL (+0.1% per bar, calm), SIDEWAYS (flat, calm) and BEAR
    (-0.2% per bar, twice as volatile: the same trend in random-walk units) spells in a fixed random order."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.tile(np.arange(3), spells // 3 + 1))[:spells]
    truth = np.repeat(order, spell)
    drift = np.array([1e-3, 0.0, -2e-3])[truth]
    vol = np.array([4e-3, 4e-3, 8e-3])[truth]
    close = 100 * np.exp(np.cumsum(drift + vol * rng.standard_normal(len(truth))))
    high = close * np.exp(np.abs(vol * rng.standard_normal(len(truth))))
    low = close * np.exp(-np.abs(vol * rng.standard_normal(len(truth))))
    idx = pd.date_range("2020-01-01", periods=len(truth), freq="h", tz="UTC")
    candles = pd.DataFrame(
        {
            "open": np.r_[close[0], close[:-1]],
            "high": np.maximum(high, close),
            "low": np.minimum(low, close),
            "close": close,
            "volume": 1.0,
        },
        index=idx,
    )
    candles["high"] = candles[["open", "high"]].max(axis=1)
    candles["low"] = candles[["open", "low"]].min(axis=1)
    return candles, np.asarray(rg.REGIMES, dtype=object)[truth]


@pytest.mark.parametrize(("method", "floor"), [("rules", 0.6), ("hmm", 0.8)])  # chance: 1/3
def test_known_regimes_are_recovered(method, floor):
    candles, truth = _synthetic()
    labels = rg.label_history(rg.make_detector(method), candles, min_train=3200, refit_every=2400)
    got = labels["regime"].to_numpy()
    want = truth[-len(got) :]
    settled = np.r_[np.zeros(200, bool), want[200:] == want[:-200]]  # 200 bars into a spell
    assert (got[settled] == want[settled]).mean() > floor
    assert labels["confidence"].between(0, 1).all()
    # confident labels are right more often than unsure ones
    conf = labels["confidence"].to_numpy()[settled]
    right = got[settled] == want[settled]
    assert right[conf >= np.median(conf)].mean() >= right[conf < np.median(conf)].mean()


def test_rule_confidence_is_half_at_the_threshold_and_grows_past_it():
    det = rg.RuleRegimes(trend_z=1.0, adx_min=20).fit()
    margins = np.array([0.0, 0.25, 1.0])
    conf = rg.detectors._margin_confidence(margins)
    assert conf[0] == 0.5 and np.all(np.diff(conf) > 0) and conf[-1] < 1
    with pytest.raises(ValueError, match="trend_z must be > 0"):
        rg.RuleRegimes(trend_z=0).fit()
    assert det.predict(load_sample().iloc[:300])["regime"].iloc[:100].isna().all()  # window still filling


def test_forward_test_finds_real_differences_and_not_persistence():
    candles, truth = _synthetic(seed=3)
    true_labels = pd.Series(truth, index=candles.index)
    found = rg.forward_test(true_labels, candles["close"], 24, n_shifts=199)
    assert (found["p_shift"] < 0.05).all()
    # persistent labels unrelated to the prices: the shift test holds its level, the i.i.d. one does not
    rng = np.random.default_rng(0)
    false_hits, iid_hits = 0, 0
    for seed in range(12):
        other, _ = _synthetic(seed=100 + seed)
        unrelated = pd.Series(_synthetic(seed=200 + seed)[1], index=other.index)
        res = rg.forward_test(unrelated, other["close"], 24, n_shifts=99, seed=int(rng.integers(1e6)))
        false_hits += int((res["p_shift"] < 0.05).any())
        iid_hits += int((res["p_iid"] < 0.05).any())
    assert false_hits <= 3 < iid_hits


def test_statistics_and_transitions_add_up(hours):
    labels = rg.RuleRegimes().fit().predict(hours)["regime"]
    stats = rg.regime_stats(labels, hours["close"])
    assert stats["share"].sum() == pytest.approx(1.0)
    assert (stats["ret_24_lo"] <= stats["ret_24"]).all() and (stats["ret_24"] <= stats["ret_24_hi"]).all()
    trans = rg.transition_matrix(labels)
    np.testing.assert_allclose(trans.sum(axis=1), 1.0)
    runs = rg.spells(labels)
    assert (
        runs["bars"].sum() == labels.notna().sum()
        and (runs["regime"].to_numpy()[1:] != runs["regime"].to_numpy()[:-1]).all()
    )
    # the diagonal of the transition matrix is 1 - 1 / mean spell length
    for r in rg.REGIMES:
        assert trans.loc[r, r] == pytest.approx(1 - (runs["regime"] == r).sum() / (labels == r).sum(), abs=1e-3)


def test_agreement_counts_every_bar():
    a = pd.Series(["BULL", "BEAR", "SIDEWAYS", "BULL"])
    table, summary = rg.agreement(a.rename("rules"), pd.Series(["BULL", "BULL", "SIDEWAYS", "BULL"]).rename("hmm"))
    assert table.to_numpy().sum() == 4 and summary["agree"] == 0.75


def test_regime_now_is_the_last_labelled_bar_and_its_spell():
    from coffee_ml.regimes.history import regime_now

    index = pd.date_range("2025-01-01", periods=6, freq="h", tz="UTC")
    labels = pd.DataFrame(
        {
            "regime": ["BULL", "BEAR", "BEAR", "SIDEWAYS", "SIDEWAYS", None],
            "confidence": [0.5, 0.6, 0.7, 0.8, 0.7234, np.nan],
        },
        index=index,
    )
    assert regime_now(labels, "rules") == {
        "method": "rules",
        "regime": "SIDEWAYS",
        "confidence": 72.3,
        "since": index[3],
        "since_bound": False,
        "as_of": index[4],
    }
    assert regime_now(labels.iloc[3:], "hmm")["since_bound"]  # held through every labelled bar
    with pytest.raises(ValueError, match="no labelled bar"):
        regime_now(labels.iloc[5:], "rules")


@pytest.mark.parametrize("method", ["rules", "hmm"])
def test_current_regime_for_the_sidebar(method):
    now = rg.current_regime("BTCUSDT", "1h", method, history_bars=3000)
    assert now["regime"] in rg.REGIMES and 0 <= now["confidence"] <= 100
    assert now["since"] <= now["as_of"] == pd.Timestamp("2025-11-30 23:00", tz="UTC")
    with pytest.raises(ValueError, match="no NOSUCH 1h candles"):
        rg.current_regime("NOSUCH", "1h")
    with pytest.raises(ValueError, match="regime method must be one of rules, hmm"):
        rg.current_regime("BTCUSDT", "1h", "kmeans")


def test_headline_says_whether_returns_differ(hours):
    from coffee_ml import reports

    candles = load_sample().loc["2021":"2022"]
    result = rg.study(candles, "2022-01-01", method="rules", refit_every=4380, n_shifts=99)
    head = reports.regimes_headline(
        result.labels["rules"],
        result.stats,
        result.tests,
        symbol="BTCUSDT",
        interval="1h",
        method="rules",
        agreement=result.agreement,
    )
    assert head.title.startswith("BTCUSDT 1h regimes (rules): ") and "confidence, since" in head.title
    assert len([line for line in head.lines if "label-shift test" in line]) == 4
    assert head.items["p_vol_24"] == result.tests.loc[3, "p_shift"]
    flagged = any("do not tell what returns follow" in f for f in head.flags)
    assert flagged == bool((result.tests.loc[result.tests["outcome"].str.contains("return"), "p_shift"] >= 0.05).all())
