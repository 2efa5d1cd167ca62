"""Feature registry, feature values and input checks, on slices of the real BTCUSDT sample.

Includes cross-checks of TA-Lib indicators against independent pandas formulas (Wilder
smoothing, EMAs, mean absolute deviation) written here, compared after warm-up convergence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from coffee_ml.data.sample import load_sample
from coffee_ml.features import (
    FEATURES,
    GROUPS,
    CandleInputError,
    compute_features,
    select_features,
)

REQUIRED = {
    "price": ["ret_1", "logret_1", "logret_6", "price_change", "mom_10", "mom_20", "roc_10"],
    "trend": [
        "rsi_14",
        "macd_line",
        "macd_signal",
        "macd_hist",
        "bb_upper_dist",
        "bb_lower_dist",
        "bb_width",
        "bb_pctb",
        "stoch_k",
        "stoch_d",
        "willr_14",
        "cci_20",
        "adx_14",
        "plus_di_14",
        "minus_di_14",
        "sma_10_ratio",
        "sma_20_ratio",
        "sma_50_ratio",
        "ema_10_ratio",
        "ema_20_ratio",
        "ema_50_ratio",
    ],
    "volatility": ["atr_14", "atr_14_rel", "hv_20", "hv_60", "parkinson_20", "garman_klass_20"],
    "volume": ["obv_chg_20", "mfi_14", "vol_sma_ratio_20", "vol_ema_ratio_20", "vol_mom_10", "vol_zscore_20"],
    "orderflow": ["taker_buy_ratio", "taker_buy_ratio_z_20", "trades_z_20"],
    "calendar": ["hour_sin", "hour_cos", "dow_sin", "dow_cos"],
}


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return load_sample().iloc[-6000:]


@pytest.fixture(scope="module")
def features(candles: pd.DataFrame) -> pd.DataFrame:
    return compute_features(candles, features=FEATURES.names())


def test_registry_has_required_features_with_descriptions() -> None:
    assert len(FEATURES.names(scale_free_only=True)) >= 40
    for group, names in REQUIRED.items():
        assert set(names) <= set(FEATURES.names(group)), group
    table = FEATURES.describe()
    assert set(table["group"]) == set(GROUPS)
    assert table["description"].str.len().min() > 10
    assert not table["description"].str.contains("\n").any()


def test_selection_by_name_and_group() -> None:
    default = FEATURES.select()
    assert "atr_14" not in default and "atr_14_rel" in default  # price-level ATR never by default
    assert FEATURES.select(groups=["calendar"]) == ["hour_sin", "hour_cos", "dow_sin", "dow_cos"]
    assert FEATURES.select(features=["rsi_14", "atr_14"], groups=["calendar"]) == [
        "rsi_14",
        "atr_14",
        "hour_sin",
        "hour_cos",
        "dow_sin",
        "dow_cos",
    ]
    with pytest.raises(KeyError, match="unknown feature 'rsi_99'"):
        FEATURES.select(features=["rsi_99"])
    with pytest.raises(ValueError, match="unknown feature group"):
        FEATURES.select(groups=["vibes"])


def test_declared_lookback_matches_leading_nans_and_values_are_finite(features: pd.DataFrame) -> None:
    values = features.to_numpy()
    first_valid = np.argmax(~np.isnan(values), axis=0)
    declared = np.array([FEATURES[n].lookback for n in features.columns])
    mismatched = {n: (int(a), int(d)) for n, a, d in zip(features.columns, first_valid, declared) if a != d}
    assert not mismatched
    after = np.concatenate([values[d:, j] for j, d in enumerate(declared)])
    assert np.isfinite(after).all()


def test_scale_free_features_do_not_change_when_prices_are_rescaled(
    candles: pd.DataFrame, features: pd.DataFrame
) -> None:
    scaled = candles.copy()
    scaled[["open", "high", "low", "close"]] *= 1000.0
    rescaled = compute_features(scaled, features=FEATURES.names())
    for name in features.columns:
        same = np.allclose(features[name], rescaled[name], rtol=1e-7, atol=1e-9, equal_nan=True)
        assert same == FEATURES[name].scale_free, name


def test_order_flow_skipped_without_taker_columns(candles: pd.DataFrame) -> None:
    no_flow = candles.drop(columns=["taker_buy_base", "taker_buy_quote"]).assign(trades=np.nan)
    selection = select_features(no_flow)
    assert set(selection.skipped) == set(FEATURES.names("orderflow"))
    assert "absent or all-NaN" in selection.skipped["trades_z_20"]
    assert not set(FEATURES.names("orderflow")) & set(compute_features(no_flow).columns)
    with pytest.raises(CandleInputError, match="taker_buy_ratio.*taker_buy_base"):
        compute_features(no_flow, features=["taker_buy_ratio"])


def test_real_ethusdc_without_taker_columns(market_data: Path) -> None:
    raw = pd.read_parquet(market_data / "ETHUSDC-1h-first500.parquet")
    eth = raw.assign(
        open_time=raw["open_time"].astype("datetime64[ms, UTC]"), trades=raw["trades"].astype("float64")
    ).set_index("open_time")
    out = compute_features(eth)
    assert "trades_z_20" in out and "taker_buy_ratio" not in out
    assert np.isfinite(out.iloc[60:].to_numpy()).all()


def test_bad_inputs_are_reported_by_column_and_count(candles: pd.DataFrame) -> None:
    bad = candles.copy()
    bad.iloc[[10, 20, 30], bad.columns.get_loc("close")] = np.nan
    bad.iloc[5, bad.columns.get_loc("volume")] = np.inf
    bad.iloc[7, bad.columns.get_loc("low")] = 0.0
    with pytest.raises(CandleInputError) as err:
        compute_features(bad)
    assert err.value.problems == {"close": "3 NaN", "volume": "1 inf", "low": "1 <= 0"}


def test_too_short_input_says_how_many_rows(candles: pd.DataFrame) -> None:
    with pytest.raises(CandleInputError, match="need at least 61 rows.*got 40"):
        compute_features(candles.iloc[:40], features=["hv_60"])


def test_calendar_features_on_known_times() -> None:
    index = pd.DatetimeIndex(["2024-03-04 06:00", "2024-03-10 18:00"], tz="UTC")  # Monday, Sunday
    frame = pd.DataFrame({c: [1.0, 1.0] for c in ("open", "high", "low", "close", "volume")}, index=index)
    cal = compute_features(frame, groups=["calendar"])
    np.testing.assert_allclose(cal["hour_sin"], [1.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(cal["dow_sin"], [0.0, np.sin(2 * np.pi * 6 / 7)], atol=1e-12)
    np.testing.assert_allclose(cal["dow_cos"], [1.0, np.cos(2 * np.pi * 6 / 7)], atol=1e-12)


# ------------------------------------------------------------------ independent formulas


def wilder(x: pd.Series, n: int) -> pd.Series:
    """Wilder's smoothing (an EMA with alpha = 1/n)."""
    return x.ewm(alpha=1.0 / n, adjust=False).mean()


def true_range(c: pd.DataFrame) -> pd.Series:
    prev = c["close"].shift()
    return pd.concat([c["high"] - c["low"], (c["high"] - prev).abs(), (c["low"] - prev).abs()], axis=1).max(axis=1)


def ref_rsi(close: pd.Series, n: int = 14) -> pd.Series:
    delta = close.diff().fillna(0.0)
    gain, loss = wilder(delta.clip(lower=0), n), wilder(-delta.clip(upper=0), n)
    return 100.0 * gain / (gain + loss)


def ref_adx(c: pd.DataFrame, n: int = 14) -> pd.DataFrame:
    up, down = c["high"].diff(), -c["low"].diff()
    plus_dm = up.where((up > down) & (up > 0), 0.0)
    minus_dm = down.where((down > up) & (down > 0), 0.0)
    tr = wilder(true_range(c), n)
    plus_di, minus_di = 100 * wilder(plus_dm, n) / tr, 100 * wilder(minus_dm, n) / tr
    dx = 100 * (plus_di - minus_di).abs() / (plus_di + minus_di)
    return pd.DataFrame({"plus_di_14": plus_di, "minus_di_14": minus_di, "adx_14": wilder(dx, n)})


def ref_cci(c: pd.DataFrame, n: int = 20) -> pd.Series:
    tp = ((c["high"] + c["low"] + c["close"]) / 3).to_numpy()
    windows = sliding_window_view(tp, n)
    mean = windows.mean(axis=1)
    mad = np.abs(windows - mean[:, None]).mean(axis=1)
    out = np.full(len(tp), np.nan)
    out[n - 1 :] = (tp[n - 1 :] - mean) / (0.015 * mad)
    return pd.Series(out, index=c.index)


def test_indicators_match_independent_formulas_after_warmup(candles: pd.DataFrame, features: pd.DataFrame) -> None:
    settled = slice(3000, None)  # EMA/Wilder seeds differ; (13/14)^3000 makes that invisible
    close = candles["close"]
    ema = {n: close.ewm(span=n, adjust=False).mean() for n in (12, 26)}
    macd = ema[12] - ema[26]
    expected = {
        "rsi_14": ref_rsi(close),
        "atr_14": wilder(true_range(candles), 14),
        "cci_20": ref_cci(candles),
        "macd_line": macd / close,
        "macd_signal": macd.ewm(span=9, adjust=False).mean() / close,
        **ref_adx(candles),
    }
    for name, ref in expected.items():
        np.testing.assert_allclose(
            features[name].to_numpy()[settled], ref.to_numpy()[settled], rtol=1e-6, atol=1e-9, err_msg=name
        )


def test_volatility_features_match_definitions(candles: pd.DataFrame, features: pd.DataFrame) -> None:
    logret = np.log(candles["close"]).diff()
    hl = np.log(candles["high"] / candles["low"]) ** 2
    co = np.log(candles["close"] / candles["open"]) ** 2
    expected = {
        "hv_20": logret.rolling(20).std(),
        "hv_60": logret.rolling(60).std(),
        "parkinson_20": np.sqrt(hl.rolling(20).mean() / (4 * np.log(2))),
        "garman_klass_20": np.sqrt((0.5 * hl - (2 * np.log(2) - 1) * co).rolling(20).mean()),
        "vol_zscore_20": (candles["volume"] - candles["volume"].rolling(20).mean())
        / candles["volume"].rolling(20).std(ddof=0),
    }
    for name, ref in expected.items():
        np.testing.assert_allclose(
            features[name].to_numpy()[100:], ref.to_numpy()[100:], rtol=1e-6, atol=1e-10, err_msg=name
        )
