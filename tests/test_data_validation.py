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


@pytest.mark.parametrize(
    "row, edits, rule",
    [
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
    ],
)
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
    pd.DataFrame(
        {
            "Date": day["open_time"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "Open": day["open"],
            "High": day["high"],
            "Low": day["low"],
            "Close": day["close"],
            "Volume BTC": day["volume"],
        }
    ).to_csv(csv, index=False)
    mapping = {
        "Date": "open_time",
        "Open": "open",
        "High": "high",
        "Low": "low",
        "Close": "close",
        "Volume BTC": "volume",
    }
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
    with pytest.raises(
        CandleValidationError,
        match=rf"{DAY} row 20: non-monotonic timestamp "
        r"\(2024-03-01 00:20:00\+00:00 comes before 2024-03-01 00:29",
    ):
        read_files([_write(tmp_path, lines)], "1m")


def test_binance_files_with_a_header_keep_every_column(tmp_path, raw_lines):
    header = (
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
        "taker_buy_quote_volume,ignore"
    )
    path = _write(tmp_path, [header] + raw_lines[:30])
    _, frame = read_files([path], "1m")
    assert frame["trades"].iloc[0] == 1634 and frame["taker_buy_base"].notna().all()
    with pytest.raises(CandleValidationError, match=rf"{DAY} row 2: mixed intervals"):
        read_files([path], "1h")


# ------------------------------------------------------------------------------------------------
# Bad input named by file, row and rule (issue 10): unreadable files, overflow, out-of-range times,
# spacing that contradicts the declared interval, conflicting duplicates.


def test_a_line_with_extra_fields_names_file_and_line(tmp_path, raw_lines):
    lines = list(raw_lines)
    lines[99] += ",extra"
    with pytest.raises(CandleValidationError, match=rf"{DAY} row 100: wrong number of fields \(expected 12, saw 13\)"):
        read_files([_write(tmp_path, lines)], "1m")
    # inside a directory import the file is named too
    folder = tmp_path / "month"
    folder.mkdir()
    _write(folder, raw_lines, "BTCUSDT-1m-2024-02-29.csv")
    _write(folder, lines)
    with pytest.raises(CandleValidationError, match=rf"month/{DAY} row 100: wrong number of fields"):
        read_files([folder], "1m")


@pytest.mark.parametrize(
    "content, rule", [(b"", "empty file"), (b"\n\n", "empty file"), (b"\xff\xfe\x00o\x00p\x00e\x00n", "not UTF-8 text")]
)
def test_empty_and_binary_files_are_named(tmp_path, content, rule):
    path = tmp_path / "broken.csv"
    path.write_bytes(content)
    with pytest.raises(CandleValidationError, match=rf"broken.csv: {rule}"):
        read_files([path], "1m")


def test_gzipped_dumps_are_read_transparently(tmp_path, raw_lines):
    import gzip

    plain = "\n".join(raw_lines[:30]) + "\n"
    named = tmp_path / f"{DAY}.gz"
    named.write_bytes(gzip.compress(plain.encode()))
    disguised = tmp_path / "disguised" / DAY  # compressed, but saved without its .gz
    disguised.parent.mkdir()
    disguised.write_bytes(gzip.compress(plain.encode()))
    _, expected = read_files([_write(tmp_path / "disguised", raw_lines[:30], "plain.csv")], "1m")
    for path in (named, disguised, tmp_path):  # the directory picks up the .csv.gz
        _, frame = read_files([path], "1m")
        pd.testing.assert_frame_equal(frame, expected)


def test_a_byte_order_mark_does_not_hide_a_binance_dump(tmp_path, raw_lines):
    path = tmp_path / DAY
    path.write_text("\ufeff" + "\n".join(raw_lines[:30]) + "\n", encoding="utf-8")
    _, frame = read_files([path], "1m")
    assert len(frame) == 30 and frame["open_time"].iloc[0] == pd.Timestamp("2024-03-01", tz="UTC")
    with pytest.raises(CandleValidationError, match=rf"{DAY} row 1: mixed intervals"):
        read_files([path], "1h")  # detected as Binance: its close times are checked


def test_a_trade_count_too_large_to_store_is_refused(tmp_path, raw_lines):
    path = _write(tmp_path, _edit(raw_lines, 7, {8: "1e30"}))
    with pytest.raises(CandleValidationError, match=rf"{DAY} row 7: trades too large \(trades=1e\+30"):
        read_files([path], "1m")


@pytest.mark.parametrize("stamp", ["13569465600000", "13569465600", "-62135596800000", "1e30"])
def test_epoch_stamps_outside_the_supported_range_name_the_row(tmp_path, raw_lines, stamp):
    # year 2400 in ms and in s, year 1 in ms, and a number beyond int64
    path = _write(tmp_path, _edit(raw_lines, 15, {0: stamp}))
    with pytest.raises(CandleValidationError, match=rf"{DAY} row 15: open time outside the supported range"):
        read_files([path], "1m")


@pytest.mark.parametrize("when", ["1850-01-01 00:00", "2250-01-01 00:00", "2008-12-31 23:59"])
def test_candles_outside_2009_to_2100_are_refused(tmp_path, btc_1m, when):
    from coffee_ml.data.schema import MAX_OPEN_TIME, MIN_OPEN_TIME

    assert (MIN_OPEN_TIME.year, MAX_OPEN_TIME.year) == (2009, 2100)
    day = btc_1m.iloc[:5].copy()
    day["open_time"] = day["open_time"].dt.strftime("%Y-%m-%d %H:%M")
    day.loc[3, "open_time"] = when
    csv = tmp_path / "old.csv"
    day.to_csv(csv, index=False)
    with pytest.raises(CandleValidationError, match=r"old.csv row 5: open_time outside the supported range"):
        read_files([csv], "1m")


def test_mapping_two_columns_onto_one_is_refused(tmp_path, btc_1m):
    csv = tmp_path / "both.csv"
    day = btc_1m.iloc[:10].copy()
    day["Date"] = day["open_time"]
    day.to_csv(csv, index=False)
    with pytest.raises(
        CandleValidationError,
        match=r"both.csv: conflicting column mapping \(open_time and Date would both become open_time\)",
    ):
        read_files([csv], "1m", mapping={"Date": "open_time"})


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_hourly_data_declared_as_minutes_is_refused(tmp_path, market_data, fmt):
    hourly = pd.read_parquet(market_data / "ETHUSDC-1h-first500.parquet")
    path = tmp_path / f"eth.{fmt}"
    hourly.to_parquet(path) if fmt == "parquet" else hourly.to_csv(path, index=False)
    _, frame = read_files([path], "1h")
    assert len(frame) == 500
    with pytest.raises(
        CandleValidationError,
        match=r"eth\.\w+ row \d+: interval mismatch: data is not 1m bars "
        r"\(candles are at least 3600s apart",
    ):
        read_files([path], "1m")


def test_hours_hidden_in_minutes_are_refused(btc_1m):
    from coffee_ml.data.schema import validate_candles

    # the timestamps are whole hours (aligned to minutes too), declared 1m: no two candles a minute apart
    hours = btc_1m.iloc[::60].iloc[:10]
    with pytest.raises(CandleValidationError, match=r"<data> row 2: interval mismatch"):
        validate_candles(hours.reset_index(drop=True), "1m")
    assert len(validate_candles(btc_1m.iloc[[0, 1, 5, 9]].reset_index(drop=True), "1m")) == 4  # gaps are fine


def test_conflicting_duplicates_are_an_error(tmp_path, raw_lines):
    path = _write(tmp_path, raw_lines[:10] + [_edit(raw_lines, 10, {5: "1.5"})[9]] + raw_lines[10:20])
    with pytest.raises(
        CandleValidationError,
        match=rf"{DAY} row 11: conflicting duplicate candles "
        r"\(open_time 2024-03-01 00:09:00\+00:00 .*first at row 10",
    ):
        read_files([path], "1m")


def test_overlapping_files_that_disagree_are_an_error(tmp_path, raw_lines):
    a = _write(tmp_path, raw_lines[:30], "a.csv")
    b = _write(tmp_path, _edit(raw_lines, 25, {5: "1.5"})[20:50], "b.csv")
    with pytest.raises(
        CandleValidationError,
        match=r"b.csv: conflicting duplicate candles \(open_time "
        r"2024-03-01 00:24:00\+00:00 differs from the candle in .*a.csv",
    ):
        read_files([a, b], "1m")


def test_bad_input_is_one_line_and_stores_nothing(capsys, tmp_path, raw_lines, btc_1m):
    """From the shell: exit 1, one line naming file/row/parameter and rule, the store unchanged."""
    from coffee_ml.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    good = _write(tmp_path, raw_lines[:60], "good.csv")
    assert run("import", good, "--symbol", "BTCUSDT", "--interval", "1m")[0] == 0
    before = run("data", "list")[1]
    extra = list(raw_lines)
    extra[99] += ",x"
    both = tmp_path / "both.csv"
    frame = btc_1m.iloc[:10].copy()
    frame["Date"] = frame["open_time"]
    frame.to_csv(both, index=False)
    hourly = tmp_path / "hourly.parquet"
    btc_1m.iloc[::60].to_parquet(hourly)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    imp = ("import", "--symbol", "BTCUSDT", "--interval", "1m")
    cases = [
        ((*imp, _write(tmp_path, extra, "extra.csv")), "extra.csv row 100: wrong number of fields"),
        ((*imp, empty), "empty.csv: empty file"),
        (
            (*imp, _write(tmp_path, _edit(raw_lines, 7, {8: "1e30"}), "trades.csv")),
            "trades.csv row 7: trades too large",
        ),
        ((*imp, both, "--format", "csv", "--map", "Date=open_time"), "both.csv: conflicting column mapping"),
        (
            (*imp, _write(tmp_path, _edit(raw_lines, 4, {0: "13569465600000"}), "y2400.csv")),
            "y2400.csv row 4: open time outside the supported range",
        ),
        ((*imp, hourly), "hourly.parquet row 2: interval mismatch"),
        (
            ("data", "gaps", "BTCUSDT", "--interval", "1m", "--start", "0001-01-01"),
            "'0001-01-01' (--start/--end) is out of range",
        ),
        (
            ("data", "gaps", "BTCUSDT", "--interval", "1m", "--end", "9999-12-31"),
            "'9999-12-31' (--start/--end) is out of range",
        ),
    ]
    for argv, message in cases:
        code, out, err = run(*argv)
        assert code == 1 and out == "", (argv, out, err)
        assert err.count("\n") == 1 and err.startswith("coffee-ml: error: ") and message in err, (argv, err)
    assert run("data", "list")[1] == before


# ------------------------------------------------ bars cut short by an exchange outage (issue 20, 8)
OUTAGE = "binance-outage"  # two cut-down outage days in the dump's layout (tests/fixtures/cut.py)


def test_a_bar_cut_short_by_an_outage_is_kept_with_one_warning(market_data):
    """2020-02-19: the last bar before the 11:08-16:59 outage closes 32.287 s after it opens."""
    with pytest.warns(UserWarning) as caught:
        files, frame = read_files([market_data / OUTAGE], "1m")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "\n" not in messages[0]  # one warning, one line, naming every partial bar
    assert "kept 2 partial bar(s) shorter than 1m" in messages[0]
    assert "BTCUSDT-1m-2020-02-19.csv row 8 (open 2020-02-19 11:07 UTC, spans 32.287s)" in messages[0]
    assert "BTCUSDT-1m-2021-04-25.csv row 3 (open 2021-04-25 04:02 UTC, spans 4.815s)" in messages[0]
    assert len(files) == 2 and len(frame) == 22  # every bar kept, the partial ones too
    times = frame["open_time"]
    assert pd.Timestamp("2020-02-19 11:07", tz="UTC") in set(times)
    assert (times.diff().dropna() > pd.Timedelta(minutes=1)).sum() == 3  # two outages and the year between


def test_the_next_file_may_start_after_the_outage_and_a_directory_imports_whole(tmp_path, market_data):
    """The dump split at the outage: the first file ends in the partial bar, the next resumes at 17:00;
    a directory holding them with an ordinary day imports whole."""
    lines = (market_data / OUTAGE / "BTCUSDT-1m-2020-02-19.csv").read_text().splitlines()
    _write(tmp_path, lines[:8], "BTCUSDT-1m-2020-02-19-a.csv")
    _write(tmp_path, lines[8:], "BTCUSDT-1m-2020-02-19-b.csv")
    (tmp_path / DAY).write_text((market_data / "binance-raw" / "2024-03" / DAY).read_text())
    with pytest.warns(UserWarning, match=r"kept 1 partial bar\(s\).*2020-02-19-a.csv row 8 .*spans 32.287s"):
        files, frame = read_files([tmp_path], "1m")
    assert len(files) == 3 and len(frame) == 14 + 1440


def test_the_gap_report_shows_the_outage_after_a_partial_bar(tmp_path, market_data):
    from coffee_ml.data import open_store

    store = open_store("embedded", path=tmp_path / "store", load_sample=False)
    with pytest.warns(UserWarning, match="partial bar"):
        report = store.import_files([market_data / OUTAGE], "BTCUSDT", "1m")
    assert report.rows == 22
    gaps = store.gaps("BTCUSDT", "1m", "2020-02-19 11:00", "2020-02-19 17:06")
    assert gaps[["gap_start", "gap_end"]].astype(str).values.tolist() == [
        ["2020-02-19 11:08:00+00:00", "2020-02-19 16:59:00+00:00"]
    ]
    assert gaps["missing_bars"].tolist() == [352]


@pytest.mark.parametrize(
    "case, edit, detail",
    [
        # five-minute bars declared as one minute: longer, never accepted
        ("5m bars", lambda l, r: _edit(l, r, {6: str(int(l[r - 1].split(",")[0]) + 300_000 - 1)}), r"bar spans 300s"),
        # a short bar in the middle of trading (the next bar follows at once): not an outage
        (
            "short, no gap",
            lambda l, r: _edit(l, r, {6: str(int(l[r - 1].split(",")[0]) + 32_286)}),
            r"bar spans 32.287s, 1m is 60s; a shorter bar is accepted only as the last before an outage",
        ),
        # a short bar that opens off the minute grid, before a gap
        (
            "short, off grid",
            lambda l, r: _edit(
                l, r, {0: str(int(l[r - 1].split(",")[0]) + 1000), 6: str(int(l[r - 1].split(",")[0]) + 32_286)}
            )[:r],
            r"bar spans 31.287s",
        ),
        # a bar that closes before it opens
        ("negative", lambda l, r: _edit(l, r, {6: str(int(l[r - 1].split(",")[0]) - 2_100_001)}), r"bar spans -2100s"),
    ],
)
def test_only_a_truncated_last_bar_before_a_gap_is_accepted(tmp_path, raw_lines, case, edit, detail):
    path = _write(tmp_path, edit(raw_lines, 30))
    with pytest.raises(
        CandleValidationError,
        match=rf"{DAY} row 30: mixed intervals: bar length differs from 1m "
        rf"\({detail}",
    ):
        read_files([path], "1m")


def test_every_bar_of_another_interval_is_still_refused(tmp_path, market_data):
    """All bars 5 minutes long, open on the 5-minute grid, in a 1m import: refused, not 'partial'."""
    rows = (market_data / OUTAGE / "BTCUSDT-1m-2020-02-19.csv").read_text().splitlines()
    five = []
    for k, line in enumerate(rows[:6]):
        f = line.split(",")
        f[0] = str(1582110000000 + k * 300_000)
        f[6] = str(int(f[0]) + 300_000 - 1)
        five.append(",".join(f))
    with pytest.raises(CandleValidationError, match=r"five.csv row 1: mixed intervals.*bar spans 300s.*5 more row"):
        read_files([_write(tmp_path, five, "five.csv")], "1m")
    # declared as 5m, the same file imports
    assert len(read_files([tmp_path / "five.csv"], "5m")[1]) == 6


# ------------------------------------------------ timestamps written as floats (issue 20, 8)
@pytest.mark.parametrize(
    "col, value",
    [
        (6, "1.58211e+12"),
        (6, "1709252999999.0"),
        (6, "1709252999999.5"),
        (0, "1.70925294e12"),
        (0, "1709252940000.0"),
    ],
)
def test_a_timestamp_that_is_not_a_whole_number_is_refused_at_parse_time(tmp_path, raw_lines, col, value):
    name = "close time" if col == 6 else "open time"
    path = _write(tmp_path, _edit(raw_lines, 50, {col: value}))
    with pytest.raises(CandleValidationError) as info:
        read_files([path], "1m")
    message = str(info.value)
    assert message == (
        f"{path} row 50: non-integer timestamp in {name} (got {value!r}, expected whole epoch "
        "milliseconds or microseconds, without a fraction or an exponent)"
    )
    assert "\n" not in message and "bar spans" not in message


def test_a_float_epoch_in_a_generic_csv_names_its_row(tmp_path, btc_1m):
    day = btc_1m.iloc[:10].copy()
    day["open_time"] = day["open_time"].astype("int64").astype(str)
    day.loc[4, "open_time"] = "1.70925144e+12"
    csv = tmp_path / "floats.csv"
    day.to_csv(csv, index=False)
    with pytest.raises(
        CandleValidationError,
        match=r"floats.csv row 6: non-integer timestamp in open_time "
        r"\(got '1.70925144e\+12'",
    ):
        read_files([csv], "1m", fmt="csv")
