"""Several processes share one embedded store: each waits its turn instead of failing."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pandas as pd
import pytest

from coffee_ml.data import StoreBusyError, open_store
from coffee_ml.data.backends import EmbeddedBackend


def _importer(store_path: str, batches: list[list[str]], out: mp.Queue) -> None:
    store = open_store("embedded", path=store_path, load_sample=False)
    for files in batches:
        store.import_files([Path(f) for f in files], "BTCUSDT", "1m")
    out.put(("importer", len(store.load_candles("BTCUSDT", "1m"))))


def _reader(store_path: str, rounds: int, out: mp.Queue) -> None:
    store = open_store("embedded", path=store_path, load_sample=False)
    sizes = [len(store.load_candles("BTCUSDT", "1m")) for _ in range(rounds)]
    out.put(("reader", sizes))


def _holder(store_path: str, seconds: float, ready: mp.Event) -> None:
    backend = EmbeddedBackend(store_path)
    with backend.session():
        ready.set()
        time.sleep(seconds)


def test_two_processes_import_and_read_at_once(tmp_path, market_data):
    store_path = str(tmp_path / "store")
    open_store("embedded", path=store_path, load_sample=False)  # create the schema once
    raw = market_data / "binance-raw"
    # two days in one import, then a third day: 2880 then 4320 candles
    batches = [[str(p) for p in sorted((raw / "2024-03").glob("*.csv"))], [str(raw / "BTCUSDT-1m-2025-06-01.csv")]]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_importer, args=(store_path, batches, out)),
        ctx.Process(target=_reader, args=(store_path, 25, out)),
    ]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results["importer"] == 3 * 1440
    sizes = results["reader"]
    # every read saw a consistent store: whole imports only, never a half-written one
    assert set(sizes) <= {0, 2 * 1440, 3 * 1440} and sizes == sorted(sizes)
    assert len(open_store("embedded", path=store_path, load_sample=False).load_candles("BTCUSDT", "1m")) == 3 * 1440


def test_busy_store_waits_then_fails_clearly(tmp_path):
    store_path = str(tmp_path / "store")
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_holder, args=(store_path, 3.0, ready))
    holder.start()
    try:
        assert ready.wait(60)
        t0 = time.monotonic()
        with pytest.raises(StoreBusyError, match=r"store .*store is busy: another process held it for 0.5s"):
            EmbeddedBackend(store_path, timeout=0.5).query_df("SELECT 1")
        assert 0.4 < time.monotonic() - t0 < 2.5
        # a patient caller gets the store once the holder lets go
        assert EmbeddedBackend(store_path, timeout=30).query_df("SELECT 1 AS x")["x"].tolist() == [1]
    finally:
        holder.join(timeout=30)


def test_sample_is_loaded_once_on_first_use(tmp_path):
    store = open_store("embedded", path=tmp_path / "store")
    table = store.list_symbols()
    assert table[["symbol", "interval", "rows"]].values.tolist() == [["BTCUSDT", "1h", 72540]]
    again = open_store("embedded", path=tmp_path / "store")
    assert again.list_symbols()["rows"].tolist() == [72540]
    last = again.load_candles("BTCUSDT", "1h").index[-1]
    assert last == pd.Timestamp("2025-11-30 23:00", tz="UTC")
