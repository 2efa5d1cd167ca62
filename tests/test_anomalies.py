"""Anomalies: the pump-and-dump point mapping on a known pump, provisional -> final sustainability,
causality of every detector (truncate or scramble the future), OHLCV-only degradation, and the
flash-crash forecast table. Real data: the bundled BTCUSDT hours."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coffee_ml import anomalies as an
from coffee_ml.data import load_sample


@pytest.fixture(scope="module")
def hours() -> pd.DataFrame:
    return load_sample().loc["2024-01-01":"2024-12-31"]


def _pump(after: int = 30) -> pd.DataFrame:
    """Known answer: 300 flat hours at 100 with volume 10, a 2-bar +12% rise on 70 volume (+600%),
    then the whole rise given back, then `after` - 2 flat bars."""
    close = np.r_[np.full(300, 100.0), 106.0, 112.0, 100.0, np.full(max(after - 1, 0), 100.0)][: 300 + 2 + after]
    volume = np.r_[np.full(300, 10.0), 70.0, 70.0, np.full(len(close) - 302, 10.0)]
    idx = pd.date_range("2024-01-01", periods=len(close), freq="h", tz="UTC")
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": volume}, index=idx)


def test_point_mapping_on_a_known_pump():
    s = an.pump_scores(_pump(), move_bars=12, dump_bars=24).iloc[301]  # the bar the rise peaks
    assert s["rise"] == pytest.approx(0.12) and s["bars"] == 2
    assert s["price_pts"] == 30 and s["volume_pts"] == 30  # >= 10% and >= +500%
    assert s["rapidity_pts"] == pytest.approx(20 * 10 / 11)
    assert s["sustain_pts"] == 20 and s["final"]  # the rise is given back entirely
    assert s["score"] == pytest.approx(30 + 30 + 20 * 10 / 11 + 20) and s["severity"] == "CRITICAL"


@pytest.mark.parametrize(
    ("score", "level"),
    [
        (0, "LOW"),
        (25, "LOW"),
        (26, "MEDIUM"),
        (50, "MEDIUM"),
        (51, "HIGH"),
        (75, "HIGH"),
        (76, "CRITICAL"),
        (100, "CRITICAL"),
    ],
)
def test_severity_bands(score, level):
    assert an.severity([score])[0] == level


def test_sustainability_is_provisional_until_its_bars_exist_then_final():
    early = an.pump_scores(_pump(after=0), dump_bars=24).iloc[301]  # no bar after the peak yet
    assert not early["final"] and early["sustain_pts"] == 0
    assert early["max_score"] == pytest.approx(early["score"] + 20)
    late = an.pump_scores(_pump(after=30), dump_bars=24).iloc[301]
    for part in ("volume_pts", "price_pts", "rapidity_pts"):  # the parts known at t never change
        assert late[part] == early[part]
    assert late["final"] and late["sustain_pts"] == 20


def _scramble(candles: pd.DataFrame, cut: int) -> pd.DataFrame:
    out = candles.copy()
    out.iloc[cut:] = out.iloc[cut:].to_numpy()[np.random.default_rng(0).permutation(len(out) - cut)]
    return out


def test_every_detector_reads_only_the_past(hours):
    cut = 6000
    scrambled = _scramble(hours, cut)
    full, scr = an.pump_scores(hours).iloc[:cut], an.pump_scores(scrambled).iloc[:cut]
    truncated = an.pump_scores(hours.iloc[:cut])
    known = ["rise", "bars", "volume_ratio", "volume_pts", "price_pts", "rapidity_pts"]
    for other in (scr, truncated):
        pd.testing.assert_frame_equal(full[known], other[known])
    # sustainability reads the next 24 bars: once those exist the row is final and never changes
    final = truncated["final"].to_numpy()
    assert (~final).sum() == 24 and not final[-24:].any()
    pd.testing.assert_frame_equal(full[final], truncated[final])
    pd.testing.assert_frame_equal(full.iloc[: cut - 24], scr.iloc[: cut - 24])
    crash_a = an.crash_risk(hours, "1h").iloc[:cut]
    pd.testing.assert_frame_equal(crash_a, an.crash_risk(scrambled, "1h").iloc[:cut])
    pd.testing.assert_frame_equal(crash_a, an.crash_risk(hours.iloc[:cut], "1h"))
    iso = an.isolation_scores(hours, "1h").iloc[:cut]
    pd.testing.assert_frame_equal(iso, an.isolation_scores(scrambled, "1h").iloc[:cut])
    assert iso["score"].notna().sum() > 1000 and iso["anomaly"].mean() < 0.05


def test_candles_without_taker_columns_degrade_with_a_warning(hours):
    ohlcv = hours[["open", "high", "low", "close", "volume"]]
    with pytest.warns(UserWarning, match="without the order-flow part"):
        risk = an.crash_risk(ohlcv, "1h")
    assert "order_flow" not in risk and not any("order flow" in s for s in risk.attrs["sources"])
    assert risk["score"].max() <= 100
    with pytest.warns(UserWarning):
        events = an.find_events(ohlcv, "1h")
    assert set(events["type"]) <= {"pump_dump", "flash_crash", "statistical"}


def test_an_order_book_replaces_the_depth_proxy(hours):
    book = pd.DataFrame({"bid_depth": hours["volume"] * 2, "ask_depth": hours["volume"]}, index=hours.index)
    risk = an.crash_risk(hours, "1h", book=book)
    assert any("order-book" in s for s in risk.attrs["sources"])
    assert not any("Amihud" in s for s in risk.attrs["sources"])


def test_flash_crash_forecast_table_counts_alerts_and_events(hours):
    risk = an.crash_risk(hours, "1h")
    table = an.crash_forecast_table(risk, hours, "1h", drop=0.03, bars=24, thresholds=(50, 80))
    assert list(table.index) == [50, 80]
    assert (table["alerts"].diff().dropna() <= 0).all()  # higher threshold, fewer alerts
    assert table["base_rate"].nunique() == 1 and 0 < table["base_rate"].iloc[0] < 1
    assert ((table["precision"] >= 0) & (table["precision"] <= 1)).all()
    drawdown = an.future_drawdown(hours, 24)
    assert drawdown.iloc[0] == pytest.approx(1 - hours["low"].iloc[1:25].min() / hours["close"].iloc[0])


def test_detect_reads_the_store_and_reports_events_of_the_last_days():
    events = an.detect("BTCUSDT", "1h", days=60)
    assert list(events.columns) == ["start", "end", "type", "score", "severity", "parts", "final", "max_score"]
    assert (events["start"] >= pd.Timestamp("2025-11-30 23:00", tz="UTC") - pd.Timedelta(days=60)).all()
    assert events["severity"].isin(["LOW", "MEDIUM", "HIGH", "CRITICAL"]).all()
    with pytest.raises(ValueError, match="days must be > 0"):
        an.detect("BTCUSDT", "1h", days=0)
    with pytest.raises(ValueError, match="no NOSUCH 1h candles"):
        an.detect("NOSUCH", "1h")


# ------------------------------------------------ one time parser, defaults per interval (issue 20, 8)
@pytest.mark.parametrize(
    "when",
    [
        "2024-06-01",
        "2024-06-01 00:00",
        datetime.date(2024, 6, 1),
        datetime.datetime(2024, 6, 1),
        np.datetime64("2024-06-01"),
        pd.Timestamp("2024-06-01"),
        pd.Timestamp("2024-06-01", tz="UTC"),
        pd.Timestamp("2024-06-01 02:00", tz="Europe/Berlin"),
    ],
)
def test_report_from_takes_every_kind_of_time(hours, when):
    span = hours.loc["2024-05-01":"2024-07-31"]
    events = an.find_events(span, "1h", report_from=when)
    assert (events["start"] >= pd.Timestamp("2024-06-01", tz="UTC")).all() and len(events)
    assert len(an.scan(span, "1h", report_from=when).events) == len(events)


@pytest.mark.parametrize(
    "when, message",
    [
        ("2024-13-01", r"time bound '2024-13-01' \(report_from\) is not a date or time"),
        ("yesterday-ish", r"time bound 'yesterday-ish' \(report_from\) is not a date or time"),
        (1717200000, r"time bound 1717200000 \(report_from\) is not a date or time: expected a date string"),
        ("0001-01-01", r"time bound '0001-01-01' \(report_from\) is out of range"),
    ],
)
def test_a_bad_report_from_is_one_line_naming_it(hours, when, message):
    with pytest.raises(ValueError, match=message) as info:
        an.find_events(hours.iloc[:500], "1h", report_from=when)
    assert "\n" not in str(info.value)


def test_detect_and_load_window_parse_start_and_end_like_scan():
    a = an.detect("BTCUSDT", "1h", start="2025-09-01", end=datetime.date(2025, 10, 1))
    b = an.detect(
        "BTCUSDT", "1h", start=pd.Timestamp("2025-09-01 02:00", tz="Europe/Berlin"), end=np.datetime64("2025-10-01")
    )
    pd.testing.assert_frame_equal(a, b)
    assert len(a) and (a["start"] >= pd.Timestamp("2025-09-01", tz="UTC")).all()
    assert (a["start"] < pd.Timestamp("2025-10-01", tz="UTC")).all()
    with pytest.raises(ValueError, match=r"time bound 'soon' \(end\) is not a date or time"):
        an.detect("BTCUSDT", "1h", end="soon")
    with pytest.raises(ValueError, match="start 2025-10-01 00:00 is not before end 2025-09-01 00:00"):
        an.load_window("BTCUSDT", "1h", start="2025-10-01", end="2025-09-01")
    with pytest.raises(ValueError, match="days must be > 0"):
        an.detect("BTCUSDT", "1h", days=float("nan"))
    with pytest.raises(ValueError, match=r"unknown anomaly setting 'move_bar'"):
        an.detect("BTCUSDT", "1h", move_bar=60)
    with pytest.raises(ValueError, match=r"anomaly setting move_bars='60' is invalid: expected a whole number"):
        an.find_events(load_sample().iloc[:500], "1h", move_bars="60")


def _minute_pump() -> pd.DataFrame:
    """2000 quiet minutes, a +34% hour on 3.6x volume, the rise given back over the next hour, 300 quiet minutes."""
    rng = np.random.default_rng(7)
    flat = 100 * np.exp(np.cumsum(rng.normal(0, 4e-4, 2000)))
    ramp = flat[-1] * np.exp(np.linspace(0, np.log(1.34), 61)[1:])
    back = np.linspace(ramp[-1], flat[-1], 61)[1:]
    close = np.r_[flat, ramp, back, flat[-1] * np.exp(np.cumsum(rng.normal(0, 4e-4, 300)))]
    volume = rng.gamma(4.0, 2.5, len(close))
    volume[2000:2060] *= 3.6
    open_ = np.r_[close[0], close[:-1]]
    idx = pd.date_range("2024-03-01", periods=len(close), freq="min", tz="UTC")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.0002,
            "low": np.minimum(open_, close) * 0.9998,
            "close": close,
            "volume": volume,
        },
        index=idx,
    )


def test_defaults_follow_the_interval_and_find_a_minute_pump():
    import yaml

    from coffee_ml.anomalies.settings import HOURLY, MINUTE, SCAN_SETTINGS

    # the 1m defaults are the settings params/anomalies_1m.yaml runs
    shipped = yaml.safe_load(Path(__file__).resolve().parents[1].joinpath("params/anomalies_1m.yaml").read_text())
    for key, value in shipped["notebooks"][0]["parameters"].items():
        if key in MINUTE:
            assert an.defaults("1m")[key] == value, key
    assert an.defaults("1h") == HOURLY and an.defaults("1d") == HOURLY
    five = an.defaults("5m")  # between: geometric in the interval's length
    assert MINUTE["move_bars"] > five["move_bars"] > HOURLY["move_bars"] and five["move_bars"] == 32
    assert MINUTE["min_rise"] < five["min_rise"] < HOURLY["min_rise"]
    minutes = _minute_pump()
    with pytest.warns(UserWarning, match="order-flow"):
        events = an.find_events(minutes, "1m")
        hourly = an.find_events(minutes, "1m", **{k: HOURLY[k] for k in SCAN_SETTINGS})
    pumps = events[events["type"] == "pump_dump"]
    assert len(pumps) == 1 and pd.Timestamp("2024-03-02 09:20", tz="UTC") <= pumps["start"].iloc[0] <= pd.Timestamp(
        "2024-03-02 10:20", tz="UTC"
    )
    assert not (hourly["type"] == "pump_dump").any()  # what the hourly bar counts gave before
    with pytest.warns(UserWarning):  # the lower-level detectors follow the interval too
        pd.testing.assert_frame_equal(an.crash_risk(minutes, "1m"), an.crash_risk(minutes, "1m", rank_bars=1440))
