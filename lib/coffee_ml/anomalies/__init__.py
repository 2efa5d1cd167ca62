"""Market anomalies: pump-and-dump scores, flash-crash risk, Isolation Forest, and events from them.

pump_dump.py    `pump_scores`: volume 0-30, price 0-30, rapidity 0-20, sustainability 0-20
                (provisional until the bars after the move exist); `severity`
flash_crash.py  `crash_risk`: liquidation, order flow, depth and cascade proxies, 0-100;
                `crash_forecast_table`: precision/recall for later drawdowns vs a volatility baseline
isolation.py    `isolation_scores`: IsolationForest refitted on trailing past bars
settings.py     `defaults(interval)`: every setting per bar interval (1m and 1h measured, between
                interpolated), and the checks that name a bad setting
detect.py       `scan` (all detectors once, with events), `find_events(candles, interval)`, `detect(symbol, interval, days=30)`, `load_window`
"""

from coffee_ml.anomalies.detect import Scan, detect, find_events, load_window, scan
from coffee_ml.anomalies.flash_crash import crash_forecast_table, crash_risk, future_drawdown
from coffee_ml.anomalies.isolation import isolation_features, isolation_scores
from coffee_ml.anomalies.pump_dump import pump_scores, severity
from coffee_ml.anomalies.settings import defaults

__all__ = [
    "Scan",
    "crash_forecast_table",
    "crash_risk",
    "defaults",
    "detect",
    "find_events",
    "future_drawdown",
    "isolation_features",
    "isolation_scores",
    "load_window",
    "pump_scores",
    "scan",
    "severity",
]
