"""The one candle schema, bar intervals, and validation with errors that name file, row and rule."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

REQUIRED_COLUMNS: tuple[str, ...] = ("open_time", "open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS: tuple[str, ...] = ("quote_volume", "trades", "taker_buy_base", "taker_buy_quote")
CANDLE_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
VOLUME_COLUMNS: tuple[str, ...] = ("volume",) + OPTIONAL_COLUMNS

INTERVALS: dict[str, int] = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
}


# Candles must open inside this window. Crypto spot trading starts in 2009; 2100 is far enough
# ahead for any real data while keeping every stamp representable (pandas ns, ClickHouse DateTime64).
# A date outside it is a unit or typing mistake (an 1850 or 2250 candle would import but stay
# invisible to every default load range), so it is refused with the row that holds it.
MIN_OPEN_TIME = pd.Timestamp("2009-01-01", tz="UTC")
MAX_OPEN_TIME = pd.Timestamp("2100-01-01", tz="UTC")  # exclusive
MIN_OPEN_MS = MIN_OPEN_TIME.value // 1_000_000
MAX_OPEN_MS = MAX_OPEN_TIME.value // 1_000_000
MAX_TRADES = 2**63 - 1  # trades is stored as an unsigned 64-bit count; keep it signed-safe too


def interval_seconds(interval: str) -> int:
    """Length of a bar in seconds, with a clear error for an unknown interval name."""
    try:
        return INTERVALS[interval]
    except KeyError:
        raise ValueError(f"unknown interval {interval!r}; expected one of {', '.join(INTERVALS)}") from None


def interval_timedelta(interval: str) -> pd.Timedelta:
    return pd.Timedelta(seconds=interval_seconds(interval))


class CandleValidationError(ValueError):
    """Bad candle input. `source` is the file (or a description), `row` its 1-based data row."""

    def __init__(self, source: str, row: int | None, rule: str, detail: str = "") -> None:
        # `row`: for CSV the file line (a header is line 1, as pandas counts); for Parquet the 1-based row
        self.source, self.row, self.rule, self.detail = source, row, rule, detail
        where = f"{source} row {row}" if row is not None else str(source)
        super().__init__(f"{where}: {rule}" + (f" ({detail})" if detail else ""))


def _first_bad(source: str, rows: np.ndarray, mask: np.ndarray, rule: str, detail_fn) -> None:
    """Raise for the first True in `mask`, saying how many rows break the same rule."""
    if not mask.any():
        return
    i = int(np.flatnonzero(mask)[0])
    count = int(mask.sum())
    more = f"; {count - 1} more row(s) break this rule" if count > 1 else ""
    raise CandleValidationError(source, int(rows[i]), rule, detail_fn(i) + more)


def check_time_range(ms: np.ndarray, rows: np.ndarray, source: str, name: str = "open_time") -> None:
    """Epoch milliseconds must lie in [MIN_OPEN_TIME, MAX_OPEN_TIME)."""
    bad = (ms < MIN_OPEN_MS) | (ms >= MAX_OPEN_MS)
    _first_bad(
        source,
        rows,
        bad,
        f"{name} outside the supported range",
        lambda i: f"{_fmt_ms(ms[i])} is not in {MIN_OPEN_TIME:%Y-%m-%d} .. {MAX_OPEN_TIME:%Y-%m-%d}",
    )


def _fmt_ms(ms) -> str:
    try:
        return str(pd.Timestamp(int(ms), unit="ms", tz="UTC"))
    except (OverflowError, ValueError):
        return f"{int(ms)} ms since 1970"


def validate_candles(df: pd.DataFrame, interval: str, source: str = "<data>") -> pd.DataFrame:
    """Check a candle frame (in time order) and return it de-duplicated with canonical dtypes.

    `df` has `open_time` (tz-aware UTC) and the price/volume columns; an optional `_row` column
    holds the source row numbers used in error messages (defaults to 1..n). Raises
    CandleValidationError for the first broken rule; drops exact-timestamp duplicates with a warning.
    """
    step = interval_seconds(interval)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise CandleValidationError(
            source, None, "missing columns", f"need {', '.join(missing)}; found {', '.join(map(str, df.columns))}"
        )
    if len(df) == 0:
        raise CandleValidationError(source, None, "no rows")
    rows = df["_row"].to_numpy() if "_row" in df.columns else np.arange(1, len(df) + 1)

    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    ts = df["open_time"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise CandleValidationError(source, None, "open_time must be parsed to UTC timestamps", f"got dtype {ts.dtype}")
    _first_bad(source, rows, ts.isna().to_numpy(), "unparseable timestamp", lambda i: "open_time is empty or invalid")
    out["open_time"] = ts.dt.tz_convert("UTC").dt.as_unit("ms").reset_index(drop=True)

    for col in CANDLE_COLUMNS[1:]:
        if col not in df.columns:
            continue
        raw = df[col]
        if raw.dtype == object or pd.api.types.is_string_dtype(raw):
            raw = raw.astype("string").str.strip().replace("", pd.NA)  # an empty field is missing, not text
            values = pd.to_numeric(raw, errors="coerce")
        else:
            values = raw
        arr = np.asarray(values, dtype="float64")
        bad = np.isnan(arr) & raw.notna().to_numpy()
        _first_bad(source, rows, bad, f"non-numeric value in {col}", lambda i, r=raw: f"got {r.iloc[i]!r}")
        if col in REQUIRED_COLUMNS:
            _first_bad(source, rows, np.isnan(arr), f"missing value in {col}", lambda i: "required column")
        _first_bad(source, rows, np.isinf(arr), f"infinite value in {col}", lambda i: "")
        if col == "trades":
            _first_bad(
                source,
                rows,
                arr > MAX_TRADES,
                "trades too large",
                lambda i, a=arr: f"trades={a[i]:g}, a trade count can be at most {MAX_TRADES}",
            )
        out[col] = arr

    o, h, l, c = (out[k].to_numpy() for k in PRICE_COLUMNS)
    for col in PRICE_COLUMNS:
        v = out[col].to_numpy()
        _first_bad(source, rows, v <= 0, f"non-positive price in {col}", lambda i, v=v, col=col: f"{col}={v[i]}")
    for col in VOLUME_COLUMNS:
        if col in out:
            v = out[col].to_numpy()
            _first_bad(source, rows, v < 0, f"negative {col}", lambda i, v=v, col=col: f"{col}={v[i]}")
    _first_bad(source, rows, h < l, "high < low", lambda i: f"high={h[i]}, low={l[i]}")
    for name, v in (("open", o), ("close", c)):
        _first_bad(
            source,
            rows,
            (v < l) | (v > h),
            f"{name} outside [low, high]",
            lambda i, v=v, name=name: f"{name}={v[i]}, low={l[i]}, high={h[i]}",
        )

    t = out["open_time"].astype("int64").to_numpy()
    check_time_range(t, rows, source)
    _first_bad(
        source,
        rows,
        t % (step * 1000) != 0,
        f"timestamp not aligned to {interval} bars",
        lambda i: f"open_time={out['open_time'].iloc[i]}",
    )
    dt = np.diff(t)
    back = np.flatnonzero(dt < 0)
    if len(back):
        j = int(back[0])  # t[j + 1] < t[j]: blame row j if it is the one that jumped forward
        culprit = j if j >= 1 and t[j + 1] > t[j - 1] else j + 1
        more = f"; {len(back) - 1} more step(s) back in time" if len(back) > 1 else ""
        raise CandleValidationError(
            source,
            int(rows[culprit]),
            "non-monotonic timestamp",
            f"{out['open_time'].iloc[j + 1]} comes before {out['open_time'].iloc[j]}{more}",
        )
    dup = np.concatenate([[False], dt == 0])
    if dup.any():
        first = first_conflict(out, dup)
        if first is not None:
            raise CandleValidationError(
                source,
                int(rows[first]),
                "conflicting duplicate candles",
                f"open_time {out['open_time'].iloc[first]} appears again with different "
                f"values (first at row {int(rows[first - 1])})",
            )
        warnings.warn(
            f"{source}: dropped {int(dup.sum())} duplicate candle(s) (first at row {int(rows[dup][0])})", stacklevel=2
        )
        out = out.loc[~dup].reset_index(drop=True)
    check_spacing(out["open_time"].astype("int64").to_numpy(), np.asarray(rows)[~dup], interval, source)
    return out


def first_conflict(frame: pd.DataFrame, dup: np.ndarray) -> int | None:
    """Index of the first row flagged in `dup` (same open_time as the row before it) whose values
    differ from that row's; exact repeats (NaN equal to NaN) are not conflicts."""
    idx = np.flatnonzero(dup)
    differs = np.zeros(len(idx), dtype=bool)
    for col in frame.columns:
        if col == "open_time":
            continue
        v = frame[col].to_numpy(dtype="float64", na_value=np.nan)
        a, b = v[idx], v[idx - 1]
        differs |= ~((a == b) | (np.isnan(a) & np.isnan(b)))
    return int(idx[differs][0]) if differs.any() else None


def check_spacing(t_ms: np.ndarray, rows: np.ndarray, interval: str, source: str) -> None:
    """Unique, sorted, aligned open times: the data's own spacing must agree with `interval`.

    Every step is then a whole number of bars (alignment); with at least two candles the smallest
    step must be exactly one bar, or the file holds coarser bars declared as `interval`.
    """
    if len(t_ms) < 2:
        return
    step_ms = interval_seconds(interval) * 1000
    dt = np.diff(t_ms)
    _first_bad(
        source,
        rows[1:],
        dt % step_ms != 0,
        f"spacing is not a whole number of {interval} bars",
        lambda i: f"{dt[i] / 1000:g}s after the previous candle",
    )
    j = int(np.argmin(dt))
    if dt[j] != step_ms:
        raise CandleValidationError(
            source,
            int(rows[j + 1]),
            f"interval mismatch: data is not {interval} bars",
            f"candles are at least {dt[j] / 1000:g}s apart, {interval} is "
            f"{step_ms / 1000:g}s; declare the data's own interval",
        )


def check_interval_consistency(
    open_ms: np.ndarray, close_ms: np.ndarray, rows: np.ndarray, interval: str, source: str
) -> np.ndarray:
    """Raw exchange rows carry their close time: a bar whose length differs from `interval`
    means the file mixes intervals (or was declared with the wrong one), and is refused.

    One exception, normal in exchange data: the last bar before an outage is cut short (6 of about
    1,500 Binance daily 1-minute dumps of 2020-2021, e.g. 2020-02-19, 2020-03-04 and 2021-04-25,
    close such a bar seconds after it opens, one at 32.287 s). A bar is kept as such a truncated bar when it is shorter than `interval`,
    opens on the interval grid and is followed by a gap (the next bar opens more than one interval
    later) or ends the file. Returns the indices of those bars, for the caller to name in a warning.
    """
    step_ms = interval_seconds(interval) * 1000
    length = close_ms - open_ms + 1
    gap_after = np.append(np.diff(open_ms) > step_ms, True)
    truncated = (length > 0) & (length < step_ms) & (open_ms % step_ms == 0) & gap_after

    def detail(i: int) -> str:
        why = f"bar spans {length[i] / 1000:g}s, {interval} is {step_ms / 1000:g}s"
        if 0 < length[i] < step_ms:
            why += (
                "; a shorter bar is accepted only as the last before an outage, opening on the "
                f"{interval} grid and followed by a gap or the file's end"
            )
        return why

    _first_bad(
        source, rows, (length != step_ms) & ~truncated, f"mixed intervals: bar length differs from {interval}", detail
    )
    return np.flatnonzero(truncated)
