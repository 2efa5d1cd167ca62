"""The candle store on both backends: round-trips, upserts, SQL resampling, coverage, gaps, injection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coffee_ml.data import CANDLE_COLUMNS, CandleValidationError, load_sample

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _week(btc_1m: pd.DataFrame, days: int = 7) -> pd.DataFrame:
    return btc_1m[btc_1m["open_time"] < btc_1m["open_time"].iloc[0] + pd.Timedelta(days=days)].copy()


def test_round_trip_keeps_every_value(store, btc_1m):
    week = _week(btc_1m, 2)
    report = store.write_candles(week, "BTCUSDT", "1m")
    assert (report.rows, report.added, report.replaced) == (len(week), len(week), 0)
    loaded = store.load_candles("BTCUSDT", "1m")
    assert list(loaded.columns) == list(CANDLE_COLUMNS[1:])
    assert str(loaded.index.dtype) == "datetime64[ms, UTC]"
    expected = week.set_index("open_time").astype("float64")
    pd.testing.assert_frame_equal(loaded, expected, check_names=False, check_freq=False)


def test_range_is_start_inclusive_end_exclusive(store, btc_1m):
    store.write_candles(_week(btc_1m, 1), "BTCUSDT", "1m")
    part = store.load_candles("BTCUSDT", "1m", "2024-03-01 01:00", pd.Timestamp("2024-03-01 02:00", tz="UTC"))
    assert len(part) == 60
    assert part.index[0] == pd.Timestamp("2024-03-01 01:00", tz="UTC")
    assert part.index[-1] == pd.Timestamp("2024-03-01 01:59", tz="UTC")
    assert store.load_candles("BTCUSDT", "5m").empty and store.load_candles("ETHUSDT", "1m").empty


def test_reimport_never_duplicates_and_newest_wins(store, btc_1m):
    day = _week(btc_1m, 1)
    store.write_candles(day, "BTCUSDT", "1m")
    corrected = day.copy()
    corrected.loc[corrected.index[:10], "volume"] += 1.0
    report = store.write_candles(corrected, "BTCUSDT", "1m")
    assert (report.added, report.replaced) == (0, len(day))
    loaded = store.load_candles("BTCUSDT", "1m")
    assert len(loaded) == len(day)
    np.testing.assert_allclose(loaded["volume"].to_numpy(), corrected["volume"].to_numpy())
    assert store.list_symbols()["rows"].tolist() == [len(day)]


@pytest.mark.parametrize("interval", ["5m", "15m", "1h", "4h", "1d"])
def test_sql_resample_matches_pandas_ohlc(store, btc_1m, interval):
    store.write_candles(btc_1m, "BTCUSDT", "1m")
    got = store.resample("BTCUSDT", "1m", interval)
    src = btc_1m.set_index("open_time")
    rule = {"5m": "5min", "15m": "15min", "1h": "1h", "4h": "4h", "1d": "24h"}[interval]
    ref = src.resample(rule, origin="epoch").agg(
        {
            "open": "first",
            "high": "max",
            "low": "min",
            "close": "last",
            "volume": "sum",
            "quote_volume": "sum",
            "trades": "sum",
            "taker_buy_base": "sum",
            "taker_buy_quote": "sum",
        }
    )
    ref["bars"] = src["open"].resample(rule, origin="epoch").count()
    ref = ref[ref["bars"] > 0]
    assert len(got) == len(ref)
    np.testing.assert_array_equal(got.index.asi8, ref.index.as_unit("ms").asi8)
    for col in ref.columns:
        np.testing.assert_allclose(got[col].to_numpy(), ref[col].to_numpy(dtype="float64"), rtol=1e-12, err_msg=col)


def test_resampled_hours_match_exchange_hourly_candles(store, btc_1m):
    """1m -> 1h in SQL reproduces the independent hourly history (the bundled sample) for the same days."""
    store.write_candles(btc_1m, "BTCUSDT", "1m")
    got = store.resample("BTCUSDT", "1m", "1h", complete_only=True)
    ref = load_sample().loc[got.index[0] : got.index[-1]]
    assert len(got) == len(ref) == len(btc_1m) // 60
    for col in ("open", "high", "low", "close", "volume", "trades"):
        np.testing.assert_allclose(got[col].to_numpy(), ref[col].to_numpy(dtype="float64"), rtol=1e-9, err_msg=col)


def test_resample_refuses_finer_or_misaligned_targets(store):
    with pytest.raises(ValueError, match="cannot resample 1h to 1m"):
        store.resample("BTCUSDT", "1h", "1m")
    with pytest.raises(ValueError, match="unknown interval '7m'"):
        store.resample("BTCUSDT", "1m", "7m")


def test_incomplete_buckets_are_flagged_not_hidden(store, btc_1m):
    day = _week(btc_1m, 1)
    holed = day.drop(day.index[30:45])  # 15 minutes missing inside the first hour
    store.write_candles(holed, "BTCUSDT", "1m")
    hours = store.resample("BTCUSDT", "1m", "1h")
    assert hours["bars"].iloc[0] == 45 and (hours["bars"].iloc[1:] == 60).all()
    assert len(store.resample("BTCUSDT", "1m", "1h", complete_only=True)) == 23


def test_list_symbols_reports_coverage(store, btc_1m, market_data):
    store.write_candles(_week(btc_1m, 1), "BTCUSDT", "1m")
    eth = pd.read_parquet(market_data / "ETHUSDC-1h-first500.parquet")
    store.write_candles(eth, "ETHUSDC", "1h")
    table = store.list_symbols()
    assert table[["symbol", "interval"]].values.tolist() == [["BTCUSDT", "1m"], ["ETHUSDC", "1h"]]
    assert table["rows"].tolist() == [1440, 500]
    eth_missing = int((pd.Series(eth["open_time"]).diff().dt.total_seconds().div(3600).fillna(1) - 1).sum())
    assert table["missing"].tolist() == [0, eth_missing]
    assert table.loc[1, "first"] == eth["open_time"].iloc[0]


def test_optional_columns_absent_in_source_load_as_nan(store, market_data):
    eth = pd.read_parquet(market_data / "ETHUSDC-1h-first500.parquet").iloc[:100]
    store.write_candles(eth, "ETHUSDC", "1h")
    loaded = store.load_candles("ETHUSDC", "1h")
    assert loaded["taker_buy_base"].isna().all() and loaded["taker_buy_quote"].isna().all()
    np.testing.assert_array_equal(loaded["trades"].to_numpy(), eth["trades"].to_numpy(dtype="float64"))


def test_gap_report_lists_every_missing_range(store, btc_1m):
    day = _week(btc_1m, 1)
    holed = day.drop(day.index[list(range(100, 103)) + [500] + list(range(1000, 1100))])
    store.write_candles(holed, "BTCUSDT", "1m")
    gaps = store.gaps("BTCUSDT", "1m")
    t0 = day["open_time"].iloc[0]
    minute = pd.Timedelta(minutes=1)
    assert gaps["gap_start"].tolist() == [t0 + 100 * minute, t0 + 500 * minute, t0 + 1000 * minute]
    assert gaps["gap_end"].tolist() == [t0 + 102 * minute, t0 + 500 * minute, t0 + 1099 * minute]
    assert gaps["missing_bars"].tolist() == [3, 1, 100]
    # with explicit bounds, the missing bars before the first and after the last candle count too
    bounded = store.gaps("BTCUSDT", "1m", t0 - 5 * minute, t0 + pd.Timedelta(days=1) + 2 * minute)
    assert bounded["missing_bars"].tolist() == [5, 3, 1, 100, 2]
    # never a misleading "no gaps": an unknown symbol or a reversed range is an error
    with pytest.raises(ValueError, match="no NOSUCH 1m candles stored"):
        store.gaps("NOSUCH", "1m", t0, t0 + pd.Timedelta(days=1))
    with pytest.raises(ValueError, match="is not before end"):
        store.gaps("BTCUSDT", "1m", t0 + pd.Timedelta(days=1), t0)


def test_gap_report_on_real_hourly_history(store):
    hourly = load_sample().reset_index()
    store.write_candles(hourly, "BTCUSDT", "1h")
    gaps = store.gaps("BTCUSDT", "1h")
    step = hourly["open_time"].diff().dt.total_seconds().div(3600)
    assert len(gaps) == int((step > 1).sum()) > 0
    assert gaps["missing_bars"].sum() == int((step[step > 1] - 1).sum())
    assert gaps["missing_bars"].max() == 33  # the longest exchange outage in the hourly history


@pytest.mark.parametrize(
    "evil",
    [
        "BTCUSDT' OR '1'='1",
        "BTCUSDT'; DROP TABLE candles; --",
        "x' UNION ALL SELECT * FROM system.tables --",
        "\\'; SELECT 1; --",
    ],
)
def test_sql_injection_through_symbol_is_inert(store, btc_1m, evil):
    store.write_candles(_week(btc_1m, 1), "BTCUSDT", "1m")
    assert store.load_candles(evil, "1m").empty
    assert store.resample(evil, "1m", "1h").empty
    with pytest.raises(ValueError, match="candles stored"):  # an unknown symbol, not "no gaps"
        store.gaps(evil, "1m")
    assert len(store.load_candles("BTCUSDT", "1m")) == 1440
    with pytest.raises(ValueError, match="symbol .* is invalid"):
        store.write_candles(_week(btc_1m, 1), evil, "1m")


def test_binance_raw_ms_and_us_files(store, market_data):
    raw = market_data / "binance-raw"
    march = sorted((raw / "2024-03").glob("*.csv"))
    report = store.import_files(march + [raw / "BTCUSDT-1m-2025-06-01.csv"], "BTCUSDT", "1m")
    assert (report.files, report.rows, report.added) == (3, 2 * 1440 + 1440, 2 * 1440 + 1440)
    june = store.load_candles("BTCUSDT", "1m", "2025-06-01", "2025-06-02")
    assert len(june) == 1440 and june.index[0] == pd.Timestamp("2025-06-01", tz="UTC")
    assert june["open"].iloc[0] == 104591.88 and june["trades"].iloc[0] == 1136
    assert store.load_candles("BTCUSDT", "1m", "2024-03-01", "2024-03-02")["open"].iloc[0] == 61130.99


def test_bad_file_in_a_batch_imports_nothing(store, btc_1m, market_data, tmp_path):
    store.write_candles(btc_1m.iloc[:60], "BTCUSDT", "1m")
    good = market_data / "binance-raw" / "2024-03" / "BTCUSDT-1m-2024-03-02.csv"
    lines = good.read_text().splitlines()
    fields = lines[7].split(",")
    fields[3] = str(float(fields[2]) + 100)  # low above high
    bad = tmp_path / "BTCUSDT-1m-2024-03-03.csv"
    bad.write_text("\n".join(lines[:7] + [",".join(fields)] + lines[8:]) + "\n")
    with pytest.raises(CandleValidationError, match=r"BTCUSDT-1m-2024-03-03.csv row 8: high < low"):
        store.import_files([good, bad], "BTCUSDT", "1m")
    assert len(store.load_candles("BTCUSDT", "1m")) == 60
