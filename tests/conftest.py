"""Shared fixtures: real market data, and a candle store on each backend.

`market_data` is tests/fixtures/: two untouched daily Binance 1-minute dumps (March 2024,
millisecond timestamps), one from 2025 (microsecond timestamps) and the first 500 ETHUSDC hourly
candles, cut from ../shared/data by tests/fixtures/cut.py and committed, so every data-layer test
runs on a fresh clone. `shared_data` (the full month, 6.7 MB) is only for the few tests whose
point is the whole month; they skip without it.

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
FIXTURES = ROOT / "tests" / "fixtures"
# The exchange's headerless daily dump layout (see ../shared/data/README.md).
RAW_COLUMNS = [
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
]
_db_names = itertools.count()


@pytest.fixture(scope="session")
def market_data() -> Path:
    """The committed real-data fixtures (same layout as ../shared/data, fewer days)."""
    return FIXTURES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The full data set, for tests about a whole month of dumps (31 files, 6.7 MB: not committed)."""
    if not (SHARED_DATA / "binance-raw" / "2024-03").is_dir():
        pytest.skip(
            f"needs the full March 2024 month of raw dumps (6.7 MB, not committed) at {SHARED_DATA}; "
            "tests/fixtures holds two of its days for the other tests"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def btc_1m(market_data: Path) -> pd.DataFrame:
    """Real Binance BTCUSDT 1-minute candles, 1-2 March 2024, `open_time` as a column.

    Read with plain pandas from the fixture dumps, independently of the importers under test.
    """
    days = sorted((market_data / "binance-raw" / "2024-03").glob("*.csv"))
    df = pd.concat([pd.read_csv(p, header=None, names=RAW_COLUMNS) for p in days], ignore_index=True)
    df["open_time"] = pd.to_datetime(df["open_time"], unit="ms", utc=True).astype("datetime64[ms, UTC]")
    return df.drop(columns=["close_time", "ignore"])


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
