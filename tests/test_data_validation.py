"""Validation names file, row and rule; importers read the exchange's layouts and generic files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coffee_ml.data import CandleValidationError, read_files
from coffee_ml.data.importers import epoch_to_ms

DAY = "BTCUSDT-1m-2024-03-01.csv"


@pytest.fixture
def raw_lines(market_data):
    return (market_data / "binance-raw" / "2024-03" / DAY).read_text().splitlines()


def _write(tmp_path, lines, name=DAY):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _edit(lines, row, edits):
    out = list(lines)
    fields = out[row - 1].split(",")
    for col, value in edits.items():
        fields[col] = value
    out[row - 1] = ",".join(fields)
    return out


@pytest.mark.parametrize("row, edits, rule", [
    (5, {2: "61000.0"}, "high < low"),  # high below that bar's low
    (9, {1: "99999.0"}, r"open outside \[low, high\]"),
    (12, {4: "1.0"}, r"close outside \[low, high\]"),
    (20, {5: "-3.5"}, "negative volume"),
    (21, {3: "-1.0"}, "non-positive price in low"),
    (30, {8: "lots"}, "non-numeric value in trades"),
    (31, {4: ""}, "missing value in close"),
    (40, {0: "2024-03-01T00:39"}, "unparseable timestamp in open time"),
    (50, {0: "1709251260000", 6: "1709251319999"}, "non-monotonic timestamp"),
    (60, {0: "1709254770000", 6: "1709254829999"}, "timestamp not aligned to 1m bars"),
])
def test_each_rule_names_file_row_and_rule(tmp_path, raw_lines, row, edits, rule):
    path = _write(tmp_path, _edit(raw_lines, row, edits))
    with pytest.raises(CandleValidationError, match=rf"{DAY} row {row}: {rule}") as info:
        read_files([path], "1m")
    assert info.value.row == row and str(path) == info.value.source


def test_mixed_intervals_are_refused(tmp_path, raw_lines):
    # an hourly bar (close time 1h after open) in a file of minutes
    lines = _edit(raw_lines, 3, {6: str(1709251320000 + 3_600_000 - 1)})
    with pytest.raises(CandleValidationError, match=rf"{DAY} row 3: mixed intervals"):
        read_files([_write(tmp_path, lines)], "1m")
    with pytest.raises(CandleValidationError, match="mixed intervals.*1439 more row"):
        read_files([_write(tmp_path, raw_lines)], "1h")


def test_missing_columns_are_named(tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text("open_time,open,high,close\n2024-03-01 00:00,1,2,1.5\n")
    with pytest.raises(CandleValidationError, match="c.csv: missing columns .*need low, volume"):
        read_files([csv], "1m")


def test_duplicates_are_dropped_with_a_warning(tmp_path, raw_lines):
    path = _write(tmp_path, raw_lines[:10] + [raw_lines[9]] + raw_lines[10:20])
    with pytest.warns(UserWarning, match=r"dropped 1 duplicate candle\(s\) \(first at row 11\)"):
        _, frame = read_files([path], "1m")
    assert len(frame) == 20 and frame["open_time"].is_unique


def test_overlapping_files_merge_in_time_order(tmp_path, raw_lines):
    a = _write(tmp_path, raw_lines[:30], "a.csv")
    b = _write(tmp_path, raw_lines[20:50], "b.csv")
    with pytest.warns(UserWarning, match="dropped 10 candle"):
        _, frame = read_files([b, a], "1m")
    assert len(frame) == 50 and frame["open_time"].is_monotonic_increasing


def test_epoch_units_are_decided_per_value():
    stamps = np.array([1709251200, 1709251200000, 1709251200000000, 1709251200000000000])
    np.testing.assert_array_equal(epoch_to_ms(stamps), np.full(4, 1709251200000))


def test_generic_csv_with_column_mapping(tmp_path, btc_1m):
    day = btc_1m.iloc[:120]
    csv = tmp_path / "export.csv"
    pd.DataFrame({"Date": day["open_time"].dt.strftime("%Y-%m-%d %H:%M:%S"), "Open": day["open"],
                  "High": day["high"], "Low": day["low"], "Close": day["close"], "Volume BTC": day["volume"]}
                 ).to_csv(csv, index=False)
    mapping = {"Date": "open_time", "Open": "open", "High": "high", "Low": "low", "Close": "close",
               "Volume BTC": "volume"}
    _, frame = read_files([csv], "1m", fmt="csv", mapping=mapping)
    assert frame["open_time"].tolist() == day["open_time"].tolist()
    np.testing.assert_allclose(frame["close"], day["close"])
    with pytest.raises(CandleValidationError, match="mapped columns not in file.*Timestamp"):
        read_files([csv], "1m", mapping={"Timestamp": "open_time"})


def test_parquet_with_epoch_column(tmp_path, btc_1m):
    day = btc_1m.iloc[:60].copy()
    day["ts"] = day.pop("open_time").astype("int64") // 10**3 * 10**3  # microseconds since epoch
    pq = tmp_path / "candles.parquet"
    day.to_parquet(pq)
    _, frame = read_files([pq], "1m", mapping={"ts": "open_time"})
    assert frame["open_time"].iloc[0] == pd.Timestamp("2024-03-01", tz="UTC")


def test_directory_import_and_unknown_paths(tmp_path, market_data):
    files, frame = read_files([market_data / "binance-raw" / "2024-03"], "1m")
    assert len(files) == 2 and len(frame) == 2880 and frame["open_time"].is_monotonic_increasing
    with pytest.raises(FileNotFoundError, match="nope.csv: no such file"):
        read_files([tmp_path / "nope.csv"], "1m")


def test_a_whole_month_directory_imports_in_order(shared_data):
    files, frame = read_files([shared_data / "binance-raw" / "2024-03"], "1m")
    assert len(files) == 31 and len(frame) == 44640 and frame["open_time"].is_monotonic_increasing


def test_a_jump_forward_blames_the_row_that_jumped(tmp_path, raw_lines):
    # row 20 jumps 10 minutes ahead, row 21 is back on schedule: row 20 is the bad one
    lines = _edit(raw_lines, 20, {0: str(1709251200000 + 29 * 60000), 6: str(1709251200000 + 30 * 60000 - 1)})
    with pytest.raises(CandleValidationError, match=rf"{DAY} row 20: non-monotonic timestamp "
                                                     r"\(2024-03-01 00:20:00\+00:00 comes before 2024-03-01 00:29"):
        read_files([_write(tmp_path, lines)], "1m")


def test_binance_files_with_a_header_keep_every_column(tmp_path, raw_lines):
    header = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
              "taker_buy_quote_volume,ignore")
    path = _write(tmp_path, [header] + raw_lines[:30])
    _, frame = read_files([path], "1m")
    assert frame["trades"].iloc[0] == 1634 and frame["taker_buy_base"].notna().all()
    with pytest.raises(CandleValidationError, match=rf"{DAY} row 2: mixed intervals"):
        read_files([path], "1h")
