"""clickhouse-connect against the chdb-backed ClickHouse HTTP fixture server (tests/clickhouse_http.py).

The server backend's tests trust this fixture to behave like ClickHouse's HTTP interface, so this
checks the parts they lean on: the handshake, DDL, compressed chunked `insert_df`, parameter binding
(including injection attempts), `query_df` dtypes and error reporting.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

clickhouse_connect = pytest.importorskip("clickhouse_connect")
pytest.importorskip("chdb")
from clickhouse_connect.driver.exceptions import DatabaseError  # noqa: E402

from clickhouse_http import serve  # noqa: E402

DDL = """CREATE TABLE {table} (
    symbol LowCardinality(String), interval LowCardinality(String), open_time DateTime64(3, 'UTC'),
    close Float64, trades Nullable(UInt64)
) ENGINE = ReplacingMergeTree ORDER BY (symbol, interval, open_time)"""
SELECT = """SELECT * FROM {table}
WHERE symbol = {{sym:String}} AND open_time >= fromUnixTimestamp64Milli({{start_ms:Int64}}, 'UTC')
ORDER BY open_time"""


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with serve(tmp_path_factory.mktemp("chdb")) as port:
        yield port


@pytest.fixture(scope="module")
def client(port: int) -> Iterator[object]:
    """A client with default settings, as the server backend makes it (so inserts are lz4-compressed)."""
    client = clickhouse_connect.get_client(host="127.0.0.1", port=port)
    client.command("CREATE DATABASE IF NOT EXISTS md")
    yield client
    client.close()


def candles(n: int, symbol: str = "BTC", start_ms: int = 1_700_000_000_000) -> pd.DataFrame:
    """`n` one-minute candles with a tz-aware UTC time column and every third `trades` missing."""
    trades = pd.array([None if i % 3 == 1 else i for i in range(n)], dtype="UInt64")
    return pd.DataFrame(
        {
            "symbol": symbol,
            "interval": "1m",
            "open_time": pd.to_datetime(start_ms + 60_000 * np.arange(n), unit="ms", utc=True).as_unit("ms"),
            "close": np.linspace(100.0, 200.0, n),
            "trades": trades,
        }
    )


def make_table(client, name: str) -> str:
    table = f"md.{name}"
    client.command(f"DROP TABLE IF EXISTS {table}")
    client.command(DDL.format(table=table))
    return table


def as_sent(df: pd.DataFrame) -> pd.DataFrame:
    """What the default client (tz_mode='naive_utc') returns for `df`: UTC times without a zone."""
    return df.assign(open_time=df["open_time"].dt.tz_convert("UTC").dt.tz_localize(None)).reset_index(drop=True)


def test_insert_and_parameterised_query_round_trip(client, port: int) -> None:
    table = make_table(client, "roundtrip")
    df = pd.concat([candles(4, "BTC"), candles(2, "ETH")], ignore_index=True)
    summary = client.insert_df(table.split(".")[1], df, database="md")
    assert summary.written_rows == 6

    start_ms = 1_700_000_000_000 + 60_000  # drops BTC's first candle
    out = client.query_df(SELECT.format(table=table), parameters={"sym": "BTC", "start_ms": start_ms})
    expected = as_sent(df[(df.symbol == "BTC")].iloc[1:])
    pd.testing.assert_frame_equal(out, expected, check_dtype=False)
    assert out["open_time"].dtype == "datetime64[ms]"
    assert out["close"].dtype == np.float64 and out["trades"].dtype == "UInt64"
    assert out["trades"].isna().tolist() == [True, False, False]

    aware = clickhouse_connect.get_client(host="127.0.0.1", port=port, database="md", tz_mode="aware")
    out = aware.query_df(SELECT.format(table="roundtrip"), parameters={"sym": "ETH", "start_ms": 0})
    assert str(out["open_time"].dtype) == "datetime64[ms, UTC]"
    pd.testing.assert_series_equal(out["open_time"], df["open_time"].iloc[4:].reset_index(drop=True))
    aware.close()


@pytest.mark.parametrize("attack", ["BTC' OR 1=1 --", "'; DROP TABLE md.injection; --", "BTC\\' OR 1=1 --"])
def test_string_parameter_is_data_not_sql(client, attack: str) -> None:
    table = make_table(client, "injection")
    client.insert_df("injection", candles(3), database="md")
    assert client.query_df(SELECT.format(table=table), parameters={"sym": attack, "start_ms": 0}).empty
    assert client.query("SELECT {s:String}", parameters={"s": attack}).result_rows == [(attack,)]
    assert client.command(f"SELECT count() FROM {table}") == 3


def test_long_parameters_use_form_encoding(client) -> None:
    """Bound values past clickhouse-connect's URL limit travel as multipart form fields."""
    table = make_table(client, "many_symbols")
    client.insert_df("many_symbols", candles(2, "SYM00007"), database="md")
    symbols = [f"SYM{i:05d}" for i in range(2_000)]
    out = client.query_df(
        f"SELECT count() AS n FROM {table} WHERE symbol IN {{syms:Array(String)}}", parameters={"syms": symbols}
    )
    assert out["n"].tolist() == [2]


def test_database_errors_carry_clickhouse_message(client) -> None:
    with pytest.raises(DatabaseError, match=r"Code: 60\. .*md\.missing"):
        client.query_df("SELECT * FROM md.missing")
    with pytest.raises(DatabaseError, match="Syntax error"):
        client.command("SELEC 1")
    assert client.command("SELECT 1") == 1  # the server is fine afterwards


@pytest.mark.parametrize("compress", ["zstd", "gzip", False])
def test_insert_body_encodings(port: int, compress: str | bool) -> None:
    other = clickhouse_connect.get_client(host="127.0.0.1", port=port, database="md", compress=compress)
    table = make_table(other, f"enc_{compress or 'none'}")
    other.insert_df(table.split(".")[1], candles(5))
    assert other.command(f"SELECT count() FROM {table}") == 5
    other.close()


def test_large_insert_round_trips(client) -> None:
    """200k rows: several insert blocks in one chunked, lz4-compressed body."""
    table = make_table(client, "large")
    df = candles(200_000)
    assert client.insert_df("large", df, database="md").written_rows == len(df)
    out = client.query_df(SELECT.format(table=table), parameters={"sym": "BTC", "start_ms": 0})
    pd.testing.assert_frame_equal(out, as_sent(df), check_dtype=False)


def test_serve_releases_the_store(tmp_path: Path) -> None:
    """A second server can open a store once the first has stopped: the session is closed cleanly."""
    with serve(tmp_path) as port:
        c = clickhouse_connect.get_client(host="127.0.0.1", port=port)
        c.command("CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x")
        c.command("INSERT INTO t VALUES (1), (2)")
        c.close()
    with serve(tmp_path) as port:
        assert clickhouse_connect.get_client(host="127.0.0.1", port=port).command("SELECT count() FROM t") == 2
