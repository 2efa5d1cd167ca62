"""`coffee-ml rerun` takes only runs of its outputs folder, and checks a manifest whole before it
reads or runs anything: every bad manifest is one line naming the file and what was expected,
never a traceback, never another file's contents, never a new run folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from coffee_ml import config, rerun, runner
from coffee_ml.cli import main

RUN_ID = "20250101-000000-small-abcd"
READ = {
    "how": "load_candles",
    "symbol": "BTCUSDT",
    "interval": "1h",
    "start": "2025-08-01",
    "end": None,
    "rows": 2928,
    "first": "2025-08-01T00:00:00+00:00",
    "last": "2025-11-30T23:00:00+00:00",
    "sha256": "ab" * 32,
}
SECRET = "TOPSECRET-do-not-print-0123456789"


def _manifest(**changes) -> dict:
    entry = {
        "notebook": "02_training.ipynb",
        "stage": "02_training",
        "status": "ok",
        "data": [dict(READ)],
        "parameters": {
            "symbol": "BTCUSDT",
            "interval": "1h",
            "models": ["hybrid", "drift"],
            "model_params": {},
            "window": 48,
        },
    }
    manifest = {
        "run_id": RUN_ID,
        "name": "small",
        "status": "ok",
        "overrides": {},
        "params": {},
        "threads": {"cpus": 2, "OMP_NUM_THREADS": None, "MKL_NUM_THREADS": None},
        "notebooks": [entry],
    }
    return {**manifest, **changes}


def _entry(**changes) -> dict:
    return {**_manifest()["notebooks"][0], **changes}


def _read(**changes) -> dict:
    read = {**READ, **changes}
    return {k: v for k, v in read.items() if v is not _DROP}


_DROP = object()

BAD = {  # name: (manifest.json bytes, words the error must hold)
    "a list": (b"[1, 2]", "expected a JSON object"),
    "empty object": (b"{}", "no 'run_id' or 'notebooks'"),
    "empty file": (b"", "not valid JSON"),
    "invalid JSON": (b'{"run_id": "x", "notebooks": [', "not valid JSON"),
    "not UTF-8": (b'{"run_id": "\xff\xfe"}', "not UTF-8"),
    "latin-1": ('{"run_id": "caf\u00e9"}'.encode("latin-1"), "not UTF-8"),
    "null": (b"null", "expected a JSON object"),
    "a string": (b'"manifest"', "expected a JSON object"),
    "nested too deeply": (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    "no notebooks": (_manifest(notebooks=_DROP), "no 'notebooks'"),
    "no run_id": (_manifest(run_id=_DROP), "no 'run_id'"),
    "run_id a number": (_manifest(run_id=7), "run_id a int"),
    "run_id a path": (_manifest(run_id="../../elsewhere"), "expected a run id"),
    "notebooks a string": (_manifest(notebooks="02_training.ipynb"), "notebooks is text; expected a non-empty list"),
    "notebooks empty": (_manifest(notebooks=[]), "expected a non-empty list"),
    "notebook entry a number": (_manifest(notebooks=[1]), "notebooks[1] is a number"),
    "notebook missing": (_manifest(notebooks=[{"parameters": {}}]), "notebooks[1].notebook null"),
    "notebook a number": (_manifest(notebooks=[_entry(notebook=2)]), "notebooks[1].notebook a int"),
    "notebook /etc/passwd": (
        _manifest(notebooks=[_entry(notebook="../../../../etc/passwd")]),
        "'../../../../etc/passwd': expected the file name of one of the project's notebooks",
    ),
    "notebook absolute": (_manifest(notebooks=[_entry(notebook="/etc/passwd")]), "NN_name.ipynb"),
    "notebook without extension": (_manifest(notebooks=[_entry(notebook="02_training")]), "NN_name.ipynb"),
    "notebook not in the project": (
        _manifest(notebooks=[_entry(), _entry(notebook="09_nosuch.ipynb")]),
        "notebooks[2].notebook '09_nosuch.ipynb': no such notebook",
    ),
    "parameters a list": (_manifest(notebooks=[_entry(parameters=[1])]), "notebooks[1].parameters is a list"),
    "unknown parameter": (_manifest(notebooks=[_entry(parameters={"windw": 3})]), "windw"),
    "data not a list": (_manifest(notebooks=[_entry(data="all")]), "notebooks[1].data is text"),
    "data entry a list": (_manifest(notebooks=[_entry(data=[[1]])]), "notebooks[1].data[1] is a list"),
    "read without sha256": (_manifest(notebooks=[_entry(data=[_read(sha256=_DROP)])]), "data[1].sha256 is missing"),
    "read without last": (_manifest(notebooks=[_entry(data=[_read(last=_DROP)])]), "data[1].last is missing"),
    "rows not a count": (_manifest(notebooks=[_entry(data=[_read(rows="many")])]), "data[1].rows 'many'"),
    "unknown interval": (_manifest(notebooks=[_entry(data=[_read(interval="7x")])]), "data[1].interval '7x'"),
    "last not a time": (_manifest(notebooks=[_entry(data=[_read(last="yesterday")])]), "data[1].last 'yesterday'"),
    "last without zone": (_manifest(notebooks=[_entry(data=[_read(last="2025-11-30T23:00:00")])]), "time zone"),
    "last at the end of time": (
        _manifest(notebooks=[_entry(data=[_read(last="9999-12-31T23:30:00+00:00")])]),
        "manifest.json: ",
    ),  # refused here, or as the pinned `end` by the parameter checks
    "threads a list": (_manifest(threads=[1]), "threads is a list; expected an object"),
    "thread count a command": (_manifest(threads={"OMP_NUM_THREADS": "4; rm -rf /"}), "threads.OMP_NUM_THREADS"),
    "overrides a list": (_manifest(overrides=["x"]), "overrides is a list"),
    "name a number": (_manifest(name=5), "name is a number; expected text"),
}


def _write_run(runs: Path, content: bytes | dict, run_id: str = RUN_ID) -> Path:
    folder = runs / run_id
    folder.mkdir(parents=True)
    if isinstance(content, dict):
        content = json.dumps({k: v for k, v in content.items() if v is not _DROP}).encode()
    (folder / "manifest.json").write_bytes(content)
    return folder


@pytest.fixture
def no_kernels(monkeypatch):
    """Fail the test if a rerun gets as far as running anything."""

    def refuse(*args, **kwargs):
        raise AssertionError("a bad rerun reached run_spec")

    monkeypatch.setattr(rerun, "run_spec", refuse)


def _one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("coffee-ml: error: "), err
    assert "Traceback" not in err and "internal error" not in err, err
    return err


@pytest.mark.parametrize("content, words", list(BAD.values()), ids=list(BAD))
def test_bad_manifests_are_one_line_naming_the_file(capsys, no_kernels, content, words):
    """Through `coffee_ml.cli.main`: exit 1, one line with the manifest's path and what was
    expected, and no run folder or page written."""
    runs = config.outputs_dir() / "runs"
    folder = _write_run(runs, content)
    err = _one_line_error(capsys, ["rerun", RUN_ID])
    assert f"{folder / 'manifest.json'}: " in err and words in err, err
    assert sorted(p.name for p in runs.iterdir()) == [RUN_ID]  # no new run
    assert not (runs.parent / "index.html").exists()


def test_there_are_many_bad_manifests():
    assert len(BAD) >= 15


def test_a_manifest_cannot_make_rerun_read_another_file(tmp_path, capsys, no_kernels, monkeypatch):
    secret = tmp_path / "00_secret.ipynb"
    secret.write_text(SECRET + "\n")
    opened = []
    declared = runner.declared_parameters

    def spy(path):
        opened.append(path)
        return declared(path)

    monkeypatch.setattr(runner, "declared_parameters", spy)
    monkeypatch.setattr(rerun, "declared_parameters", spy)
    runs = config.outputs_dir() / "runs"
    for i, name in enumerate((os.path.relpath(secret, config.NOTEBOOKS_DIR), str(secret), "../../../../etc/passwd")):
        run_id = f"{RUN_ID}{i}"
        _write_run(runs, _manifest(run_id=run_id, notebooks=[_entry(notebook=name)]), run_id)
        err = _one_line_error(capsys, ["rerun", run_id])
        assert "notebooks[1].notebook" in err and SECRET not in err and "root:" not in err
    assert opened == []  # refused before any notebook was opened
    # and a manifest.json that is a link to another file is not read at all
    run_id = f"{RUN_ID}-link"
    (runs / run_id).mkdir()
    (runs / run_id / "manifest.json").symlink_to(secret)
    err = _one_line_error(capsys, ["rerun", run_id])
    assert "outside its run folder" in err and SECRET not in err
    # nor are the recorded numbers it compares with
    run_id = f"{RUN_ID}-metrics"
    folder = _write_run(runs, _manifest(run_id=run_id), run_id)
    (folder / "metrics.json").symlink_to(secret)
    err = _one_line_error(capsys, ["rerun", run_id])
    assert "metrics.json: a link to a file outside its run folder" in err and SECRET not in err
    (folder / "metrics.json").unlink()
    (folder / "metrics.json").write_text("[1, 2]")
    assert "metrics.json: expected a JSON object of records" in _one_line_error(capsys, ["rerun", run_id])


def test_a_run_must_be_in_this_outputs_folder(tmp_path, capsys, no_kernels, monkeypatch):
    """`COFFEE_ML_OUTPUTS=A coffee-ml rerun B/runs/evil`: refused, nothing written under B (or A)."""
    a, b = tmp_path / "A", tmp_path / "B"
    monkeypatch.setenv("COFFEE_ML_OUTPUTS", str(a))
    evil = _write_run(b / "runs", _manifest(run_id="evil"), "evil")
    (a / "runs").mkdir(parents=True)
    (a / "runs" / "linked").symlink_to(evil)  # a link inside A pointing out of it
    monkeypatch.chdir(tmp_path)
    for run in (
        str(evil),
        "B/runs/evil",
        f"{a}/runs/../../B/runs/evil",
        "linked",
        f"{a}/runs/linked",
        str(a / "runs"),
        "..",
        ".",
        "",
        str(a),
        "/etc",
    ):
        err = _one_line_error(capsys, ["rerun", run])
        assert "not a run of" in err or "no run" in err, (run, err)
    assert sorted(p.name for p in b.rglob("*")) == ["evil", "manifest.json", "runs"]
    assert sorted(p.name for p in (a / "runs").iterdir()) == ["linked"] and not (a / "index.html").exists()
    # inside A: by id, by absolute path and by a path relative to the working folder
    mine = _write_run(a / "runs", _manifest(), RUN_ID)
    monkeypatch.chdir(a)
    for run in (RUN_ID, str(mine), f"runs/{RUN_ID}", f"./runs/../runs/{RUN_ID}/"):
        assert rerun.find_run(run) == mine.resolve()


@pytest.mark.parametrize("status", ["running", "died", "interrupted", "failed"])
def test_an_unfinished_run_can_be_rerun_from_its_manifest(status):
    """A killed run's manifest still lists every notebook with its parameters: it is accepted."""
    manifest = _manifest(status=status, finished=None)
    manifest["notebooks"][0].update(status="running", data=[])
    manifest["notebooks"].append(
        {
            "notebook": "03_backtesting.ipynb",
            "stage": "03_backtesting",
            "parameters": {"symbol": "BTCUSDT"},
            "status": "pending",
        }
    )
    folder = _write_run(config.outputs_dir() / "runs", manifest)
    spec = rerun.spec_from_manifest(rerun.load_manifest(folder))
    assert [s.notebook for s in spec.steps] == ["02_training.ipynb", "03_backtesting.ipynb"]
    assert spec.rerun_of == RUN_ID and runner.check_spec(spec) == []
