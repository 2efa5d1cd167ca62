"""The detectors' default settings per bar interval, in one place, and their checks.

Two sets are measured: hourly bars (the platform's definition) and 1-minute bars (March 2024,
`params/anomalies_1m.yaml` runs them). Windows are counted in bars, and a minute pump lasts about
an hour, not twelve minutes, so the hourly bar counts miss it on minute candles.

Rule for the other intervals: at 1m and at 1h and longer the measured sets (longer intervals
count the hourly set's bars); between them (3m, 5m, 15m, 30m) every setting that differs is
interpolated geometrically in the interval's length, log(seconds) from log(60) to log(3600), and
bar counts are rounded to whole bars: 5m takes 32 move bars (2 h 40 min), 15m 21 (5 h 15 min).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

from coffee_ml.data.schema import interval_seconds

HOURLY: dict[str, Any] = {
    "pump_threshold": 40.0,  # final pump points (volume + price + rapidity) that make an event
    "crash_threshold": 85.0,  # flash-crash risk that makes an event
    "move_bars": 12,  # bars a pump may take
    "baseline_bars": 168,  # trailing bars of the volume baseline
    "dump_bars": 24,  # bars after a pump that decide its sustainability
    "min_rise": 0.02,  # the rise from which volume and rapidity count in full
    "rank_bars": 720,  # trailing bars the flash-crash components are ranked against
    "contamination": 0.01,  # Isolation Forest: share of training bars called anomalous
    "train_bars": 4320,  # Isolation Forest: trailing bars each forest is fitted on
    "refit_every": 2160,  # Isolation Forest: bars between refits
    "crash_drop": 0.05,  # crash_forecast_table: a drawdown of at least this ...
    "crash_bars": 24,  # ... within this many bars
}
MINUTE: dict[str, Any] = HOURLY | {
    "move_bars": 60,
    "baseline_bars": 1440,
    "dump_bars": 60,
    "min_rise": 0.01,
    "rank_bars": 1440,
    "crash_drop": 0.02,
    "crash_bars": 60,
}
SCAN_SETTINGS = (
    "pump_threshold",
    "crash_threshold",
    "move_bars",
    "baseline_bars",
    "dump_bars",
    "min_rise",
    "rank_bars",
    "contamination",
    "train_bars",
    "refit_every",
)

# name: (lower bound, upper bound, whole number?, lower bound excluded?)
_LIMITS: dict[str, tuple[float, float, bool, bool]] = {
    "pump_threshold": (0, 100, False, False),
    "crash_threshold": (0, 100, False, False),
    "move_bars": (2, 10**7, True, False),
    "baseline_bars": (2, 10**7, True, False),
    "dump_bars": (1, 10**7, True, False),
    "min_rise": (0, 10, False, True),
    "rank_bars": (2, 10**7, True, False),
    "contamination": (0, 0.5, False, True),
    "train_bars": (2, 10**8, True, False),
    "refit_every": (1, 10**8, True, False),
    "crash_drop": (0, 1, False, True),
    "crash_bars": (1, 10**7, True, False),
}


def defaults(interval: str) -> dict[str, Any]:
    """Every detector setting for bars of `interval` (the module doc's rule)."""
    seconds = interval_seconds(interval)
    if seconds <= 60:
        return dict(MINUTE)
    if seconds >= 3600:
        return dict(HOURLY)
    w = math.log(seconds / 60) / math.log(3600 / 60)
    out = {}
    for name, hourly in HOURLY.items():
        minute = MINUTE[name]
        value = math.exp((1 - w) * math.log(minute) + w * math.log(hourly)) if minute != hourly else hourly
        out[name] = int(round(value)) if isinstance(hourly, int) else float(f"{value:.3g}")
    return out


def resolve(interval: str, given: dict[str, Any], allowed: tuple[str, ...] = SCAN_SETTINGS) -> dict[str, Any]:
    """The settings for `interval` with `given` on top (None keeps the default), each checked:
    one-line errors name the setting, the value and what is allowed."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"unknown anomaly setting {unknown[0]!r}: expected one of {', '.join(allowed)}")
    base = defaults(interval)
    out = {name: base[name] for name in allowed}
    for name, value in given.items():
        if value is not None:
            out[name] = check(name, value)
    return out


def check(name: str, value: Any) -> Any:
    """`value` for setting `name` as int or float, or a one-line ValueError naming both."""
    lo, hi, whole, open_lo = _LIMITS[name]
    ok_type = isinstance(value, Integral) if whole else isinstance(value, Real)
    ok = (
        ok_type
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (lo < value if open_lo else lo <= value)
        and value <= hi
    )
    if name == "contamination" and ok:
        ok = value < hi  # IsolationForest takes (0, 0.5)
    if not ok:
        kind = "a whole number" if whole else "a number"
        top = f"{int(hi):,}" if hi >= 1e6 else f"{hi:g}"
        bounds = f"above {lo:g} and at most {top}" if open_lo else f"from {lo:g} to {top}"
        if name == "contamination":
            bounds = "above 0 and below 0.5"
        raise ValueError(f"anomaly setting {name}={value!r} is invalid: expected {kind} {bounds}")
    return int(value) if whole else float(value)
