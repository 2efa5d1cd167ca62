"""Read candle files into the canonical schema: Binance raw klines, generic CSV and Parquet.

Every reader keeps the source row number (`_row`, 1-based data line) so validation errors can
name the file and row. Nothing is written here; the store inserts only fully validated batches.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from coffee_ml.data.schema import (
    CANDLE_COLUMNS,
    CandleValidationError,
    _first_bad,
    check_interval_consistency,
    check_time_range,
    first_conflict,
    validate_candles,
)

FORMATS = ("binance", "csv", "parquet")
TABLE_SUFFIXES = {".csv", ".parquet", ".pq"}
COMPRESSED_SUFFIXES = {".gz": "gzip", ".zip": "zip"}
_MAGIC = {b"\x1f\x8b": "gzip", b"PK\x03\x04": "zip"}
BINANCE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base",
    "taker_buy_quote",
    "ignore",
)


def epoch_to_ms(values: np.ndarray) -> np.ndarray:
    """Integer epoch stamps in s/ms/us/ns, unit decided per value by magnitude, to milliseconds.

    Binance switched its spot dumps from milliseconds to microseconds in 2025, and a month of
    files can straddle the switch, so the unit is decided per value, not per file.
    """
    v = values.astype(np.int64)
    a = np.abs(v)
    # magnitudes for dates between 2001 and 2286: s < 1e11 <= ms < 1e14 <= us < 1e17 <= ns
    return np.select([a >= 10**17, a >= 10**14, a >= 10**11], [v // 1_000_000, v // 1000, v], default=v * 1000)


_INTEGER = r"\s*[+-]?\d+\s*"


def _numeric_epoch(col: pd.Series, source: str, rows: np.ndarray, name: str) -> np.ndarray:
    """Integer epoch stamps (any unit) to milliseconds; anything but a whole number is refused here.

    A stamp written as a float (`1.58211e+12`, `1709251259999.0`) has lost or may have lost digits:
    it is refused with its row rather than read as a wrong time that fails later as a bar length.
    """
    text = col.dtype == object or pd.api.types.is_string_dtype(col)
    num = pd.to_numeric(col, errors="coerce")
    f = num.to_numpy(dtype="float64", na_value=np.nan)
    _first_bad(
        source,
        rows,
        np.isnan(f),
        f"unparseable timestamp in {name}",
        lambda i: f"got {col.iloc[i]!r}, expected whole epoch milliseconds or microseconds",
    )
    # a stamp beyond int64 cannot be any unit of a supported date: refuse it before the cast overflows
    huge = np.abs(f) >= 2.0**63
    if huge.any():
        i = int(np.flatnonzero(huge)[0])
        raise CandleValidationError(source, int(rows[i]), f"{name} outside the supported range", f"got {col.iloc[i]!r}")
    if text:
        fractional = ~col.astype(str).str.fullmatch(_INTEGER).to_numpy()
    else:
        fractional = (f % 1 != 0) if pd.api.types.is_float_dtype(col) else np.zeros(len(f), dtype=bool)
    _first_bad(
        source,
        rows,
        fractional,
        f"non-integer timestamp in {name}",
        lambda i: (
            f"got {col.iloc[i]!r}, expected whole epoch milliseconds or microseconds, without a fraction or an exponent"
        ),
    )
    if pd.api.types.is_integer_dtype(num) and num.dtype != np.uint64:
        ints = num.to_numpy(dtype="int64")
    elif text:  # exact digits, not through float64 (which rounds microsecond and nanosecond stamps)
        ints = np.array([int(v) for v in col.astype(str)], dtype=np.int64)
    else:
        ints = num.to_numpy(dtype="int64")
    ms = epoch_to_ms(ints)
    check_time_range(ms, rows, source, name)
    return ms


def _compression(path: Path) -> str | None:
    """'gzip' / 'zip' by extension or by the file's magic bytes (a dump saved without its .gz)."""
    by_name = COMPRESSED_SUFFIXES.get(path.suffix.lower())
    if by_name:
        return by_name
    with path.open("rb") as fh:
        head = fh.read(4)
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), None)


def _first_line(path: Path) -> str:
    """The first text line, decompressed and without a UTF-8 byte-order mark."""
    comp = _compression(path)
    try:
        if comp == "gzip":
            import gzip

            with gzip.open(path, "rt", encoding="utf-8-sig") as fh:
                return fh.readline()
        if comp == "zip":
            import io
            import zipfile

            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                if len(names) != 1:
                    raise CandleValidationError(
                        str(path),
                        None,
                        "unreadable zip archive",
                        f"expected exactly one file inside, found {len(names)}",
                    )
                with zf.open(names[0]) as raw:
                    return io.TextIOWrapper(raw, encoding="utf-8-sig").readline()
        with path.open(encoding="utf-8-sig") as fh:
            return fh.readline()
    except UnicodeDecodeError as exc:
        raise CandleValidationError(
            str(path), None, "not UTF-8 text", f"byte {exc.start} of the first line; is it a binary or compressed file?"
        ) from None
    except (OSError, EOFError, ValueError) as exc:
        if isinstance(exc, CandleValidationError):
            raise
        raise CandleValidationError(str(path), None, f"unreadable {comp or 'text'} file", str(exc)) from None


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    """pandas.read_csv whose errors name the file and, where pandas gives it, the line."""
    try:
        return pd.read_csv(path, compression=_compression(path), encoding="utf-8-sig", engine="c", **kwargs)
    except pd.errors.EmptyDataError:
        raise CandleValidationError(str(path), None, "empty file", "no header and no rows") from None
    except pd.errors.ParserError as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
        if m:
            raise CandleValidationError(
                str(path), int(m.group(2)), "wrong number of fields", f"expected {m.group(1)}, saw {m.group(3)}"
            ) from None
        raise CandleValidationError(str(path), None, "malformed CSV", msg) from None
    except UnicodeDecodeError as exc:
        raise CandleValidationError(
            str(path), None, "not UTF-8 text", f"undecodable byte at offset {exc.start}; is it a binary file?"
        ) from None
    except (OSError, EOFError) as exc:
        raise CandleValidationError(str(path), None, "unreadable file", str(exc)) from None


def read_binance(path: str | Path, interval: str, warn: bool = True) -> pd.DataFrame:
    """Binance kline CSV: headerless 12 columns (a header line, as in some dumps, is skipped).

    A bar cut short by an exchange outage (see `check_interval_consistency`) is kept; each is
    described in `attrs["partial_bars"]` and, with `warn`, named in one warning.
    """
    path = Path(path)
    first = _first_line(path)
    has_header = any(ch.isalpha() for ch in first.split(",")[0])
    raw = _read_csv(path, header=None, skiprows=1 if has_header else 0, dtype=str, na_filter=False)
    if raw.shape[1] != len(BINANCE_COLUMNS):
        raise CandleValidationError(
            str(path),
            None,
            "missing columns",
            f"Binance kline files have {len(BINANCE_COLUMNS)} columns, found {raw.shape[1]}",
        )
    raw.columns = BINANCE_COLUMNS
    rows = np.arange(1, len(raw) + 1) + int(has_header)
    open_ms = _numeric_epoch(raw["open_time"], str(path), rows, "open time")
    close_ms = _numeric_epoch(raw["close_time"], str(path), rows, "close time")
    # close_time is the bar's last tick: open + length - 1 in the file's unit, so +1 ms after // 1000
    partial = check_interval_consistency(open_ms, close_ms, rows, interval, str(path))
    df = raw[list(CANDLE_COLUMNS[1:])].copy()
    df.insert(0, "open_time", pd.to_datetime(open_ms, unit="ms", utc=True))
    df["_row"] = rows
    df.attrs["partial_bars"] = [
        f"{path} row {int(rows[i])} (open {pd.Timestamp(int(open_ms[i]), unit='ms', tz='UTC'):%Y-%m-%d %H:%M} UTC, "
        f"spans {(close_ms[i] - open_ms[i] + 1) / 1000:g}s)"
        for i in partial
    ]
    if warn and len(partial):
        warnings.warn(partial_bars_message(df.attrs["partial_bars"], interval), stacklevel=2)
    return df


def partial_bars_message(bars: Sequence[str], interval: str, limit: int = 20) -> str:
    """One line naming each bar kept although cut short by an exchange outage."""
    shown = "; ".join(bars[:limit]) + (f"; and {len(bars) - limit} more" if len(bars) > limit else "")
    return (
        f"kept {len(bars)} partial bar(s) shorter than {interval}, each the last before an exchange outage "
        f"(the gap after it shows in `coffee-ml data gaps`): {shown}"
    )


def read_table(path: str | Path, fmt: str, mapping: dict[str, str] | None = None) -> pd.DataFrame:
    """Generic CSV (with a header) or Parquet; `mapping` renames source columns to schema names."""
    path = Path(path)
    if fmt == "parquet":
        try:
            df = pd.read_parquet(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise CandleValidationError(str(path), None, "unreadable Parquet file", str(exc).splitlines()[0]) from None
    else:
        df = _read_csv(path, dtype=str, na_filter=True)
    if mapping:
        unknown = [src for src in mapping if src not in df.columns]
        if unknown:
            raise CandleValidationError(
                str(path),
                None,
                "mapped columns not in file",
                f"{', '.join(unknown)}; file has {', '.join(map(str, df.columns))}",
            )
        bad_targets = [dst for dst in mapping.values() if dst not in CANDLE_COLUMNS]
        if bad_targets:
            raise ValueError(
                f"--map targets must be schema columns ({', '.join(CANDLE_COLUMNS)}), got {', '.join(bad_targets)}"
            )
        renamed = [mapping.get(c, c) for c in df.columns]
        clash = sorted({c for c in renamed if renamed.count(c) > 1})
        if clash:
            sources = [str(src) for src, dst in zip(df.columns, renamed) if dst == clash[0]]
            raise CandleValidationError(
                str(path), None, "conflicting column mapping", f"{' and '.join(sources)} would both become {clash[0]}"
            )
        df = df.rename(columns=mapping)
    if "open_time" not in df.columns:
        raise CandleValidationError(
            str(path),
            None,
            "missing columns",
            f"need open_time (use --map SRC=open_time); found {', '.join(map(str, df.columns))}",
        )
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
    # numbers (also written with a fraction or an exponent, which _numeric_epoch refuses by row) are epochs
    if pd.api.types.is_numeric_dtype(col) or pd.to_numeric(col, errors="coerce").notna().all():
        return pd.Series(
            pd.to_datetime(_numeric_epoch(col, source, rows, "open_time"), unit="ms", utc=True), index=col.index
        )
    parsed = pd.to_datetime(col, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CandleValidationError(source, int(rows[i]), "unparseable timestamp in open_time", f"got {col.iloc[i]!r}")
    return parsed


def _table_suffix(path: Path) -> str:
    """.csv for `x.csv` and `x.csv.gz` / `x.csv.zip`: the suffix under any compression suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def detect_format(path: Path) -> str:
    if _table_suffix(path) in {".parquet", ".pq"}:
        return "parquet"
    if _table_suffix(path) != ".csv":
        raise ValueError(f"{path}: cannot tell the format from the extension; pass --format binance|csv|parquet")
    first = [f.strip().lower() for f in _first_line(path).split(",")]
    if len(first) != len(BINANCE_COLUMNS):
        return "csv"
    # headerless dumps start with a number; newer dumps carry a header naming open and close time
    return "binance" if first[0].isdigit() or (first[0] == "open_time" and "close_time" in first) else "csv"


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; a directory stands for its CSV and Parquet files, sorted by name."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and _table_suffix(f) in TABLE_SUFFIXES))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    if not out:
        raise FileNotFoundError(f"no CSV or Parquet files in {', '.join(map(str, paths))}")
    return out


def read_files(
    paths: Sequence[str | Path], interval: str, fmt: str | None = None, mapping: dict[str, str] | None = None
) -> tuple[list[Path], pd.DataFrame]:
    """Read and validate each file, then merge in time order; overlapping rows are dropped with a warning."""
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    files = expand_paths(paths)
    frames, partial = [], []
    for f in files:
        kind = fmt or detect_format(f)
        raw = read_binance(f, interval, warn=False) if kind == "binance" else read_table(f, kind, mapping)
        partial.extend(raw.attrs.get("partial_bars", []))
        frames.append(validate_candles(raw, interval, source=str(f)))
    merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frames) > 1:
        origin = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
        order = np.argsort(merged["open_time"].astype("int64").to_numpy(), kind="stable")
        merged, origin = merged.iloc[order].reset_index(drop=True), origin[order]
        dup = merged["open_time"].duplicated().to_numpy()
        if dup.any():
            # sorted by time, a duplicate's previous row holds the same time (and comes from another
            # file, as each file is already de-duplicated): same values are overlap, others a conflict
            k = first_conflict(merged, dup)
            if k is not None:
                raise CandleValidationError(
                    str(files[origin[k]]),
                    None,
                    "conflicting duplicate candles",
                    f"open_time {merged['open_time'].iloc[k]} differs from the candle in {files[origin[k - 1]]}",
                )
            warnings.warn(f"dropped {int(dup.sum())} candle(s) that appear in more than one file", stacklevel=2)
            merged = merged.loc[~dup].reset_index(drop=True)
    if partial:
        warnings.warn(partial_bars_message(partial, interval), stacklevel=2)
    return files, merged
