"""Events from the three detectors over a span of candles: what the platform lists and researchers study."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd

from coffee_ml.anomalies.flash_crash import crash_risk
from coffee_ml.anomalies.isolation import isolation_scores
from coffee_ml.anomalies.pump_dump import pump_scores, severity
from coffee_ml.anomalies.settings import resolve
from coffee_ml.data.store import like_index, to_utc

PUMP_PARTS = ("volume_pts", "price_pts", "rapidity_pts", "sustain_pts")
CRASH_PARTS = ("liquidation", "order_flow", "depth", "cascade")
EVENT_COLUMNS = ["start", "end", "type", "score", "severity", "parts", "final", "max_score"]


def _runs(flag: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    edges = np.diff(np.concatenate([[0], flag.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def _events(kind: str, frame: pd.DataFrame, flag: np.ndarray, parts: tuple[str, ...]) -> list[dict[str, Any]]:
    """One event per run of flagged bars, described by its highest-scoring bar."""
    out = []
    score = frame["score"].to_numpy()
    for lo, hi in _runs(flag):
        peak = lo + int(np.nanargmax(score[lo : hi + 1]))
        row = frame.iloc[peak]
        out.append(
            {
                "start": frame.index[lo],
                "end": frame.index[hi],
                "type": kind,
                "score": float(row["score"]),
                "severity": severity([row["score"]])[0],
                "parts": {p: round(float(row[p]), 1) for p in parts if p in frame and pd.notna(row[p])},
                "final": bool(row.get("final", True)),
                "max_score": float(row.get("max_score", row["score"])),
            }
        )
    return out


@dataclass(frozen=True)
class Scan:
    """Per-bar scores of the three detectors over the candles, and the events from them."""

    pump: pd.DataFrame
    crash: pd.DataFrame
    isolation: pd.DataFrame
    events: pd.DataFrame


def scan(
    candles: pd.DataFrame,
    interval: str,
    *,
    pump_threshold: float | None = None,
    crash_threshold: float | None = None,
    move_bars: int | None = None,
    min_rise: float | None = None,
    baseline_bars: int | None = None,
    dump_bars: int | None = None,
    rank_bars: int | None = None,
    contamination: float | None = None,
    train_bars: int | None = None,
    refit_every: int | None = None,
    book: pd.DataFrame | None = None,
    report_from: Any = None,
) -> Scan:
    """Every detector once over `candles`; events only from `report_from` on (earlier bars serve
    as history; a date string, date, datetime or Timestamp, naive = UTC). pump_dump: runs of bars
    whose final parts (volume + price + rapidity) reach `pump_threshold`; flash_crash: runs with
    risk >= `crash_threshold`; statistical: runs the Isolation Forest flags. A setting left None
    takes the default for `interval` (`settings.defaults`: 1m and 1h measured, between interpolated)."""
    s = resolve(
        interval,
        {
            "pump_threshold": pump_threshold,
            "crash_threshold": crash_threshold,
            "move_bars": move_bars,
            "min_rise": min_rise,
            "baseline_bars": baseline_bars,
            "dump_bars": dump_bars,
            "rank_bars": rank_bars,
            "contamination": contamination,
            "train_bars": train_bars,
            "refit_every": refit_every,
        },
    )
    first = to_utc(report_from, "report_from")
    keep = (
        np.ones(len(candles), dtype=bool)
        if first is None
        else np.asarray(candles.index >= like_index(first, candles.index, "report_from"))
    )
    pump = pump_scores(candles, s["move_bars"], s["baseline_bars"], s["dump_bars"], s["min_rise"])
    crash = crash_risk(candles, interval, rank_bars=s["rank_bars"], book=book)
    iso = isolation_scores(
        candles, interval, train_bars=s["train_bars"], refit_every=s["refit_every"], contamination=s["contamination"]
    )
    known = pump[["volume_pts", "price_pts", "rapidity_pts"]].fillna(0).sum(axis=1).to_numpy()
    events = (
        _events("pump_dump", pump, keep & (known >= s["pump_threshold"]), PUMP_PARTS)
        + _events("flash_crash", crash, keep & (crash["score"].to_numpy() >= s["crash_threshold"]), CRASH_PARTS)
        + _events("statistical", iso, keep & iso["anomaly"].to_numpy(), ())
    )
    table = pd.DataFrame(events, columns=EVENT_COLUMNS).sort_values(["start", "type"], ignore_index=True)
    table.attrs["sources"] = crash.attrs["sources"]
    return Scan(pump, crash, iso, table)


def find_events(candles: pd.DataFrame, interval: str, **settings: Any) -> pd.DataFrame:
    """The events of `scan` (same settings; unknown names are refused, naming the setting)."""
    resolve(interval, {k: v for k, v in settings.items() if k not in ("book", "report_from")})
    return scan(candles, interval, **settings).events


def load_window(
    symbol: str,
    interval: str = "1h",
    days: float | None = 30,
    start: Any = None,
    end: Any = None,
    backend: str = "auto",
    history_bars: int = 5000,
) -> tuple[pd.DataFrame, pd.Timestamp]:
    """(candles, first reported bar): the last `days` days of stored candles (or [start, end)),
    with `history_bars` earlier bars in front as the detectors' trailing history. `start` and
    `end`: date strings, dates, datetimes or Timestamps (naive = UTC)."""
    from coffee_ml.data import open_store
    from coffee_ml.data.schema import interval_seconds

    step = interval_seconds(interval)
    first, last = to_utc(start, "start"), to_utc(end, "end")
    if first is not None and last is not None and first >= last:
        raise ValueError(f"start {first:%Y-%m-%d %H:%M} is not before end {last:%Y-%m-%d %H:%M}")
    if isinstance(history_bars, bool) or not isinstance(history_bars, Integral) or history_bars < 0:
        raise ValueError(f"history_bars must be a whole number >= 0, got {history_bars!r}")
    store = open_store(backend)
    if first is None:
        if isinstance(days, bool) or not isinstance(days, Real) or not math.isfinite(days) or days <= 0:
            raise ValueError(f"days must be > 0 (or give start), got {days!r}")
        tail = store.load_last(symbol, interval, 1, last)
        if tail.empty:
            raise ValueError(f"no {symbol} {interval} candles stored (see `coffee-ml data list`)")
        first = tail.index[-1] - pd.Timedelta(days=days)
    candles = store.load_candles(symbol, interval, first - pd.Timedelta(seconds=step * int(history_bars)), last)
    if candles.empty or candles.index[-1] < first:
        raise ValueError(f"no {symbol} {interval} candles in [{start}, {end})")
    return candles, first


def detect(
    symbol: str,
    interval: str = "1h",
    days: float | None = 30,
    start: Any = None,
    end: Any = None,
    backend: str = "auto",
    history_bars: int = 5000,
    **settings: Any,
) -> pd.DataFrame:
    """Events of the last `days` days of stored candles (or of [start, end) for research); the
    settings default per `interval` as in `scan`."""
    resolve(interval, {k: v for k, v in settings.items() if k != "book"})
    candles, first = load_window(symbol, interval, days, start, end, backend, history_bars)
    return find_events(candles, interval, report_from=first, **settings)
