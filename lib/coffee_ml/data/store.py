"""The candle store: one table keyed by (symbol, interval, open_time), the same SQL on every backend.

The table is a ReplacingMergeTree with the insert time as version, and every read uses FINAL, so
re-importing a range replaces those candles (the newest import wins) instead of duplicating them.

Imports are all-or-nothing, also when the process is killed or the disk fills: a batch is first
written to a staging table of the same structure, as one part, then moved into the store with one
`ATTACH PARTITION ... FROM`. The table is partitioned by (symbol, interval), so an import touches
exactly one partition, and attaching it is a single atomic step on the engine (in memory and on
disk). A kill before that step leaves only a staging table, which the next open drops; writers
outside coffee-ml (the platform's own candle feed) are never blocked or overwritten. Every
completed import is recorded in `import_log`; the bundled sample counts as loaded only once its
entry is there, so an interrupted first use is retried.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coffee_ml import config, provenance
from coffee_ml.data.backends import Backend, EmbeddedBackend, ServerBackend
from coffee_ml.data.schema import CANDLE_COLUMNS, OPTIONAL_COLUMNS, interval_seconds, validate_candles

TABLE = "candles"
LOG = "import_log"
STAGING = "_import_"  # staging tables: _import_<unix ms>_<pid>_<random>
PARTITION_KEY = "(symbol, interval)"
STALE_SERVER_STAGING_S = 6 * 3600  # a server's staging table this old belongs to no running import
SAMPLE_SOURCE = "bundled sample"
SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,31}$")
_MIN_MS, _MAX_MS = 0, 7_258_118_400_000  # 1970 .. 2200: bounds for an open-ended range
_MIN_TS, _MAX_TS = (pd.Timestamp(v, unit="ms", tz="UTC") for v in (_MIN_MS, _MAX_MS))  # accepted --start/--end

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    symbol LowCardinality(String),
    interval LowCardinality(String),
    open_time DateTime64(3, 'UTC'),
    open Float64, high Float64, low Float64, close Float64, volume Float64,
    quote_volume Nullable(Float64), trades Nullable(UInt64),
    taker_buy_base Nullable(Float64), taker_buy_quote Nullable(Float64),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY (symbol, interval)
ORDER BY (symbol, interval, open_time)
"""

_LOG_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    import_id String, symbol LowCardinality(String), interval LowCardinality(String), source String,
    files UInt32, rows UInt64, added UInt64, first DateTime64(3, 'UTC'), last DateTime64(3, 'UTC'),
    imported_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY imported_at
"""

_RANGE = (
    "symbol = {symbol:String} AND interval = {interval:String} "
    "AND open_time >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC') "
    "AND open_time < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')"
)


def to_utc(value: Any, name: str = "--start/--end") -> pd.Timestamp | None:
    """The project's one time parser: a time bound as a UTC Timestamp (None for None or "").

    Takes ISO strings, dates, datetimes, numpy datetime64 and Timestamps, naive (taken as UTC) or
    tz-aware (converted). Numbers are refused (their unit would be a guess). Errors are one line
    naming the parameter `name` and the value.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (bool, int, float, np.number)):
        raise ValueError(
            f"time bound {value!r} ({name}) is not a date or time: expected a date string such as "
            f"'2024-03-01', a datetime or a Timestamp"
        )
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:  # OutOfBoundsDatetime is a ValueError
        if isinstance(exc, pd.errors.OutOfBoundsDatetime) or isinstance(exc, OverflowError):
            raise ValueError(
                f"time bound {value!r} ({name}) is out of range: use a date between "
                f"{_MIN_TS:%Y-%m-%d} and {_MAX_TS:%Y-%m-%d}"
            ) from None
        raise ValueError(f"time bound {value!r} ({name}) is not a date or time") from None
    if ts is pd.NaT:
        raise ValueError(f"time bound {value!r} ({name}) is not a date or time")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if not _MIN_TS <= ts <= _MAX_TS:
        raise ValueError(
            f"time bound {value!r} ({name}) is out of range: use a date between "
            f"{_MIN_TS:%Y-%m-%d} and {_MAX_TS:%Y-%m-%d}"
        )
    return ts


def like_index(ts: pd.Timestamp, index: pd.Index, name: str = "start") -> pd.Timestamp:
    """A UTC Timestamp from `to_utc` made comparable with a DatetimeIndex: naive UTC for a naive
    index (taken as UTC, as `to_utc` takes naive values), the index's zone for an aware one."""
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"{name} needs candles indexed by open time (a DatetimeIndex), got {type(index).__name__}")
    return ts.tz_convert(None) if index.tz is None else ts.tz_convert(index.tz)


def _check_symbol(symbol: str) -> None:
    if not SYMBOL_RE.fullmatch(symbol or ""):
        raise ValueError(f"symbol {symbol!r} is invalid: expected 1-32 upper-case letters, digits, '.', '_' or '-'")


def _ms(value: str | pd.Timestamp | None, default: int) -> int:
    ts = to_utc(value)
    return default if ts is None else int(ts.value // 1_000_000)


def _candle_frame(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Canonical in-memory candles: UTC millisecond `open_time` index, float64 values (NULL -> NaN).

    Drivers differ on empty results (no columns at all) and time zones (naive UTC or aware), so
    both are normalised here.
    """
    df = df.reindex(columns=["open_time", *columns])
    df["open_time"] = pd.to_datetime(df["open_time"], utc=True).astype("datetime64[ms, UTC]")
    return df.set_index("open_time").astype("float64")


@dataclass(frozen=True)
class ImportReport:
    """What an import did: rows read from the files, new keys added, rows that replaced stored ones.

    `added`/`replaced` come from counts before and after the insert: exact on the embedded store
    (its lock serialises writers), approximate on a server if another import overlaps in time.
    """

    symbol: str
    interval: str
    files: int
    rows: int
    added: int
    replaced: int
    first: pd.Timestamp
    last: pd.Timestamp


class CandleStore:
    """Candles in ClickHouse. Create with `open_store()`; every method is one or two SQL statements."""

    def __init__(self, backend: Backend, load_sample: bool = True) -> None:
        self.backend = backend
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", backend.database):
            raise ValueError(f"CLICKHOUSE_DATABASE must be a plain identifier, got {backend.database!r}")
        self.table = f"{backend.database}.{TABLE}"
        self._ensure_schema(load_sample)

    def _ensure_schema(self, load_sample: bool) -> None:
        db = self.backend.database
        with self.backend.session():
            self.backend.command(f"CREATE DATABASE IF NOT EXISTS {db}")
            self._drop_stale_staging()
            self.backend.command(_LOG_DDL.format(table=f"{db}.{LOG}"))
            key = self.backend.query_df(
                "SELECT partition_key FROM system.tables WHERE database = {db:String} AND name = {name:String}",
                {"db": db, "name": TABLE},
            )
            if key.empty:
                self.backend.command(_DDL.format(table=self.table))
            elif key.iloc[0, 0] != PARTITION_KEY:
                self._repartition()
            if load_sample and isinstance(self.backend, EmbeddedBackend) and not self._sample_loaded():
                from coffee_ml.data.sample import SAMPLE_INTERVAL, SAMPLE_SYMBOL
                from coffee_ml.data.sample import load_sample as sample

                self.write_candles(sample().reset_index(), SAMPLE_SYMBOL, SAMPLE_INTERVAL, source=SAMPLE_SOURCE)

    def _sample_loaded(self) -> bool:
        """Judged by the import log, written only after the sample's rows are in (not by the table)."""
        sql = f"SELECT count() AS n FROM {self.backend.database}.{LOG} WHERE source = {{source:String}}"
        return int(self.backend.query_df(sql, {"source": SAMPLE_SOURCE})["n"].iloc[0]) > 0

    def _repartition(self) -> None:
        """Move a store made before imports were atomic to the (symbol, interval) partitioning.

        The copy is built beside the table and swapped in with one EXCHANGE, so a kill part-way
        leaves the old table whole (and the half-built copy is rebuilt on the next open).
        """
        new = f"{self.backend.database}._repartition_{TABLE}"
        self.backend.command(f"DROP TABLE IF EXISTS {new} SYNC")
        self.backend.command(_DDL.format(table=new))
        self.backend.command(f"INSERT INTO {new} SELECT * FROM {self.table}")
        self.backend.command(f"EXCHANGE TABLES {self.table} AND {new}")
        self.backend.command(f"DROP TABLE {new} SYNC")

    def staging_tables(self, stale_only: bool = False) -> list[str]:
        """Staging tables of imports in progress or killed; `stale_only`: those no import still uses.

        On the embedded store the caller holds the store, so every staging table is stale. On a
        server another machine may be importing: only tables older than STALE_SERVER_STAGING_S are.
        """
        names = self.backend.query_df(
            "SELECT name FROM system.tables WHERE database = {db:String} AND startsWith(name, {prefix:String})",
            {"db": self.backend.database, "prefix": STAGING},
        )
        names = [n for n in names.get("name", pd.Series(dtype=str)).astype(str) if re.fullmatch(r"\w+", n)]
        if not stale_only or isinstance(self.backend, EmbeddedBackend):
            return names
        oldest = time.time() * 1000 - STALE_SERVER_STAGING_S * 1000
        started = {n: re.match(rf"{STAGING}(\d+)_", n) for n in names}
        return [n for n, m in started.items() if m is not None and int(m.group(1)) < oldest]

    def _drop_stale_staging(self) -> list[str]:
        stale = self.staging_tables(stale_only=True)
        for name in stale:
            self.backend.command(f"DROP TABLE IF EXISTS {self.backend.database}.{name} SYNC")
        return stale

    # ----------------------------------------------------------------------------------- reads
    def load_candles(self, symbol: str, interval: str, start=None, end=None) -> pd.DataFrame:
        """Candles in [start, end) indexed by UTC `open_time`; bars with no trading are absent."""
        cols = ", ".join(CANDLE_COLUMNS)
        sql = f"SELECT {cols} FROM {self.table} FINAL WHERE {_RANGE} ORDER BY open_time"
        frame = _candle_frame(
            self.backend.query_df(sql, self._range_params(symbol, interval, start, end)), CANDLE_COLUMNS[1:]
        )
        provenance.record_read("range", symbol, interval, start, end, frame)
        return frame

    def load_last(self, symbol: str, interval: str, bars: int, end=None) -> pd.DataFrame:
        """The last `bars` candles before `end` (default: the newest), oldest first: what a forecast
        from the latest data needs, without reading the whole history."""
        if bars < 1:
            raise ValueError(f"bars must be >= 1, got {bars}")
        cols = ", ".join(CANDLE_COLUMNS)
        sql = (
            f"SELECT * FROM (SELECT {cols} FROM {self.table} FINAL WHERE {_RANGE} "
            "ORDER BY open_time DESC LIMIT {bars:UInt32}) ORDER BY open_time"
        )
        params = self._range_params(symbol, interval, None, end) | {"bars": int(bars)}
        frame = _candle_frame(self.backend.query_df(sql, params), CANDLE_COLUMNS[1:])
        provenance.record_read(f"last {bars}", symbol, interval, None, end, frame)
        return frame

    def resample(
        self, symbol: str, source_interval: str, interval: str, start=None, end=None, complete_only: bool = False
    ) -> pd.DataFrame:
        """Coarser candles computed in SQL: first open, max high, min low, last close, summed volumes.

        Buckets start at multiples of the target length since the Unix epoch (UTC midnight for
        1d). The `bars` column counts the source candles in each bucket, so incomplete buckets
        (exchange outages) stay visible; `complete_only` drops them.
        """
        src, dst = interval_seconds(source_interval), interval_seconds(interval)
        if dst <= src or dst % src:
            raise ValueError(
                f"cannot resample {source_interval} to {interval}: the target must be a "
                f"larger whole multiple of the source"
            )
        sums = ", ".join(f"sum({c}) AS {c}" for c in OPTIONAL_COLUMNS)
        sql = f"""
            SELECT toStartOfInterval(open_time, toIntervalSecond({{step:UInt32}})) AS bucket,
                   argMin(open, open_time) AS open, max(high) AS high, min(low) AS low,
                   argMax(close, open_time) AS close, sum(volume) AS volume, {sums}, count() AS bars
            FROM {self.table} FINAL WHERE {_RANGE}
            GROUP BY bucket {"HAVING bars = {expected:UInt32}" if complete_only else ""}
            ORDER BY bucket"""
        params = self._range_params(symbol, source_interval, start, end) | {"step": dst, "expected": dst // src}
        df = self.backend.query_df(sql, params).rename(columns={"bucket": "open_time"})
        frame = _candle_frame(df, (*CANDLE_COLUMNS[1:], "bars"))
        provenance.record_read(f"resampled to {interval}", symbol, source_interval, start, end, frame)
        return frame

    def list_symbols(self) -> pd.DataFrame:
        """Coverage per (symbol, interval): first and last candle, rows, and bars missing in between."""
        sql = f"""
            SELECT symbol, interval, min(open_time) AS first, max(open_time) AS last, count() AS rows
            FROM {self.table} FINAL GROUP BY symbol, interval ORDER BY symbol, interval"""
        df = self.backend.query_df(sql)
        if df.empty:
            return pd.DataFrame(columns=["symbol", "interval", "first", "last", "rows", "missing", "coverage"])
        for col in ("first", "last"):
            df[col] = pd.to_datetime(df[col], utc=True)
        steps = df["interval"].map(interval_seconds).astype("int64")
        expected = (df["last"] - df["first"]).dt.total_seconds().astype("int64") // steps + 1
        df["rows"] = df["rows"].astype("int64")
        df["missing"] = expected - df["rows"]
        df["coverage"] = df["rows"] / expected
        return df.astype({"symbol": str, "interval": str})

    def gaps(self, symbol: str, interval: str, start=None, end=None) -> pd.DataFrame:
        """Every missing candle range: `gap_start`/`gap_end` are the first/last missing bar's open.

        Computed in SQL from consecutive stored candles. With explicit bounds, missing bars
        between `start` and the first candle, and after the last candle before `end`, count too.
        """
        step_ms = interval_seconds(interval) * 1000
        if to_utc(start) is not None and to_utc(end) is not None and to_utc(start) >= to_utc(end):
            raise ValueError(f"gaps: start {start} is not before end {end}")
        sql = f"""
            SELECT prev_ms + {{step_ms:Int64}} AS gap_start_ms, t_ms - {{step_ms:Int64}} AS gap_end_ms
            FROM (
                SELECT toUnixTimestamp64Milli(open_time) AS t_ms,
                       lagInFrame(toUnixTimestamp64Milli(open_time), 1, toInt64(-1)) OVER
                           (ORDER BY open_time ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS prev_ms
                FROM {self.table} FINAL WHERE {_RANGE}
            )
            WHERE prev_ms >= 0 AND t_ms - prev_ms > {{step_ms:Int64}}
            ORDER BY gap_start_ms"""
        params = self._range_params(symbol, interval, start, end) | {"step_ms": step_ms}
        found = self.backend.query_df(sql, params).reindex(columns=["gap_start_ms", "gap_end_ms"])
        bounds = self.backend.query_df(
            f"SELECT count() AS n, toUnixTimestamp64Milli(min(open_time)) AS lo, "
            f"toUnixTimestamp64Milli(max(open_time)) AS hi FROM {self.table} FINAL WHERE {_RANGE}",
            self._range_params(symbol, interval, start, end),
        )
        n, lo, hi = (int(bounds[c].iloc[0]) for c in ("n", "lo", "hi"))
        gs = list(found["gap_start_ms"].to_numpy(np.int64))
        ge = list(found["gap_end_ms"].to_numpy(np.int64))
        first_bar = None if to_utc(start) is None else -(-_ms(start, 0) // step_ms) * step_ms
        last_bar = None if to_utc(end) is None else (_ms(end, 0) - 1) // step_ms * step_ms
        if n == 0:
            if (
                self.backend.query_df(
                    f"SELECT count() AS n FROM {self.table} FINAL WHERE {_RANGE}",
                    self._range_params(symbol, interval, None, None),
                ).iloc[0, 0]
                == 0
            ):
                raise ValueError(
                    f"no {symbol} {interval} candles stored (see `coffee-ml data list`): nothing to find gaps in"
                )
            if first_bar is not None and last_bar is not None and last_bar >= first_bar:
                gs, ge = [first_bar], [last_bar]
        else:
            if first_bar is not None and lo > first_bar:
                gs, ge = [first_bar, *gs], [lo - step_ms, *ge]
            if last_bar is not None and hi < last_bar:
                gs, ge = [*gs, hi + step_ms], [*ge, last_bar]
        gs, ge = np.asarray(gs, dtype=np.int64), np.asarray(ge, dtype=np.int64)
        out = pd.DataFrame(
            {
                "gap_start": pd.to_datetime(gs, unit="ms", utc=True),
                "gap_end": pd.to_datetime(ge, unit="ms", utc=True),
                "missing_bars": (ge - gs) // step_ms + 1,
            }
        )
        out["duration"] = out["gap_end"] - out["gap_start"] + pd.Timedelta(milliseconds=step_ms)
        return out

    # ---------------------------------------------------------------------------------- writes
    def write_candles(self, df: pd.DataFrame, symbol: str, interval: str, source: str = "<data>") -> ImportReport:
        """Validate then insert in one statement; invalid input raises before anything is written."""
        _check_symbol(symbol)
        clean = validate_candles(df, interval, source)
        return self._insert(clean, symbol, interval, files=1, source=source)

    def import_files(
        self,
        paths: Sequence[str | Path],
        symbol: str,
        interval: str,
        fmt: str | None = None,
        mapping: dict[str, str] | None = None,
    ) -> ImportReport:
        """Read, validate and insert files as one batch: one bad file imports nothing."""
        from coffee_ml.data.importers import read_files

        _check_symbol(symbol)
        files, frame = read_files(paths, interval, fmt=fmt, mapping=mapping)
        return self._insert(frame, symbol, interval, files=len(files), source=", ".join(map(str, files)))

    def _insert(self, clean: pd.DataFrame, symbol: str, interval: str, files: int, source: str) -> ImportReport:
        """Stage the batch as one part, then attach it to the store in one atomic step (module doc)."""
        first, last = clean["open_time"].iloc[0], clean["open_time"].iloc[-1]
        end = last + pd.Timedelta(milliseconds=1)
        batch = clean.copy()
        batch.insert(0, "interval", interval)
        batch.insert(0, "symbol", symbol)
        if "trades" in batch:
            batch["trades"] = batch["trades"].round().astype("UInt64")
        count_sql = f"SELECT count() AS n FROM {self.table} FINAL WHERE {_RANGE}"
        params = self._range_params(symbol, interval, first, end)
        import_id = f"{int(time.time() * 1000)}_{os.getpid()}_{secrets.token_hex(4)}"
        staging = f"{self.backend.database}.{STAGING}{import_id}"
        with self.backend.session():
            before = int(self.backend.query_df(count_sql, params)["n"].iloc[0])
            self.backend.command(f"CREATE TABLE {staging} AS {self.table}")
            try:
                self.backend.insert_df(staging, batch)
                part = self.backend.query_df(f"SELECT DISTINCT _partition_id AS p FROM {staging}")["p"]
                if len(part) != 1 or not re.fullmatch(r"\w+", str(part.iloc[0])):
                    raise RuntimeError(f"staged import {import_id} spans {len(part)} partitions, expected one")
                self.backend.command(f"ALTER TABLE {self.table} ATTACH PARTITION ID '{part.iloc[0]}' FROM {staging}")
            finally:
                self.backend.command(f"DROP TABLE IF EXISTS {staging} SYNC")
            after = int(self.backend.query_df(count_sql, params)["n"].iloc[0])
            added = after - before
            self.backend.command(
                f"INSERT INTO {self.backend.database}.{LOG} (import_id, symbol, interval, source, files, rows, "
                "added, first, last) SELECT {id:String}, {symbol:String}, {interval:String}, {source:String}, "
                "{files:UInt32}, {rows:UInt64}, {added:UInt64}, fromUnixTimestamp64Milli({first:Int64}, 'UTC'), "
                "fromUnixTimestamp64Milli({last:Int64}, 'UTC')",
                {
                    "id": import_id,
                    "symbol": symbol,
                    "interval": interval,
                    "source": source[:2000],
                    "files": files,
                    "rows": len(clean),
                    "added": max(added, 0),
                    "first": int(first.value // 1_000_000),
                    "last": int(last.value // 1_000_000),
                },
            )
        return ImportReport(symbol, interval, files, len(clean), added, len(clean) - added, first, last)

    def import_log(self) -> pd.DataFrame:
        """Every completed import, newest first: what the store holds and where it came from."""
        df = self.backend.query_df(f"SELECT * FROM {self.backend.database}.{LOG} ORDER BY imported_at DESC")
        for col in ("first", "last", "imported_at"):
            if col in df:
                df[col] = pd.to_datetime(df[col], utc=True)
        return df

    def sample_end(self, symbol: str, interval: str) -> pd.Timestamp | None:
        """The last bar of the bundled sample if it was loaded for `symbol` `interval`, else None:
        candles that end there are a frozen snapshot, not a live feed falling behind."""
        sql = (
            f"SELECT max(last) AS last FROM {self.backend.database}.{LOG} WHERE source = {{source:String}} "
            "AND symbol = {symbol:String} AND interval = {interval:String} HAVING count() > 0"
        )
        found = self.backend.query_df(sql, {"source": SAMPLE_SOURCE, "symbol": symbol, "interval": interval})
        return to_utc(found["last"].iloc[0]) if len(found) else None

    def check(self) -> pd.DataFrame:
        """Verify every part of the candle table against its checksums (ClickHouse's CHECK TABLE).

        One row per part: symbol and interval (the partition), rows, `state` ("ok", "damaged":
        reads of it fail, or "set aside": detached by the engine at start-up or by `repair`, so
        its rows are missing from reads) and the engine's message. Writes still succeed on a
        damaged store, so damage can go unnoticed until a read: run this after a crash or disk
        trouble.
        """
        checked = self.backend.query_df(f"CHECK TABLE {self.table} SETTINGS check_query_single_value_result = 0")
        checked = checked.reindex(columns=["part_path", "is_passed", "message"])
        active = self.backend.query_df(
            "SELECT name AS part, partition_id, rows FROM system.parts WHERE database = {db:String} "
            "AND table = {t:String} AND active",
            {"db": self.backend.database, "t": TABLE},
        )
        active = active.merge(
            checked.assign(part=checked["part_path"].astype(str).str.rstrip("/").str.split("/").str[-1]),
            on="part",
            how="left",
        )
        active["state"] = np.where(active["is_passed"].fillna(1).astype(bool), "ok", "damaged")
        aside = self.detached_parts()
        aside["state"] = "set aside"
        aside["message"] = (
            "detached ("
            + aside["reason"].astype(str).replace("", "by repair")
            + ") in "
            + aside["path"].astype(str)
            + ": its rows are not read; re-import this symbol "
            "and interval, then delete the folder"
        )
        names = self.backend.query_df(
            f"SELECT DISTINCT symbol, interval, partitionId(symbol, interval) AS partition_id FROM "
            f"(SELECT symbol, interval FROM {self.backend.database}.{LOG} UNION DISTINCT "
            f"SELECT DISTINCT symbol, interval FROM {self.table})"
        )
        out = pd.concat([active, aside], ignore_index=True).merge(names, on="partition_id", how="left")
        return out.reindex(columns=["symbol", "interval", "part", "rows", "state", "message"])

    def detached_parts(self) -> pd.DataFrame:
        """Parts the engine no longer reads: set aside at start-up as broken, or by `repair`."""
        return self.backend.query_df(
            "SELECT name AS part, partition_id, reason, path FROM system.detached_parts "
            "WHERE database = {db:String} AND table = {t:String}",
            {"db": self.backend.database, "t": TABLE},
        )

    def repair(self) -> tuple[pd.DataFrame, list[str]]:
        """Set damaged parts aside (DETACH PART: moved to the table's detached/ folder, not deleted)
        and drop stale staging tables; returns the parts detached and the tables dropped.

        The rows of a detached part are gone from reads: re-import that symbol and interval.
        """
        with self.backend.session():
            report = self.check()
            bad = report[report["state"] == "damaged"]
            for part in bad["part"]:
                if re.fullmatch(r"\w+", str(part)):
                    self.backend.command(f"ALTER TABLE {self.table} DETACH PART '{part}'")
            return bad, self._drop_stale_staging()

    @staticmethod
    def _range_params(symbol: str, interval: str, start, end) -> dict:
        interval_seconds(interval)
        return {"symbol": symbol, "interval": interval, "start_ms": _ms(start, _MIN_MS), "end_ms": _ms(end, _MAX_MS)}


def open_store(backend: str = "auto", path: str | Path | None = None, load_sample: bool = True) -> CandleStore:
    """The project's candle store.

    `backend`: "embedded" (chdb under outputs/store, filled with the bundled BTCUSDT sample on
    first use), "server" (ClickHouse from `CLICKHOUSE_*` variables) or "auto" (server when
    `CLICKHOUSE_HOST` is set). Credentials are never arguments: they come from the environment.
    """
    settings = config.ClickHouseSettings.from_env()
    if backend == "auto":
        backend = "server" if settings else "embedded"
    if backend == "embedded":
        return CandleStore(
            EmbeddedBackend(path or config.store_path(), timeout=config.store_lock_timeout()), load_sample=load_sample
        )
    if backend == "server":
        if settings is None:
            raise ValueError(
                "backend 'server' needs CLICKHOUSE_HOST (and CLICKHOUSE_PORT/_USER/_PASSWORD/"
                "_DATABASE) in the environment or .env"
            )
        return CandleStore(ServerBackend(settings), load_sample=load_sample)
    raise ValueError(f"backend must be 'auto', 'embedded' or 'server', got {backend!r}")
