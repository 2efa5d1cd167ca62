"""`coffee-ml` commands: real work on success, one clear line and a non-zero exit on any error."""

from __future__ import annotations

import pytest

from coffee_ml.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_list_and_gaps(capsys, shared_data):
    raw = shared_data / "binance-raw"
    code, out, err = _run(capsys, "import", str(raw / "2024-03"), "--symbol", "BTCUSDT", "--interval", "1m")
    assert code == 0, err
    assert "imported 44640 BTCUSDT 1m candles from 31 file(s) (44640 new, 0 replaced)" in out
    code, out, _ = _run(capsys, "data", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:5] == ["symbol", "interval", "first", "last", "rows"]
    assert any(line.split()[:2] == ["BTCUSDT", "1m"] and "44640" in line.split() for line in lines)
    assert any(line.split()[:2] == ["BTCUSDT", "1h"] and "72540" in line.split() for line in lines)
    code, out, _ = _run(capsys, "data", "gaps", "BTCUSDT", "--interval", "1h")
    assert code == 0 and "2018-02-08 01:00:00+00:00" in out and " 33 " in out
    code, out, _ = _run(capsys, "data", "gaps", "BTCUSDT", "--interval", "1m")
    assert code == 0 and out.strip() == "no gaps in BTCUSDT 1m"


def test_generic_csv_with_map(capsys, tmp_path, btc_1m):
    csv = tmp_path / "mine.csv"
    btc_1m.iloc[:30].rename(columns={"open_time": "ts", "volume": "vol"}).to_csv(csv, index=False)
    code, out, err = _run(capsys, "import", str(csv), "--symbol", "MYBTC", "--interval", "1m", "--format", "csv",
                          "--map", "ts=open_time", "vol=volume")
    assert code == 0, err
    assert "imported 30 MYBTC 1m candles" in out


@pytest.mark.parametrize("argv, message", [
    (["import", "nope.csv", "--symbol", "BTCUSDT", "--interval", "1m"], "nope.csv: no such file"),
    (["import", "{raw}", "--symbol", "BTCUSDT", "--interval", "1h"], "row 1: mixed intervals"),
    (["import", "{raw}", "--symbol", "btc usdt", "--interval", "1m"], "symbol 'btc usdt' is invalid"),
    (["import", "{raw}", "--symbol", "BTCUSDT", "--interval", "2m"], "unknown interval '2m'"),
    (["import", "{raw}", "--symbol", "BTCUSDT", "--interval", "1m", "--map", "oops"], "--map expects SRC=DST"),
    (["data", "gaps", "BTCUSDT", "--interval", "1m", "--start", "yesterday-ish"], "yesterday-ish"),
    (["data", "list", "--backend", "server"], "needs CLICKHOUSE_HOST"),
    (["run", "params/none.yaml"], "params file not found"),
    (["models", "predict", "BTCUSDT", "1h", "hybrid", "production"], "no saved versions of BTCUSDT/1h/hybrid"),
])
def test_errors_are_one_line_with_exit_1(capsys, shared_data, argv, message):
    raw = str(shared_data / "binance-raw" / "2024-03" / "BTCUSDT-1m-2024-03-01.csv")
    code, out, err = _run(capsys, *[a.replace("{raw}", raw) for a in argv])
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("coffee-ml: error: ") and message in err


def test_server_backend_from_environment(capsys, server_env, shared_data):
    """CLICKHOUSE_HOST alone switches the CLI to the server: nothing about it on the command line."""
    day = shared_data / "binance-raw" / "2024-03" / "BTCUSDT-1m-2024-03-05.csv"
    code, out, err = _run(capsys, "import", str(day), "--symbol", "BTCUSDT", "--interval", "1m")
    assert code == 0, err
    code, out, _ = _run(capsys, "data", "list")
    assert "BTCUSDT" in out and "1440" in out and "72540" not in out  # no bundled sample on a server
