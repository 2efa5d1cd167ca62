"""Imports are all-or-nothing under faults: a process killed at any point, a full disk, a damaged store.

A child process runs a real import and kills itself (SIGKILL, or SIGTERM's default action) at a
named point of the write path; the parent then opens the store as the next user would and checks
that the import is there whole or not at all, that what was stored before is untouched, and that
nothing of the killed import is left behind. The candles are the bundled real BTCUSDT hours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coffee_ml.cli import main
from coffee_ml.data import load_sample, open_store
from coffee_ml.data.backends import StoreDamagedError
from coffee_ml.data.store import STAGING

ROOT = Path(__file__).resolve().parents[1]
N = 72_540  # bundled sample rows

# The child: import the bundled candles as symbol KILL and kill itself at `point`.
CHILD = textwrap.dedent("""
    import os, signal, sys, threading, time
    import pandas as pd
    from coffee_ml.data import backends, load_sample, open_store

    backend, point, sig = sys.argv[1], sys.argv[2], getattr(signal, sys.argv[3])
    symbol = sys.argv[4] if len(sys.argv) > 4 else "KILL"

    def die():
        os.kill(os.getpid(), sig)
        time.sleep(30)

    for cls in (backends.EmbeddedBackend, backends.ServerBackend):
        real_command, real_insert = cls.command, cls.insert_df

        def command(self, sql, params=None, real=real_command):
            if point == "before-attach" and "ATTACH PARTITION" in sql:
                die()
            if point == "before-log" and "import_log (" in sql and sql.lstrip().startswith("INSERT"):
                die()
            real(self, sql, params)
            if point == "after-attach" and "ATTACH PARTITION" in sql:
                die()

        def insert_df(self, table, df, real=real_insert):
            if point == "mid-insert":  # the insert of the staged batch is running when the signal lands
                threading.Timer(0.15, die).start()
            real(self, table, df)
            if point == "mid-insert":
                time.sleep(30)

        cls.command, cls.insert_df = command, insert_df

    if point == "first-use":  # a fresh store loading its bundled sample, killed before it is attached
        point = "before-attach"
        open_store(backend)
    else:
        candles = load_sample().reset_index()
        if point == "mid-insert":  # eight copies of the history, one after another: a slow insert
            step = candles["open_time"].iloc[-1] - candles["open_time"].iloc[0] + pd.Timedelta(hours=1)
            candles = pd.concat([candles.assign(open_time=candles["open_time"] + k * step) for k in range(8)])
        store = open_store(backend, load_sample=False)
        store.write_candles(candles, symbol, "1h")
    print("finished without a fault")
""")


def _kill_import(backend: str, point: str, sig: str = "SIGKILL", symbol: str = "KILL") -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, backend, point, sig, symbol],
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ | {"PYTHONPATH": str(ROOT / "lib")},
    )
    assert proc.returncode == -getattr(signal, sig), (proc.returncode, proc.stdout, proc.stderr[-2000:])


def _staging_dirs(store_path: Path) -> list[Path]:
    return [p for p in store_path.parent.iterdir() if ".staging-" in p.name]


def _keep(store) -> pd.DataFrame:
    """What was stored before the faulty import: another symbol, which must come through it
    unchanged, and 1,000 hours of the imported symbol at twice their prices, which the import
    replaces if, and only if, it becomes visible."""
    first = load_sample().reset_index().iloc[:1000]
    store.write_candles(first, "KEEP", "1h")
    store.write_candles(first.assign(**{c: first[c] * 2 for c in ("open", "high", "low", "close")}), "KILL", "1h")
    return store.load_candles("KEEP", "1h")


def _check_kill_rows(store, visible: int) -> None:
    killed = store.load_candles("KILL", "1h")
    sample = load_sample()
    if visible:
        assert len(killed) == N and np.array_equal(killed["close"].to_numpy(), sample["close"].to_numpy())
    else:  # the earlier rows, untouched
        assert len(killed) == 1000 and np.array_equal(killed["close"].to_numpy(), 2 * sample["close"].iloc[:1000])


@pytest.mark.parametrize(
    ("point", "sig", "visible"),
    [
        ("mid-insert", "SIGKILL", 0),
        ("before-attach", "SIGKILL", 0),
        ("before-attach", "SIGTERM", 0),
        ("after-attach", "SIGKILL", N),
        ("before-log", "SIGKILL", N),
    ],
)
def test_killed_import_is_all_or_nothing_on_the_embedded_store(point, sig, visible):
    store = open_store("embedded", load_sample=False)
    kept = _keep(store)
    _kill_import("embedded", point, sig)
    after = open_store("embedded", load_sample=False)  # the next user: cleans up what the kill left
    _check_kill_rows(after, visible)
    pd.testing.assert_frame_equal(after.load_candles("KEEP", "1h"), kept)
    assert after.staging_tables() == [] and _staging_dirs(after.backend.path) == []
    assert after.list_symbols()["coverage"].ge(0.99).all()
    # the import can simply be run again, and then it is complete
    after.write_candles(load_sample().reset_index(), "KILL", "1h")
    assert len(after.load_candles("KILL", "1h")) == N


@pytest.mark.parametrize(("point", "visible"), [("before-attach", 0), ("after-attach", N)])
def test_killed_import_is_all_or_nothing_on_a_server(server_env, point, visible):
    store = open_store("server", load_sample=False)
    kept = _keep(store)
    _kill_import("server", point)
    _check_kill_rows(store, visible)
    pd.testing.assert_frame_equal(store.load_candles("KEEP", "1h"), kept)
    # another machine may still be importing: a fresh staging table stays until it is stale, and
    # it is never read
    assert len(store.staging_tables()) == 1


def test_server_drops_only_stale_staging_tables(server_env):
    store = open_store("server", load_sample=False)
    db = store.backend.database
    old, fresh = (f"{STAGING}{int((time.time() - age) * 1000)}_1_abcd" for age in (7 * 3600, 60))
    for name in (old, fresh):
        store.backend.command(f"CREATE TABLE {db}.{name} AS {store.table}")
    open_store("server", load_sample=False)
    assert store.staging_tables() == [fresh]


def test_interrupted_first_use_loads_the_sample_next_time():
    _kill_import("embedded", "first-use")
    store = open_store("embedded")
    assert store.list_symbols()[["symbol", "rows"]].values.tolist() == [["BTCUSDT", N]]
    assert store.import_log()["source"].tolist() == ["bundled sample"]


def test_failed_insert_such_as_a_full_disk_leaves_the_store_unchanged(monkeypatch):
    store = open_store("embedded", load_sample=False)
    kept = _keep(store)
    real = type(store.backend).insert_df

    def full_disk(self, table, df):
        real(self, table, df)  # the rows reach the staging table, then the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(store.backend), "insert_df", full_disk)
    with pytest.raises(OSError, match="No space left"):
        store.write_candles(load_sample().reset_index(), "KILL", "1h")
    _check_kill_rows(store, 0)
    pd.testing.assert_frame_equal(store.load_candles("KEEP", "1h"), kept)
    assert store.staging_tables() == [] and _staging_dirs(store.backend.path) == []


def test_killed_cli_import_leaves_no_rows_and_no_staging_files(tmp_path):
    """The real command, killed while its staging folder exists (the batch is being inserted)."""
    candles = load_sample().reset_index()
    step = pd.Timedelta(hours=N)
    big = pd.concat([candles.assign(open_time=candles["open_time"] + k * step) for k in range(6)])
    path = tmp_path / "hours.parquet"
    big.to_parquet(path)
    store_path = Path(os.environ["COFFEE_ML_STORE"])
    open_store("embedded", load_sample=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "coffee_ml.cli", "import", str(path), "--symbol", "KILL", "--interval", "1h"],
        env=os.environ | {"PYTHONPATH": str(ROOT / "lib")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not _staging_dirs(store_path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.kill()
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    store = open_store("embedded", load_sample=False)
    assert len(store.load_candles("KILL", "1h")) == 0
    assert _staging_dirs(store_path) == [] and store.staging_tables() == []


def test_store_made_before_atomic_imports_is_repartitioned_whole():
    from coffee_ml.data import store as store_module
    from coffee_ml.data.backends import EmbeddedBackend

    backend = EmbeddedBackend(os.environ["COFFEE_ML_STORE"])
    backend.command("CREATE DATABASE coffee_ml")
    old_ddl = store_module._DDL.replace("PARTITION BY (symbol, interval)", "PARTITION BY (interval, toYear(open_time))")
    backend.command(old_ddl.format(table="coffee_ml.candles"))
    rows = load_sample().reset_index().astype({"trades": "UInt64"})
    backend.insert_df(
        "coffee_ml.candles", rows.assign(symbol="ETHUSDC", interval="1h")[["symbol", "interval", *rows.columns]]
    )
    store = open_store("embedded")
    assert store.backend.query_df(
        "SELECT partition_key AS k FROM system.tables WHERE name = 'candles' AND database = 'coffee_ml'"
    )["k"].tolist() == ["(symbol, interval)"]
    assert store.list_symbols()[["symbol", "rows"]].values.tolist() == [["BTCUSDT", N], ["ETHUSDC", N]]


def _part_file(store) -> Path:
    path = store.backend.query_df(
        "SELECT path FROM system.parts WHERE database = 'coffee_ml' AND "
        "table = 'candles' AND active AND partition LIKE '%BTCUSDT%'"
    )["path"].iloc[0]
    return Path(path) / "data.bin"


def test_damaged_part_is_named_checked_and_set_aside(capsys):
    store = open_store("embedded")
    kept = _keep(store)
    data = _part_file(store)
    raw = bytearray(data.read_bytes())
    raw[1000::50_000] = bytes(b ^ 0x55 for b in raw[1000::50_000])
    data.write_bytes(bytes(raw))
    with pytest.raises(StoreDamagedError) as err:
        store.load_candles("BTCUSDT", "1h")
    assert "\n" not in str(err.value) and "coffee-ml data check" in str(err.value) and "damaged" in str(err.value)

    assert main(["data", "check"]) == 1
    out, errors = capsys.readouterr()
    assert "DAMAGED: BTCUSDT 1h, part" in out and "CHECKSUM" in out
    assert errors.strip().endswith("then re-import those candles") and "(BTCUSDT 1h)" in errors
    assert main(["data", "check", "--repair"]) == 0
    out, _ = capsys.readouterr()
    assert "set aside damaged part" in out and "re-import BTCUSDT 1h" in out and "SET ASIDE: BTCUSDT 1h" in out
    # the rest of the store reads again; the damaged candles are gone until re-imported
    pd.testing.assert_frame_equal(store.load_candles("KEEP", "1h"), kept)
    assert len(store.load_candles("BTCUSDT", "1h")) == 0
    store.write_candles(load_sample().reset_index(), "BTCUSDT", "1h")
    assert len(store.load_candles("BTCUSDT", "1h")) == N


def test_part_set_aside_at_start_up_is_reported(capsys):
    store = open_store("embedded")
    data = _part_file(store)
    with data.open("r+b") as fh:  # a torn write: the engine sets the part aside when it next starts
        fh.truncate(data.stat().st_size // 2)
    assert main(["data", "list"]) == 0
    _, err = capsys.readouterr()
    assert "1 part(s) of the store are set aside and not read: see `coffee-ml data check`" in err
    assert main(["data", "check"]) == 0
    out, _ = capsys.readouterr()
    assert "SET ASIDE: BTCUSDT 1h" in out and "broken-on-start" in out


def test_import_log_records_each_completed_import(market_data):
    store = open_store("embedded")
    raw = sorted((market_data / "binance-raw" / "2024-03").glob("*.csv"))
    store.import_files(raw, "BTCUSDT", "1m")
    log = store.import_log()
    assert log[["symbol", "interval", "rows", "added"]].values.tolist() == [
        ["BTCUSDT", "1m", 2880, 2880],
        ["BTCUSDT", "1h", N, N],
    ]
    assert log["source"].iloc[0] == ", ".join(map(str, raw)) and log["files"].iloc[0] == 2
    assert np.all(log["imported_at"].diff().dropna() <= pd.Timedelta(0))
