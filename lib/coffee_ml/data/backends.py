"""Two ways to reach ClickHouse that run the same SQL: embedded chdb and a server.

Both take ClickHouse query parameters (`{name:Type}` placeholders with a `params` dict), so
no value is ever formatted into SQL text.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
from filelock import FileLock, Timeout

from coffee_ml.config import ClickHouseSettings


class StoreBusyError(RuntimeError):
    """The embedded store stayed in use by another process for longer than the timeout."""


class StoreDamagedError(RuntimeError):
    """A read hit a damaged part of the store (checksum mismatch, truncated file)."""


# ClickHouse error codes of a part whose files are damaged on disk, as opposed to a bad query
_DAMAGE = re.compile(
    r"CHECKSUM_DOESNT_MATCH|CORRUPTED_DATA|CANNOT_READ_ALL_DATA|UNKNOWN_PART_TYPE|"
    r"CANNOT_DECOMPRESS|Checksum mismatch|Checksum doesn't match"
)
# Every insert lands as one block, so as one part: attaching a single part is atomic on disk too.
# Batches are validated to one row per open_time, so the engine has nothing to collapse on insert
# (optimize_on_insert off halves the time of a one-part insert).
ONE_PART = {
    "min_insert_block_size_rows": 10**12,
    "min_insert_block_size_bytes": 10**13,
    "max_insert_threads": 1,
    "optimize_on_insert": 0,
}
# Stale staging files of the embedded store older than this belong to no running import.
STALE_STAGING_S = 3600.0


def damaged(exc: Exception, where: str) -> StoreDamagedError | None:
    """One line for a read that failed on damaged files, naming the part; None for other errors."""
    text = str(exc)
    if not _DAMAGE.search(text):
        return None
    part = re.search(r"(?:data )?part '?([A-Za-z0-9_]+)'?", text)
    code = _DAMAGE.search(text).group(0)
    return StoreDamagedError(
        f"the candle store at {where} is damaged ({code}"
        f"{f' in part {part.group(1)}' if part else ''}): run `coffee-ml data check` "
        "to list damaged parts and `coffee-ml data check --repair` to set them aside"
    )


class Backend(Protocol):
    """What the candle store needs from a ClickHouse connection."""

    name: str
    database: str

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame: ...

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    def insert_df(self, table: str, df: pd.DataFrame) -> None:
        """Insert `df` into `table` as one part (see ONE_PART)."""
        ...

    def session(self) -> Any: ...


class EmbeddedBackend:
    """chdb on a directory: a real ClickHouse engine in this process, no server.

    chdb lets one process open a store path at a time (a second gets "Error initializing
    EmbeddedServer"), and one session per process. Notebook kernels, papermill runs, batch jobs
    and test workers share the store, so each operation opens it under an inter-process file
    lock and closes it right after; a process that finds it busy waits up to `timeout` seconds.
    `session()` keeps it open across several statements (re-entrant within a thread).
    """

    name = "embedded"

    def __init__(self, path: str | os.PathLike[str], timeout: float = 120.0, database: str = "coffee_ml") -> None:
        self.path = Path(path).resolve()
        self.timeout = timeout
        self.database = database
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file_lock = FileLock(str(self.path) + ".lock", thread_local=False)
        self._thread_lock = threading.RLock()
        self._session: Any = None
        self._depth = 0

    @contextmanager
    def session(self) -> Iterator[Any]:
        with self._thread_lock:
            if self._depth == 0:
                self._session = self._open()
            self._depth += 1
            try:
                yield self._session
            finally:
                self._depth -= 1
                if self._depth == 0:
                    try:
                        self._session.close()
                    finally:
                        self._session = None
                        self._file_lock.release()

    def _open(self) -> Any:
        from chdb import session as chdb_session

        deadline = time.monotonic() + self.timeout
        try:
            self._file_lock.acquire(timeout=self.timeout)
        except Timeout:
            raise StoreBusyError(
                f"embedded store {self.path} is busy: another process held it for {self.timeout:g}s "
                "(raise COFFEE_ML_STORE_TIMEOUT to wait longer)"
            ) from None
        self._remove_stale_staging()
        # A process outside coffee-ml (plain chdb) may hold the path without our lock: retry.
        while True:
            try:
                return chdb_session.Session(str(self.path))
            except RuntimeError as exc:
                if "EmbeddedServer" not in str(exc) or time.monotonic() > deadline:
                    self._file_lock.release()
                    if "EmbeddedServer" in str(exc):
                        raise StoreBusyError(
                            f"embedded store {self.path} is held by another program for over {self.timeout:g}s: {exc}"
                        ) from None
                    raise
                time.sleep(0.2)

    @property
    def _staging_prefix(self) -> str:
        return f".{self.path.name}.staging-"

    def _remove_stale_staging(self) -> None:
        """Arrow files of imports killed mid-way (they can be 100 MB each).

        Called with the file lock held, so no import of this store is running: every staging
        folder of this store is stale. Folders of the older, store-agnostic name `.staging-*`
        may belong to another store in the same folder, so only old ones go.
        """
        parent = self.path.parent
        legacy = [p for p in parent.glob(".staging-*") if time.time() - p.stat().st_mtime > STALE_STAGING_S]
        for p in [*parent.glob(self._staging_prefix + "*"), *legacy]:
            shutil.rmtree(p, ignore_errors=True)

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        with self.session() as sess:
            try:
                return sess.query(sql, "DataFrame", params=dict(params or {}))
            except RuntimeError as exc:
                raise damaged(exc, str(self.path)) or exc

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with self.session() as sess:
            sess.query(sql, params=dict(params or {}))

    def insert_df(self, table: str, df: pd.DataFrame) -> None:
        """One INSERT from an Arrow file staged next to the store (NaN becomes NULL), as one part.

        The staging folder is made with the store held, so any found when the store is opened
        was left by a killed import and is removed.
        """
        arrow = pa.Table.from_pandas(df, preserve_index=False)
        cols = ", ".join(df.columns)
        settings = ", ".join(f"{k} = {v}" for k, v in ONE_PART.items())
        with self.session(), tempfile.TemporaryDirectory(dir=self.path.parent, prefix=self._staging_prefix) as tmp:
            staged = Path(tmp) / "batch.arrow"
            feather.write_feather(arrow, staged, compression="uncompressed")
            self.command(
                f"INSERT INTO {table} ({cols}) SELECT * FROM file({{path:String}}, Arrow) SETTINGS {settings}",
                {"path": str(staged)},
            )


class ServerBackend:
    """A ClickHouse server over HTTP with clickhouse-connect; settings from `CLICKHOUSE_*`."""

    name = "server"

    def __init__(self, settings: ClickHouseSettings) -> None:
        import clickhouse_connect

        self.settings = settings
        self.database = settings.database
        try:
            self._client = clickhouse_connect.get_client(
                host=settings.host,
                port=settings.port,
                username=settings.user,
                password=settings.password,
                secure=settings.secure,
                # the driver takes whole seconds: round up so a short timeout is never 0 (= none)
                connect_timeout=math.ceil(settings.connect_timeout),
                send_receive_timeout=math.ceil(settings.send_receive_timeout),
            )
        except Exception as exc:  # the driver's errors name neither host nor port consistently
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> ConnectionError:
        """One line naming the server and, for a timeout, which one ran out."""
        s, text = self.settings, str(exc)
        if "timed out" in text.lower():
            read = "read timed out" in text.lower()
            which = (
                f"no answer within CLICKHOUSE_SEND_RECEIVE_TIMEOUT={s.send_receive_timeout:g} s"
                if read
                else f"no connection within CLICKHOUSE_CONNECT_TIMEOUT={s.connect_timeout:g} s"
            )
            return ConnectionError(f"ClickHouse at {s.host}:{s.port} timed out: {which}")
        return ConnectionError(f"cannot reach ClickHouse at {s.host}:{s.port} as {s.user!r}: {text}")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        from clickhouse_connect.driver.exceptions import OperationalError

        try:
            yield
        except OperationalError as exc:  # network failures; server-side SQL errors pass through
            raise self._unreachable(exc) from exc

    @contextmanager
    def session(self) -> Iterator[Any]:
        yield self._client

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        from clickhouse_connect.driver.exceptions import DatabaseError

        with self._guard():
            try:
                return self._client.query_df(sql, parameters=dict(params or {}))
            except DatabaseError as exc:
                raise damaged(exc, f"{self.settings.host}:{self.settings.port}") or exc

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with self._guard():
            self._client.command(sql, parameters=dict(params or {}))

    def insert_df(self, table: str, df: pd.DataFrame) -> None:
        database, _, name = table.rpartition(".")
        with self._guard():
            self._client.insert_df(
                name, df, database=database or None, column_names=list(df.columns), settings=ONE_PART
            )
