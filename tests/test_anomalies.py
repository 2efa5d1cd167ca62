"""Anomalies: the pump-and-dump point mapping on a known pump, provisional -> final sustainability,
causality of every detector (truncate or scramble the future), OHLCV-only degradation, and the
flash-crash forecast table. Real data: the bundled BTCUSDT hours."""

from __future__ import annotations

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
    close = np.r_[np.full(300, 100.0), 106.0, 112.0, 100.0, np.full(max(after - 1, 0), 100.0)][:300 + 2 + after]
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


@pytest.mark.parametrize(("score", "level"), [(0, "LOW"), (25, "LOW"), (26, "MEDIUM"), (50, "MEDIUM"), (51, "HIGH"),
                                              (75, "HIGH"), (76, "CRITICAL"), (100, "CRITICAL")])
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
    pd.testing.assert_frame_equal(full.iloc[:cut - 24], scr.iloc[:cut - 24])
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
