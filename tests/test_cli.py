"""`coffee-ml` commands: real work on success, one clear line and a non-zero exit on any error."""

from __future__ import annotations

import pytest

from coffee_ml.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_list_and_gaps(capsys, market_data):
    raw = market_data / "binance-raw"
    code, out, err = _run(capsys, "import", str(raw / "2024-03"), "--symbol", "BTCUSDT", "--interval", "1m")
    assert code == 0, err
    assert "imported 2880 BTCUSDT 1m candles from 2 file(s) (2880 new, 0 replaced)" in out
    code, out, _ = _run(capsys, "data", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:5] == ["symbol", "interval", "first", "last", "rows"]
    assert any(line.split()[:2] == ["BTCUSDT", "1m"] and "2880" in line.split() for line in lines)
    assert any(line.split()[:2] == ["BTCUSDT", "1h"] and "72540" in line.split() for line in lines)
    code, out, _ = _run(capsys, "data", "gaps", "BTCUSDT", "--interval", "1h")
    assert code == 0 and "2018-02-08 01:00:00+00:00" in out and " 33 " in out
    code, out, _ = _run(capsys, "data", "gaps", "BTCUSDT", "--interval", "1m")
    assert code == 0 and out.strip() == "no gaps in BTCUSDT 1m"


def test_generic_csv_with_map(capsys, tmp_path, btc_1m):
    csv = tmp_path / "mine.csv"
    btc_1m.iloc[:30].rename(columns={"open_time": "ts", "volume": "vol"}).to_csv(csv, index=False)
    code, out, err = _run(
        capsys,
        "import",
        str(csv),
        "--symbol",
        "MYBTC",
        "--interval",
        "1m",
        "--format",
        "csv",
        "--map",
        "ts=open_time",
        "vol=volume",
    )
    assert code == 0, err
    assert "imported 30 MYBTC 1m candles" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["import", "nope.csv", "--symbol", "BTCUSDT", "--interval", "1m"], "nope.csv: no such file"),
        (["import", "{raw}", "--symbol", "BTCUSDT", "--interval", "1h"], "row 1: mixed intervals"),
        (["import", "{raw}", "--symbol", "btc usdt", "--interval", "1m"], "symbol 'btc usdt' is invalid"),
        (["import", "{raw}", "--symbol", "BTCUSDT", "--interval", "2m"], "unknown interval '2m'"),
        (["import", "{raw}", "--symbol", "BTCUSDT", "--interval", "1m", "--map", "oops"], "--map expects SRC=DST"),
        (["data", "gaps", "BTCUSDT", "--interval", "1m", "--start", "yesterday-ish"], "yesterday-ish"),
        (["data", "list", "--backend", "server"], "needs CLICKHOUSE_HOST"),
        (["run", "params/none.yaml"], "params file not found"),
        (["models", "predict", "BTCUSDT", "1h", "hybrid", "production"], "no saved versions of BTCUSDT/1h/hybrid"),
    ],
)
def test_errors_are_one_line_with_exit_1(capsys, market_data, argv, message):
    raw = str(market_data / "binance-raw" / "2024-03" / "BTCUSDT-1m-2024-03-01.csv")
    code, out, err = _run(capsys, *[a.replace("{raw}", raw) for a in argv])
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("coffee-ml: error: ") and message in err


def test_server_backend_from_environment(capsys, server_env, market_data):
    """CLICKHOUSE_HOST alone switches the CLI to the server: nothing about it on the command line."""
    day = market_data / "binance-raw" / "2024-03" / "BTCUSDT-1m-2024-03-02.csv"
    code, out, err = _run(capsys, "import", str(day), "--symbol", "BTCUSDT", "--interval", "1m")
    assert code == 0, err
    code, out, _ = _run(capsys, "data", "list")
    assert "BTCUSDT" in out and "1440" in out and "72540" not in out  # no bundled sample on a server


def _tiny_notebooks(tmp_path, monkeypatch):
    """A notebooks folder of two tiny notebooks, in place of the project's, and a params file for them."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from coffee_ml import config

    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    for name, params in (("a.ipynb", "x = 1\nepochs = 3"), ("b.ipynb", "x = 1")):
        nb = new_notebook(cells=[new_code_cell(params, metadata={"tags": ["parameters"]}), new_code_cell("print(x)")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nbdir / name)
    monkeypatch.setattr(config, "NOTEBOOKS_DIR", nbdir)
    params = tmp_path / "p.yaml"
    params.write_text("name: tiny\nparameters: {x: 2}\nnotebooks: [a.ipynb, b.ipynb]\n")
    return params


def test_run_with_overrides_shows_progress_and_prints_the_index(capsys, tmp_path, monkeypatch):
    import json
    from pathlib import Path

    params = _tiny_notebooks(tmp_path, monkeypatch)
    code, out, err = _run(capsys, "run", str(params), "-p", "x=5", "--param", "epochs=1")
    assert code == 0, err
    index = Path(out.strip())
    assert index.name == "index.html" and index.is_file()
    manifest = json.loads((index.parent / "manifest.json").read_text())
    assert [s["parameters"] for s in manifest["notebooks"]] == [{"x": 5, "epochs": 1}, {"x": 5}]
    assert "[1/2] a.ipynb" in err and "[2/2] b.ipynb" in err and "  b.ipynb cell 3/3" in err
    assert f"run {index.parent.name} ok in" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-p", "nope=1"], "no notebook of {params} declares parameter(s) nope"),
        (["-p", "x"], "-p expects key=value"),
        (["-p", "x=[1"], "-p x: value is not valid YAML"),
    ],
)
def test_bad_overrides_are_one_line_errors(capsys, tmp_path, monkeypatch, argv, message):
    params = _tiny_notebooks(tmp_path, monkeypatch)
    code, out, err = _run(capsys, "run", str(params), *argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and message.format(params=params) in err
    from coffee_ml import config

    assert not (config.outputs_dir() / "runs").exists()  # checked before any run folder is made


def test_backtest_from_the_shell_writes_a_run_folder(capsys):
    from pathlib import Path

    code, out, err = _run(
        capsys,
        "backtest",
        "--symbol",
        "BTCUSDT",
        "--models",
        "drift",
        "--method",
        "walk_forward",
        "--from",
        "2025-06-01",
        "--to",
        "2025-09-01",
        "--retrain-every",
        "720",
        "--epochs",
        "1",
        "-p",
        "n_jobs=1",
    )
    assert code == 0, err
    lines = out.strip().splitlines()
    index = Path(lines[-1])
    assert index.name == "index.html" and (index.parent / "03_backtesting.html").is_file()
    assert index.parent.name.split("-")[2:4] == ["backtest", "BTCUSDT"]
    assert "[1/1] 03_backtesting.ipynb" in err
    assert "drift" in out  # the summary: verdicts and key scores per model


def test_backtest_unknown_model_fails_before_running(capsys):
    code, out, err = _run(capsys, "backtest", "--symbol", "BTCUSDT", "--models", "hybrid,nope")
    assert code == 1 and "unknown model 'nope'" in err and "[1/1]" not in err
