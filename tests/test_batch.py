"""Batch files: several params files run in parallel processes, each failure kept to its own entry."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from coffee_ml import batch, config, provenance, runner
from coffee_ml.cli import main
from coffee_ml.reports.index import write_outputs_index

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# tests/fixtures/ETHUSDC-1h-first500.parquet spans 2018-12-15 03:00 .. 2019-01-04 22:00
ETH = (
    'name: eth\nparameters: {symbol: ETHUSDC, interval: 1h, start: "2018-12-15", end: "2019-01-05"}\n'
    "notebooks: [00_data.ipynb]\n"
)
BTC = (
    'name: btc\nparameters: {symbol: BTCUSDT, interval: 1h, start: "2025-06-01", end: "2025-09-01"}\n'
    "notebooks: [00_data.ipynb]\n"
)
TWO = "name: majors\njobs: 1\nruns:\n  - params: btc.yaml\n  - params: eth.yaml\n"


def _files(folder: Path, **texts: str) -> Path:
    """Params files (name=text) next to a batch file (`batch=`); returns the batch file."""
    for name, text in texts.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder / "batch.yaml"


def _state(index: Path) -> dict:
    return json.loads((index.parent / batch.BATCH_JSON).read_text())


def _links(page: Path) -> list[str]:
    from test_reports_export import assert_links_resolve

    return assert_links_resolve(page)


def test_symbols_run_in_parallel_processes(tmp_path):
    from coffee_ml.data import open_store

    open_store().import_files([FIXTURES / "ETHUSDC-1h-first500.parquet"], "ETHUSDC", "1h")
    lines: list[str] = []
    index = batch.run_batch(_files(tmp_path, btc=BTC, eth=ETH, batch=TWO), jobs=2, progress=lines.append)
    assert index.parent.parent == config.outputs_dir() / "batches" and "-majors-" in index.parent.name
    state = _state(index)
    assert state["status"] == "ok" and state["jobs"] == 2
    entries = state["entries"]
    assert [(e["label"], e["symbol"], e["status"]) for e in entries] == [
        ("btc", "BTCUSDT", "ok"),
        ("eth", "ETHUSDC", "ok"),
    ]
    manifests = [json.loads((index.parent / e["run_index"]).with_name("manifest.json").read_text()) for e in entries]
    assert [m["run_id"] for m in manifests] == [e["run_id"] for e in entries]
    assert [m["notebooks"][0]["parameters"]["symbol"] for m in manifests] == ["BTCUSDT", "ETHUSDC"]
    # two processes: each run started before the other finished (manifest times are to the second)
    assert manifests[0]["started"] <= manifests[1]["finished"] and manifests[1]["started"] <= manifests[0]["finished"]
    assert all(e["run_index"] == f"../../runs/{e['run_id']}/index.html" for e in entries)
    assert {e["run_index"] for e in entries} | {e["log"] for e in entries} <= set(_links(index))
    assert all(isinstance(e["pid"], int) for e in entries)
    for e in entries:
        log = (index.parent / e["log"]).read_text()
        assert log.startswith(f"run {e['run_id']} started\n[1/1] 00_data.ipynb\n") and f"run {e['run_id']} ok in" in log
        assert any(line.startswith(f"[{e['label']}] run {e['run_id']} ok in") for line in lines)
    assert lines[0].startswith(f"batch {index.parent.name}: 2 run(s) in 2 process(es)")
    assert lines[-1].startswith(f"batch {index.parent.name} ok in ") and lines[-1].endswith("2 ok, 0 failed")
    outputs_page = (config.outputs_dir() / "index.html").read_text()  # rewritten once the batch finished
    assert f"batches/{index.parent.name}/index.html" in outputs_page and '2 <span class="status ok">' in outputs_page


def test_a_failing_entry_stops_only_itself(capsys, tmp_path):
    """btc runs; btc-2 asks for a range without candles, so its 00_data fails in cell 6; eth names
    a symbol not imported here, so its run never starts. Each failure is kept to its entry."""
    path = _files(
        tmp_path,
        btc=BTC,
        eth=ETH,
        batch="name: majors\nruns:\n  - params: btc.yaml\n  - params: btc.yaml\n"
        '    parameters: {start: "2030-01-01", end: "2030-02-01"}\n  - params: eth.yaml\n',
    )
    code = main(["run", str(path), "--jobs", "2"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    index = next((config.outputs_dir() / "batches").iterdir()) / "index.html"
    assert err.splitlines()[-1] == f"coffee-ml: error: batch majors: 2 of 3 run(s) failed (btc-2, eth) (see {index})"
    assert "[btc] [1/1] 00_data.ipynb" in err and "[btc-2]   failing cell 6/8:" in err
    state = _state(index)
    ok, failed, missing = state["entries"]
    assert (state["status"], ok["status"], failed["status"], missing["status"]) == ("failed", "ok", "failed", "failed")
    assert ok["error"] is None and (index.parent / ok["run_index"]).is_file()
    error = "ValueError: no BTCUSDT 1h candles in [2030-01-01, 2030-02-01); see the coverage table above"
    assert failed["error"] == error and failed["notebook"] == "00_data.ipynb"
    assert failed["overrides"] == {"start": "2030-01-01", "end": "2030-02-01"}
    assert (
        failed["cell"]["number"] == 6 and failed["cell"]["of"] == 8 and "if candles.empty:" in failed["cell"]["source"]
    )
    log = (index.parent / failed["log"]).read_text()
    assert "00_data.ipynb failed in 0:0" in log and error in log and "  failing cell 6/8:\n" in log
    assert '    |     raise ValueError(f"no {symbol} {interval} candles in' in log
    assert (
        missing["run_id"] is None
        and missing["notebook"] is None
        and "no ETHUSDC candles in the store" in missing["error"]
    )
    assert (index.parent / missing["log"]).read_text().startswith("failed: ParamsError: ")
    page = (index.parent / "index.html").read_text()
    assert "code cell 6 of 8" in page and "no BTCUSDT 1h candles in [2030-01-01, 2030-02-01)" in page
    assert "no ETHUSDC candles in the store" in page and page.count("status failed") == 3  # batch, btc-2, eth
    run_dir = (index.parent / failed["run_index"]).parent
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["notebooks"][0]["cell"]["number"] == 6
    assert "code cell 6 of 8" in (run_dir / "index.html").read_text()
    _links(index)


def test_entry_overrides_and_labels(tmp_path):
    path = _files(
        tmp_path,
        btc=BTC,
        batch="runs:\n  - params: btc.yaml\n    parameters: {start: 2025-07-01}\n  - params: btc.yaml\n",
    )
    spec = batch.load_batch(path, overrides={"end": "2025-08-01"})
    assert spec.name == "batch" and spec.jobs is None
    assert [(e.label, e.symbol, e.overrides) for e in spec.entries] == [
        ("btc", "BTCUSDT", {"start": "2025-07-01", "end": "2025-08-01"}),
        ("btc-2", "BTCUSDT", {"end": "2025-08-01"}),
    ]
    assert batch.is_batch(path) and not batch.is_batch(tmp_path / "btc.yaml") and not batch.is_batch(tmp_path / "no")


def test_shipped_batch_file_is_valid():
    spec = batch.load_batch(config.PARAMS_DIR / "batch.yaml")
    assert spec.jobs == 2 and [(e.label, e.symbol) for e in spec.entries] == [
        ("btc_1h", "BTCUSDT"),
        ("eth_1h", "ETHUSDC"),
    ]
    eth = runner.load_params(config.PARAMS_DIR / "eth_1h.yaml")
    assert runner.check_spec(eth) == [] and eth.steps[0].parameters["start"] == "2018-12-15"


@pytest.mark.parametrize(
    "text, message",
    [
        ("runs: []\n", "batch.yaml: expected a mapping with a non-empty 'runs' list"),
        ("runs: [btc.yaml]\n", "batch.yaml: runs[1] must be a mapping with 'params: <file>.yaml'"),
        ("runs:\n  - params: btc.yaml\n  - params: missing.yaml\n", "batch.yaml: runs[2] (missing.yaml): "),
        (
            "runs:\n  - {params: btc.yaml, parameters: {epochs: 3}}\n",
            "runs[1] (btc.yaml): -p: no notebook of {folder}/btc.yaml declares parameter(s) epochs",
        ),
        ("runs:\n  - {params: btc.yaml, paramters: {start: 2025-01-01}}\n", "runs[1]: unknown key(s) paramters"),
        ("job: 2\nruns:\n  - params: btc.yaml\n", "batch.yaml: unknown key(s) job (expected jobs, name, runs)"),
        ("jobs: 0\nruns:\n  - params: btc.yaml\n", "batch.yaml: jobs must be a whole number >= 1, got 0"),
        ("runs:\n  - params: eth.yaml\n", "runs[1] (eth.yaml): {folder}/eth.yaml: expected a mapping with a non-empty"),
    ],
)
def test_bad_batch_files_fail_before_anything_runs(tmp_path, text, message):
    path = _files(tmp_path, btc=BTC, eth="name: eth\n", batch=text)
    with pytest.raises(runner.ParamsError) as caught:
        batch.run_batch(path)
    assert str(path) in str(caught.value) and message.format(folder=tmp_path) in str(caught.value)
    assert not (config.outputs_dir() / "batches").exists() and not (config.outputs_dir() / "runs").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{batch}", "-p", "epochs=3"], "runs[1] (btc.yaml): -p: no notebook of"),
        (["{btc}", "--jobs", "2"], "btc.yaml: --jobs is for batch files"),
    ],
)
def test_cli_errors_exit_1_before_running(capsys, tmp_path, argv, message):
    path = _files(tmp_path, btc=BTC, batch="runs:\n  - params: btc.yaml\n")
    code = main(["run", *[a.format(batch=path, btc=tmp_path / "btc.yaml") for a in argv]])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("coffee-ml: error: ") and message in err
    assert not (config.outputs_dir() / "batches").exists() and not (config.outputs_dir() / "runs").exists()
    with pytest.raises(SystemExit):
        main(["run", str(path), "--jobs", "0"])


def test_each_process_gets_its_share_of_threads_and_reports_every_failure(tmp_path, monkeypatch):
    """`_run_entry` as a worker runs it (here in this process, with the run faked)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "7")  # the user's setting wins
    seen = {}
    failure = runner.RunFailed(
        "run failed",
        tmp_path / "runs" / "r1" / "index.html",
        {
            "notebook": "00_data.ipynb",
            "error": "ValueError: x",
            "cell": {"index": 9, "number": 5, "of": 8, "execution_count": 5, "source": "y"},
        },
    )

    def fake_run(params, outputs, overrides, progress):
        seen.update({var: os.environ.get(var) for var in provenance.THREAD_VARIABLES}, overrides=overrides)
        if params == "fails.yaml":  # as the runner does before its first line
            monkeypatch.setenv(runner.RUN_ID_ENV, "r1")
        progress("[1/1] 00_data.ipynb")
        raise failure if params == "fails.yaml" else KeyError("boom")

    monkeypatch.setattr(runner, "run", fake_run)
    result = batch._run_entry("fails.yaml", {"x": 1}, str(tmp_path), str(tmp_path / "a.log"), 3)
    assert seen == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "7", "overrides": {"x": 1}}
    assert result == {
        "status": "failed",
        "index": str(failure.index),
        "error": "ValueError: x",
        "notebook": "00_data.ipynb",
        "cell": {"number": 5, "of": 8, "source": "y"},
        "seconds": result["seconds"],
    }
    assert (tmp_path / "a.log").read_text() == "run r1 started\n[1/1] 00_data.ipynb\n"
    # the run id still in the environment (a calling kernel's, say) does not name the next entry's run
    result = batch._run_entry("other.yaml", {}, str(tmp_path), str(tmp_path / "b.log"), 3)
    assert result["status"] == "failed" and result["index"] is None and result["error"] == "KeyError: 'boom'"
    log = (tmp_path / "b.log").read_text()
    assert log.startswith("[1/1] 00_data.ipynb\nfailed: KeyError: 'boom'\nTraceback")


def test_a_killed_entry_process_fails_only_its_entry(tmp_path):
    """btc-2's process is killed (as the out-of-memory killer would) once it names its run; btc,
    running beside it, finishes ok, and btc-2's record keeps the run folder it had started."""
    path = _files(tmp_path, btc=BTC, batch="name: majors\njobs: 2\nruns:\n  - params: btc.yaml\n  - params: btc.yaml\n")
    killed: list[int] = []

    def progress(line: str) -> None:
        if line.startswith("[btc-2] run ") and line.endswith(" started"):
            state = json.loads(next((config.outputs_dir() / "batches").glob(f"*/{batch.BATCH_JSON}")).read_text())
            killed.append(state["entries"][1]["pid"])
            os.kill(killed[0], signal.SIGKILL)

    with pytest.raises(RuntimeError, match=r"batch majors: 1 of 2 run\(s\) failed \(btc-2\)"):
        batch.run_batch(path, progress=progress)
    index = next((config.outputs_dir() / "batches").iterdir()) / "index.html"
    state = _state(index)
    ok, dead = state["entries"]
    assert len(killed) == 1 and dead["pid"] == killed[0] and state["status"] == "failed"
    assert (ok["status"], dead["status"]) == ("ok", "failed") and ok["error"] is None
    assert dead["error"] == "entry process killed by SIGKILL before its run finished (see its log)"
    assert dead["run_id"] and dead["run_index"] == f"../../runs/{dead['run_id']}/index.html" != ok["run_index"]
    assert (index.parent / dead["log"]).read_text().startswith(f"run {dead['run_id']} started\n")
    page = index.read_text()
    assert "killed by SIGKILL" in page and page.count("status failed") == 2  # batch, btc-2
    assert {ok["run_index"], dead["run_index"]} <= set(_links(index))


def test_outputs_index_lists_batches_newest_first(tmp_path):
    outputs = tmp_path / "outputs"
    for batch_id, started, status, entries in [
        ("20250101-000000-old-aaaa", "2025-01-01T00:00:00+00:00", "ok", ["ok"]),
        ("20250102-000000-new-bbbb", "2025-01-02T00:00:00+00:00", "failed", ["ok", "failed", "ok"]),
    ]:
        folder = outputs / "batches" / batch_id
        folder.mkdir(parents=True)
        (folder / batch.BATCH_JSON).write_text(
            json.dumps(
                {
                    "batch_id": batch_id,
                    "name": batch_id,
                    "status": status,
                    "started": started,
                    "total_seconds": 61,
                    "entries": [{"status": s} for s in entries],
                }
            )
        )
        (folder / "index.html").write_text("<html></html>")
    (outputs / "batches" / "20250103-000000-empty-cccc").mkdir()  # no batch.json: not listed
    page = write_outputs_index(outputs).read_text()
    assert (
        page.index("<h2>Batches</h2>")
        < page.index("20250102-000000-new-bbbb")
        < page.index("20250101-000000-old-aaaa")
        < page.index("<h2>Runs</h2>")
        and "empty" not in page
    )
    assert '2 <span class="status ok">ok</span> · 1 <span class="status failed">failed</span>' in page
    assert "1 min 1 s" in page and "no runs yet" in page
    assert _links(outputs / "index.html") == [
        "batches/20250102-000000-new-bbbb/index.html",
        "batches/20250101-000000-old-aaaa/index.html",
    ]
    assert "Batches" not in write_outputs_index(tmp_path / "none").read_text()
