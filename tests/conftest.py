"""Shared fixtures: real data from ../shared/data, and a candle store on each backend.

The `store` fixture runs every data-layer test twice: on the embedded chdb engine and on the
server backend (clickhouse-connect over HTTP against `clickhouse_http.py`, the embedded engine
serving ClickHouse's HTTP interface), so both paths execute the same SQL.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COFFEE_ML_SHARED_DATA", ROOT.parent / "shared" / "data"))
_db_names = itertools.count()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "BTCUSDT-1m-2024-03.parquet").is_file():
        pytest.skip(f"real market data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def btc_1m(shared_data: Path) -> pd.DataFrame:
    """Real Binance BTCUSDT 1-minute candles, March 2024, `open_time` as a column."""
    df = pd.read_parquet(shared_data / "BTCUSDT-1m-2024-03.parquet")
    df["open_time"] = df["open_time"].astype("datetime64[ms, UTC]")
    return df


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """No test touches the project's outputs/ or a real server named in the developer's shell."""
    for var in ("CLICKHOUSE_HOST", "CLICKHOUSE_PORT", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_DATABASE"):
        monkeypatch.delenv(var, raising=False)
    outputs = tmp_path_factory.mktemp("outputs")
    monkeypatch.setenv("COFFEE_ML_OUTPUTS", str(outputs))
    monkeypatch.setenv("COFFEE_ML_STORE", str(outputs / "store"))


@pytest.fixture(scope="session")
def clickhouse_port(tmp_path_factory):
    from clickhouse_http import serve

    with serve(tmp_path_factory.mktemp("clickhouse-server")) as port:
        yield port


@pytest.fixture
def server_env(clickhouse_port, monkeypatch):
    """Environment that points coffee-ml at the test server, with a database of its own."""
    monkeypatch.setenv("CLICKHOUSE_HOST", "127.0.0.1")
    monkeypatch.setenv("CLICKHOUSE_PORT", str(clickhouse_port))
    monkeypatch.setenv("CLICKHOUSE_DATABASE", f"test_{next(_db_names)}")


@pytest.fixture(params=["embedded", "server"])
def store(request, tmp_path):
    """An empty candle store (no bundled sample) on each backend."""
    from coffee_ml.data import open_store

    if request.param == "server":
        request.getfixturevalue("server_env")
        return open_store("server", load_sample=False)
    return open_store("embedded", path=tmp_path / "store", load_sample=False)
