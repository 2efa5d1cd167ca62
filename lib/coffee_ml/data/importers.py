"""Read candle files into the canonical schema: Binance raw klines, generic CSV and Parquet.

Every reader keeps the source row number (`_row`, 1-based data line) so validation errors can
name the file and row. Nothing is written here; the store inserts only fully validated batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from coffee_ml.data.schema import (CANDLE_COLUMNS, CandleValidationError, check_interval_consistency,
                                   validate_candles)

FORMATS = ("binance", "csv", "parquet")
BINANCE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
                   "trades", "taker_buy_base", "taker_buy_quote", "ignore")


def epoch_to_ms(values: np.ndarray) -> np.ndarray:
    """Integer epoch stamps in s/ms/us/ns, unit decided per value by magnitude, to milliseconds.

    Binance switched its spot dumps from milliseconds to microseconds in 2025, and a month of
    files can straddle the switch, so the unit is decided per value, not per file.
    """
    v = values.astype(np.int64)
    a = np.abs(v)
    # magnitudes for dates between 2001 and 2286: s < 1e11 <= ms < 1e14 <= us < 1e17 <= ns
    return np.select([a >= 10**17, a >= 10**14, a >= 10**11], [v // 1_000_000, v // 1000, v], default=v * 1000)


def _numeric_epoch(col: pd.Series, source: str, rows: np.ndarray, name: str) -> np.ndarray:
    num = pd.to_numeric(col, errors="coerce")
    bad = num.isna().to_numpy() | (num.to_numpy(dtype="float64", na_value=np.nan) % 1 != 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CandleValidationError(source, int(rows[i]), f"unparseable timestamp in {name}", f"got {col.iloc[i]!r}")
    return epoch_to_ms(num.to_numpy(dtype="int64"))


def read_binance(path: str | Path, interval: str) -> pd.DataFrame:
    """Binance kline CSV: headerless 12 columns (a header line, as in some dumps, is skipped)."""
    path = Path(path)
    with path.open() as fh:
        first = fh.readline()
    has_header = any(ch.isalpha() for ch in first.split(",")[0])
    raw = pd.read_csv(path, header=None, skiprows=1 if has_header else 0, dtype=str, na_filter=False,
                      engine="c")
    if raw.shape[1] != len(BINANCE_COLUMNS):
        raise CandleValidationError(str(path), None, "missing columns",
                                    f"Binance kline files have {len(BINANCE_COLUMNS)} columns, found {raw.shape[1]}")
    raw.columns = BINANCE_COLUMNS
    rows = np.arange(1, len(raw) + 1) + int(has_header)
    open_ms = _numeric_epoch(raw["open_time"], str(path), rows, "open time")
    close_ms = _numeric_epoch(raw["close_time"], str(path), rows, "close time")
    # close_time is the bar's last tick: open + length - 1 in the file's unit, so +1 ms after // 1000
    check_interval_consistency(open_ms, close_ms, rows, interval, str(path))
    df = raw[list(CANDLE_COLUMNS[1:])].copy()
    df.insert(0, "open_time", pd.to_datetime(open_ms, unit="ms", utc=True))
    df["_row"] = rows
    return df


def read_table(path: str | Path, fmt: str, mapping: dict[str, str] | None = None) -> pd.DataFrame:
    """Generic CSV (with a header) or Parquet; `mapping` renames source columns to schema names."""
    path = Path(path)
    df = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path, dtype=str, na_filter=True)
    if mapping:
        unknown = [src for src in mapping if src not in df.columns]
        if unknown:
            raise CandleValidationError(str(path), None, "mapped columns not in file",
                                        f"{', '.join(unknown)}; file has {', '.join(map(str, df.columns))}")
        bad_targets = [dst for dst in mapping.values() if dst not in CANDLE_COLUMNS]
        if bad_targets:
            raise ValueError(f"--map targets must be schema columns ({', '.join(CANDLE_COLUMNS)}), "
                             f"got {', '.join(bad_targets)}")
        df = df.rename(columns=mapping)
    if "open_time" not in df.columns:
        raise CandleValidationError(str(path), None, "missing columns",
                                    f"need open_time (use --map SRC=open_time); found {', '.join(map(str, df.columns))}")
    df = df[[c for c in CANDLE_COLUMNS if c in df.columns]].copy()
    df["_row"] = np.arange(1, len(df) + 1) + (1 if fmt == "csv" else 0)
    df["open_time"] = _parse_times(df["open_time"], str(path), df["_row"].to_numpy())
    return df


def _parse_times(col: pd.Series, source: str, rows: np.ndarray) -> pd.Series:
    """Datetimes, ISO strings (naive = UTC) or integer epochs in any unit, to UTC timestamps."""
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        return col.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(col):
        return col.dt.tz_localize("UTC")
    if pd.api.types.is_numeric_dtype(col) or col.astype(str).str.fullmatch(r"-?\d+").all():
        return pd.Series(pd.to_datetime(_numeric_epoch(col, source, rows, "open_time"), unit="ms", utc=True),
                         index=col.index)
    parsed = pd.to_datetime(col, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CandleValidationError(source, int(rows[i]), "unparseable timestamp in open_time", f"got {col.iloc[i]!r}")
    return parsed


def detect_format(path: Path) -> str:
    if path.suffix.lower() in {".parquet", ".pq"}:
        return "parquet"
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: cannot tell the format from the extension; pass --format binance|csv|parquet")
    with path.open() as fh:
        first = [f.strip().lower() for f in fh.readline().split(",")]
    if len(first) != len(BINANCE_COLUMNS):
        return "csv"
    # headerless dumps start with a number; newer dumps carry a header naming open and close time
    return "binance" if first[0].isdigit() or (first[0] == "open_time" and "close_time" in first) else "csv"


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; a directory stands for its CSV and Parquet files, sorted by name."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in {".csv", ".parquet", ".pq"}))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    if not out:
        raise FileNotFoundError(f"no CSV or Parquet files in {', '.join(map(str, paths))}")
    return out


def read_files(paths: Sequence[str | Path], interval: str, fmt: str | None = None,
               mapping: dict[str, str] | None = None) -> tuple[list[Path], pd.DataFrame]:
    """Read and validate each file, then merge in time order; overlapping rows are dropped with a warning."""
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    files = expand_paths(paths)
    frames = []
    for f in files:
        kind = fmt or detect_format(f)
        raw = read_binance(f, interval) if kind == "binance" else read_table(f, kind, mapping)
        frames.append(validate_candles(raw, interval, source=str(f)))
    merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frames) > 1:
        merged = merged.sort_values("open_time", kind="stable", ignore_index=True)
        dup = merged["open_time"].duplicated().to_numpy()
        if dup.any():
            warnings.warn(f"dropped {int(dup.sum())} candle(s) that appear in more than one file", stacklevel=2)
            merged = merged.loc[~dup].reset_index(drop=True)
    return files, merged
