"""Feature computations: TA-Lib for the classical indicators, vectorised numpy for the rest.

Every feature is causal (the value at bar t reads bars <= t only) and, except the `atr_14`
level, scale-free: returns, ratios to the close, oscillators, z-scores. Anything in price units
(MACD, Bollinger bands, moving averages, momentum) is divided by the close so that a model sees
the same distribution in 2017 and 2025. Divisions by zero (zero-volume bars, flat bars) give a
neutral value instead of inf/NaN, so features are finite after warm-up on real data.

Each column is a freshly computed float64 array that becomes a DataFrame column without a copy
(no consolidation into one block, which would double peak memory at 4M rows); family
temporaries are freed as soon as the family returns, which keeps peak memory near the output.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import talib

from coffee_ml.features.registry import REGISTRY, FeatureSpec

PRICE = ("open", "high", "low", "close")
HLC = ("high", "low", "close")
TAKER = ("volume", "taker_buy_base")

RETURN_LAGS = (1, 2, 3, 6)
LOG_RETURN_LAGS = (1, 2, 3, 6, 12, 24)
MINUTES_PER_DAY = 1440


class CandleInputError(ValueError):
    """Candles unusable for features: missing columns, NaN/inf or non-positive prices.

    `problems` maps column name to a human-readable count, e.g. {"close": "3 NaN"}.
    """

    def __init__(self, message: str, problems: dict[str, str] | None = None) -> None:
        self.problems = problems or {}
        super().__init__(message)


class CandleArrays:
    """Float64 views of the candle columns, with lazily computed intermediates shared by families.

    Columns are taken without copying when the frame already holds float64 data.
    """

    def __init__(self, candles: pd.DataFrame) -> None:
        self.index = candles.index
        self._frame = candles

    def column(self, name: str) -> np.ndarray:
        return np.ascontiguousarray(self._frame[name].to_numpy(dtype=np.float64))

    @cached_property
    def open(self) -> np.ndarray:
        return self.column("open")

    @cached_property
    def high(self) -> np.ndarray:
        return self.column("high")

    @cached_property
    def low(self) -> np.ndarray:
        return self.column("low")

    @cached_property
    def close(self) -> np.ndarray:
        return self.column("close")

    @cached_property
    def volume(self) -> np.ndarray:
        return self.column("volume")

    @cached_property
    def log_close(self) -> np.ndarray:
        return np.log(self.close)

    @cached_property
    def log_return(self) -> np.ndarray:
        """One-bar log return, NaN at the first bar; reused by returns and volatility."""
        return lagged_diff(self.log_close, 1)


# ---------------------------------------------------------------- numeric helpers
# Arithmetic is done in place on fresh temporaries (TA-Lib outputs, own results): at 72k rows
# the cost of a feature is dominated by allocating and page-faulting new arrays, not by math.


def lagged_diff(x: np.ndarray, lag: int) -> np.ndarray:
    """x[t] - x[t-lag], NaN for the first `lag` bars."""
    out = np.empty_like(x)
    out[:lag] = np.nan
    np.subtract(x[lag:], x[:-lag], out=out[lag:])
    return out


def lagged_ratio(x: np.ndarray, lag: int, fill: float) -> np.ndarray:
    """x[t] / x[t-lag], NaN for the first `lag` bars, `fill` where x[t-lag] == 0."""
    out = np.empty_like(x)
    out[:lag] = np.nan
    safe_div(x[lag:], x[:-lag], fill, out=out[lag:])
    return out


def safe_div(a: np.ndarray, b: np.ndarray, fill: float, out: np.ndarray | None = None) -> np.ndarray:
    """a / b (into `out`, which may be `a`), with `fill` where b == 0 and a is defined, so that
    zero-volume or flat bars give a neutral value while warm-up NaNs stay NaN."""
    zero = b == 0
    fix = zero & ~np.isnan(a) if zero.any() else None
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.divide(a, b, out=out)
    if fix is not None:
        out[fix] = fill
    return out


def zscore(x: np.ndarray, period: int) -> np.ndarray:
    """(x - rolling mean) / rolling population std over `period` bars; 0 where the std is 0."""
    centred = np.subtract(x, talib.SMA(x, period))
    return safe_div(centred, talib.STDDEV(x, period, 1.0), 0.0, out=centred)


def rel(values: np.ndarray, base: np.ndarray, minus_one: bool = False) -> np.ndarray:
    """values / base in place (values must be a temporary), optionally minus 1."""
    values /= base
    if minus_one:
        values -= 1.0
    return values


# ---------------------------------------------------------------- price


def _spec(
    name: str,
    group: str,
    description: str,
    lookback: int,
    requires: tuple[str, ...] = ("close",),
    scale_free: bool = True,
) -> FeatureSpec:
    return FeatureSpec(name, group, description, lookback, requires, scale_free)


@REGISTRY.family(
    *[_spec(f"ret_{k}", "price", f"simple return over {k} bar(s): close/close[t-{k}] - 1", k) for k in RETURN_LAGS]
)
def _simple_returns(x: CandleArrays) -> dict[str, np.ndarray]:
    out = {}
    for k in RETURN_LAGS:
        r = lagged_ratio(x.close, k, 1.0)
        r -= 1.0
        out[f"ret_{k}"] = r
    return out


@REGISTRY.family(
    *[_spec(f"logret_{k}", "price", f"log return over {k} bar(s): ln(close/close[t-{k}])", k) for k in LOG_RETURN_LAGS]
)
def _log_returns(x: CandleArrays) -> dict[str, np.ndarray]:
    return {f"logret_{k}": x.log_return if k == 1 else lagged_diff(x.log_close, k) for k in LOG_RETURN_LAGS}


@REGISTRY.family(
    _spec("price_change", "price", "bar price change relative to the open: (close - open)/open", 0, PRICE),
    _spec("hl_range", "price", "bar range relative to the close: (high - low)/close", 0, PRICE),
    _spec(
        "close_location",
        "price",
        "where the close sits in the bar range: (close - low)/(high - low), 0.5 if flat",
        0,
        PRICE,
    ),
)
def _bar_shape(x: CandleArrays) -> dict[str, np.ndarray]:
    spread = x.high - x.low
    location = np.subtract(x.close, x.low)
    return {
        "price_change": rel(np.divide(x.close, x.open), 1.0, minus_one=True),
        "hl_range": np.divide(spread, x.close),
        "close_location": safe_div(location, spread, 0.5, out=location),
    }


@REGISTRY.family(
    *[
        _spec(f"mom_{n}", "price", f"momentum MOM({n}) relative to price: (close - close[t-{n}])/close", n)
        for n in (10, 20)
    ]
)
def _momentum(x: CandleArrays) -> dict[str, np.ndarray]:
    return {f"mom_{n}": rel(talib.MOM(x.close, n), x.close) for n in (10, 20)}


@REGISTRY.family(
    *[
        _spec(f"roc_{n}", "price", f"rate of change ROC({n}) in percent: 100*(close/close[t-{n}] - 1)", n)
        for n in (10, 20)
    ]
)
def _rate_of_change(x: CandleArrays) -> dict[str, np.ndarray]:
    return {f"roc_{n}": talib.ROC(x.close, n) for n in (10, 20)}


# ---------------------------------------------------------------- trend / oscillators


@REGISTRY.family(_spec("rsi_14", "trend", "relative strength index RSI(14), Wilder smoothing, 0..100", 14))
def _rsi(x: CandleArrays) -> dict[str, np.ndarray]:
    return {"rsi_14": talib.RSI(x.close, 14)}


@REGISTRY.family(
    _spec("macd_line", "trend", "MACD(12,26) line (EMA12 - EMA26) divided by close", 33),
    _spec("macd_signal", "trend", "MACD signal line (EMA9 of the MACD line) divided by close", 33),
    _spec("macd_hist", "trend", "MACD histogram (line - signal) divided by close", 33),
)
def _macd(x: CandleArrays) -> dict[str, np.ndarray]:
    line, signal, hist = talib.MACD(x.close, 12, 26, 9)
    return {"macd_line": rel(line, x.close), "macd_signal": rel(signal, x.close), "macd_hist": rel(hist, x.close)}


@REGISTRY.family(
    _spec("bb_upper_dist", "trend", "Bollinger(20,2) upper band distance from close: upper/close - 1", 19),
    _spec("bb_lower_dist", "trend", "Bollinger(20,2) lower band distance from close: lower/close - 1", 19),
    _spec("bb_width", "trend", "Bollinger(20,2) band width: (upper - lower)/middle", 19),
    _spec("bb_pctb", "trend", "Bollinger(20,2) %B: (close - lower)/(upper - lower), 0.5 if flat", 19),
)
def _bollinger(x: CandleArrays) -> dict[str, np.ndarray]:
    upper, middle, lower = talib.BBANDS(x.close, 20, 2.0, 2.0, 0)
    # %B and width read upper/lower before they are turned into distances in place (dict order).
    width = upper - lower
    pctb = np.subtract(x.close, lower)
    return {
        "bb_pctb": safe_div(pctb, width, 0.5, out=pctb),
        "bb_upper_dist": rel(upper, x.close, minus_one=True),
        "bb_lower_dist": rel(lower, x.close, minus_one=True),
        "bb_width": rel(width, middle),
    }


@REGISTRY.family(
    _spec("stoch_k", "trend", "stochastic %K(14): close position in the 14-bar high-low range, 0..100", 15, HLC),
    _spec("stoch_d", "trend", "stochastic %D: 3-bar SMA of %K(14)", 15, HLC),
)
def _stochastic(x: CandleArrays) -> dict[str, np.ndarray]:
    k, d = talib.STOCHF(x.high, x.low, x.close, 14, 3, 0)
    return {"stoch_k": k, "stoch_d": d}


@REGISTRY.family(_spec("willr_14", "trend", "Williams %R(14), -100..0", 13, HLC))
def _williams(x: CandleArrays) -> dict[str, np.ndarray]:
    return {"willr_14": talib.WILLR(x.high, x.low, x.close, 14)}


@REGISTRY.family(_spec("cci_20", "trend", "commodity channel index CCI(20) of the typical price", 19, HLC))
def _cci(x: CandleArrays) -> dict[str, np.ndarray]:
    return {"cci_20": talib.CCI(x.high, x.low, x.close, 20)}


@REGISTRY.family(
    _spec("adx_14", "trend", "average directional index ADX(14), trend strength 0..100", 27, HLC),
    _spec("plus_di_14", "trend", "plus directional indicator +DI(14)", 14, HLC),
    _spec("minus_di_14", "trend", "minus directional indicator -DI(14)", 14, HLC),
)
def _directional(x: CandleArrays) -> dict[str, np.ndarray]:
    return {
        "adx_14": talib.ADX(x.high, x.low, x.close, 14),
        "plus_di_14": talib.PLUS_DI(x.high, x.low, x.close, 14),
        "minus_di_14": talib.MINUS_DI(x.high, x.low, x.close, 14),
    }


MA_PERIODS = (10, 20, 50)


@REGISTRY.family(
    *[
        _spec(f"{kind}_{n}_ratio", "trend", f"{kind.upper()}({n}) as a ratio to close: {kind}/close - 1", n - 1)
        for kind in ("sma", "ema")
        for n in MA_PERIODS
    ]
)
def _moving_averages(x: CandleArrays) -> dict[str, np.ndarray]:
    out = {f"sma_{n}_ratio": rel(talib.SMA(x.close, n), x.close, minus_one=True) for n in MA_PERIODS}
    out.update({f"ema_{n}_ratio": rel(talib.EMA(x.close, n), x.close, minus_one=True) for n in MA_PERIODS})
    return out


# ---------------------------------------------------------------- volatility


@REGISTRY.family(
    _spec(
        "atr_14",
        "volatility",
        "average true range ATR(14) in price units (level; not for models)",
        14,
        HLC,
        scale_free=False,
    ),
    _spec("atr_14_rel", "volatility", "ATR(14) divided by close", 14, HLC),
)
def _atr(x: CandleArrays) -> dict[str, np.ndarray]:
    atr = talib.ATR(x.high, x.low, x.close, 14)
    return {"atr_14": atr, "atr_14_rel": np.divide(atr, x.close)}


@REGISTRY.family(
    *[
        _spec(
            f"hv_{n}",
            "volatility",
            f"historical volatility: sample std of 1-bar log returns over {n} bars (per bar, not annualised)",
            n,
        )
        for n in (20, 60)
    ]
)
def _historical_volatility(x: CandleArrays) -> dict[str, np.ndarray]:
    out = {}
    for n in (20, 60):
        var = talib.VAR(x.log_return, n, 1.0)
        var *= n / (n - 1)
        np.maximum(var, 0.0, out=var)  # running-sum VAR can dip below 0 by rounding
        out[f"hv_{n}"] = np.sqrt(var, out=var)
    return out


@REGISTRY.family(
    _spec("parkinson_20", "volatility", "Parkinson (high-low) volatility over 20 bars, per bar", 19, ("high", "low")),
    _spec("garman_klass_20", "volatility", "Garman-Klass (OHLC) volatility over 20 bars, per bar", 19, PRICE),
)
def _range_volatility(x: CandleArrays) -> dict[str, np.ndarray]:
    hl2 = np.log(np.divide(x.high, x.low))
    hl2 *= hl2
    co2 = np.log(np.divide(x.close, x.open))
    co2 *= co2
    parkinson = talib.SMA(hl2, 20)
    parkinson /= 4.0 * np.log(2.0)
    # 0.5*hl2 - c*co2 >= 0 because |ln(c/o)| <= ln(h/l); the clip guards rounding only.
    hl2 *= 0.5
    co2 *= 2.0 * np.log(2.0) - 1.0
    gk = talib.SMA(np.subtract(hl2, co2, out=hl2), 20)
    np.maximum(gk, 0.0, out=gk)
    return {"parkinson_20": np.sqrt(parkinson, out=parkinson), "garman_klass_20": np.sqrt(gk, out=gk)}


# ---------------------------------------------------------------- volume

VOLUME = ("close", "volume")


@REGISTRY.family(
    _spec("obv_chg_20", "volume", "OBV change over 20 bars divided by the 20-bar volume sum, -1..1", 20, VOLUME)
)
def _obv(x: CandleArrays) -> dict[str, np.ndarray]:
    obv_change = lagged_diff(talib.OBV(x.close, x.volume), 20)
    return {"obv_chg_20": safe_div(obv_change, talib.SUM(x.volume, 20), 0.0, out=obv_change)}


@REGISTRY.family(_spec("mfi_14", "volume", "money flow index MFI(14), 0..100", 14, HLC + ("volume",)))
def _mfi(x: CandleArrays) -> dict[str, np.ndarray]:
    return {"mfi_14": talib.MFI(x.high, x.low, x.close, x.volume, 14)}


@REGISTRY.family(
    _spec("vol_sma_ratio_10", "volume", "volume / SMA(volume, 10), 1 if the average is 0", 9, ("volume",)),
    _spec("vol_sma_ratio_20", "volume", "volume / SMA(volume, 20), 1 if the average is 0", 19, ("volume",)),
    _spec("vol_ema_ratio_20", "volume", "volume / EMA(volume, 20), 1 if the average is 0", 19, ("volume",)),
    _spec("vol_mom_10", "volume", "volume momentum: 10-bar volume sum / previous 10-bar sum - 1", 19, ("volume",)),
    _spec("vol_zscore_20", "volume", "z-score of volume against its 20-bar mean and std", 19, ("volume",)),
)
def _volume(x: CandleArrays) -> dict[str, np.ndarray]:
    v = x.volume
    sum10 = talib.SUM(v, 10)
    momentum = lagged_ratio(sum10, 10, 1.0)
    momentum -= 1.0
    sma10 = np.divide(sum10, 10.0, out=sum10)
    sma20, ema20 = talib.SMA(v, 20), talib.EMA(v, 20)
    return {
        "vol_sma_ratio_10": safe_div(v, sma10, 1.0, out=sma10),
        "vol_sma_ratio_20": safe_div(v, sma20, 1.0, out=sma20),
        "vol_ema_ratio_20": safe_div(v, ema20, 1.0, out=ema20),
        "vol_mom_10": momentum,
        "vol_zscore_20": zscore(v, 20),
    }


# ---------------------------------------------------------------- order flow


@REGISTRY.family(
    _spec(
        "taker_buy_ratio", "orderflow", "taker-buy share of volume: taker_buy_base/volume, 0.5 if no volume", 0, TAKER
    ),
    _spec("taker_buy_ratio_z_20", "orderflow", "z-score of the taker-buy ratio over 20 bars", 19, TAKER),
    _spec(
        "taker_imbalance_20",
        "orderflow",
        "20-bar taker imbalance: sum(2*taker_buy - volume)/sum(volume), -1..1",
        19,
        TAKER,
    ),
)
def _taker(x: CandleArrays) -> dict[str, np.ndarray]:
    buy = x.column("taker_buy_base")
    ratio = safe_div(buy, x.volume, 0.5)
    imbalance = talib.SUM(np.subtract(2.0 * buy, x.volume), 20)
    safe_div(imbalance, talib.SUM(x.volume, 20), 0.0, out=imbalance)
    return {"taker_buy_ratio": ratio, "taker_buy_ratio_z_20": zscore(ratio, 20), "taker_imbalance_20": imbalance}


@REGISTRY.family(_spec("trades_z_20", "orderflow", "z-score of the trade count over 20 bars", 19, ("trades",)))
def _trades(x: CandleArrays) -> dict[str, np.ndarray]:
    return {"trades_z_20": zscore(x.column("trades"), 20)}


# ---------------------------------------------------------------- calendar


@REGISTRY.family(
    _spec("hour_sin", "calendar", "sine of the UTC time of day (hour-of-day cycle)", 0, ()),
    _spec("hour_cos", "calendar", "cosine of the UTC time of day (hour-of-day cycle)", 0, ()),
    _spec("dow_sin", "calendar", "sine of the UTC day of week (Monday = 0)", 0, ()),
    _spec("dow_cos", "calendar", "cosine of the UTC day of week (Monday = 0)", 0, ()),
)
def _calendar(x: CandleArrays) -> dict[str, np.ndarray]:
    # Minute of day (0..1439) and day of week (0..6) index small sin/cos tables: a table lookup
    # is several times cheaper than sin/cos of every row.
    minutes = x.index.as_unit("s").asi8 // 60
    minute_of_day = minutes % MINUTES_PER_DAY
    dow = (minutes // MINUTES_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday
    day_angle = (2.0 * np.pi / MINUTES_PER_DAY) * np.arange(MINUTES_PER_DAY)
    week_angle = (2.0 * np.pi / 7.0) * np.arange(7)
    return {
        "hour_sin": np.sin(day_angle)[minute_of_day],
        "hour_cos": np.cos(day_angle)[minute_of_day],
        "dow_sin": np.sin(week_angle)[dow],
        "dow_cos": np.cos(week_angle)[dow],
    }


# ---------------------------------------------------------------- selection and computation


@dataclass(frozen=True)
class FeatureSelection:
    """Features to compute, plus those requested (by default or group) but unavailable.

    `skipped` maps a feature name to the reason, e.g. "taker_buy_base absent or all-NaN".
    """

    names: list[str]
    skipped: dict[str, str]

    @property
    def warmup(self) -> int:
        """Leading bars without a value for at least one selected feature."""
        return max((REGISTRY[n].lookback for n in self.names), default=0)


def select_features(
    candles: pd.DataFrame, features: Iterable[str] | None = None, groups: Iterable[str] | None = None
) -> FeatureSelection:
    """Resolve a selection against the columns the candles actually carry.

    Features whose inputs are absent or all-NaN are skipped when they came from the default set
    or a group (order flow on ETHUSDC), but an explicitly named one raises: asking for it by
    name and silently not getting it would be worse.
    """
    explicit = set(features or ())
    wanted = REGISTRY.select(features, groups)
    required = set().union(*(REGISTRY[n].requires for n in wanted))
    unusable = {c for c in required if c not in candles.columns or candles[c].isna().all()}
    names, skipped = [], {}
    for name in wanted:
        missing = [c for c in REGISTRY[name].requires if c in unusable]
        if not missing:
            names.append(name)
        elif name in explicit:
            raise CandleInputError(
                f"feature {name!r} needs column(s) {', '.join(missing)}, which are absent or all-NaN in these candles"
            )
        else:
            skipped[name] = f"{', '.join(missing)} absent or all-NaN"
    if not names:
        raise CandleInputError(
            "no feature selected is computable from these candles"
            + (f" (skipped: {', '.join(skipped)})" if skipped else "")
        )
    return FeatureSelection(names, skipped)


def check_candles(candles: pd.DataFrame, columns: Iterable[str]) -> None:
    """Raise CandleInputError naming every column with NaN, inf or (for prices) values <= 0.

    Features would otherwise turn one bad input into NaN over a whole look-back window, or worse,
    into a plausible but wrong number.
    """
    problems: dict[str, str] = {}
    for col in dict.fromkeys(columns):
        values = candles[col].to_numpy(dtype=np.float64)
        n_nan, n_inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
        n_nonpos = int((values <= 0).sum()) if col in PRICE else 0
        parts = [f"{k} {label}" for k, label in ((n_nan, "NaN"), (n_inf, "inf"), (n_nonpos, "<= 0")) if k]
        if parts:
            problems[col] = ", ".join(parts)
    if problems:
        detail = "; ".join(f"{col}: {what}" for col, what in problems.items())
        raise CandleInputError(f"candles have invalid values ({detail}); clean or drop those bars first", problems)


def compute_features(
    candles: pd.DataFrame, features: Iterable[str] | None = None, groups: Iterable[str] | None = None
) -> pd.DataFrame:
    """Feature columns for every bar of `candles` (same index), warm-up rows left as NaN.

    `features`/`groups` select as in `FeatureRegistry.select`; neither means the default model
    set (all scale-free features computable from these candles). Warm-up rows are kept here so
    that row t of the result always corresponds to bar t; `build_dataset` drops and counts them.
    Raises CandleInputError for NaN/inf/non-positive inputs or too few rows.
    """
    selection = select_features(candles, features, groups)
    return compute_selected(candles, selection)


def compute_selected(candles: pd.DataFrame, selection: FeatureSelection) -> pd.DataFrame:
    """`compute_features` for an already resolved selection (so callers can read its warm-up first)."""
    names = selection.names
    needed = {"close"}.union(*(REGISTRY[n].requires for n in names))
    check_candles(
        candles, [c for c in ("open", "high", "low", "close", "volume", "taker_buy_base", "trades") if c in needed]
    )
    if len(candles) <= selection.warmup:
        raise CandleInputError(
            f"need at least {selection.warmup + 1} rows to compute the selected features "
            f"(look-back {selection.warmup} bars), got {len(candles)}"
        )
    arrays = CandleArrays(candles)
    wanted = set(names)
    columns: dict[str, np.ndarray] = {}
    for family in dict.fromkeys(REGISTRY.family_of(n) for n in names):  # ordered, each family once
        columns.update((name, values) for name, values in family(arrays).items() if name in wanted)
    # copy=False keeps each array as its own block: no consolidation copy of the whole matrix.
    return pd.DataFrame({name: columns[name] for name in names}, index=candles.index, copy=False)
