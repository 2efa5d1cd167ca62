"""Params files, notebook parameters cells and the papermill runner."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from coffee_ml import config, runner

PARAMS_FILES = sorted(config.PARAMS_DIR.glob("*.yaml"))
NOTEBOOKS = sorted(config.NOTEBOOKS_DIR.glob("*.ipynb"))


def test_repository_has_params_and_notebooks():
    assert "quickstart.yaml" in {p.name for p in PARAMS_FILES}
    assert "00_data.ipynb" in {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("params_file", PARAMS_FILES, ids=lambda p: p.name)
def test_every_params_key_is_a_declared_notebook_parameter(params_file):
    """papermill only warns about unknown parameters; a typo would silently run the defaults."""
    assert runner.check_spec(runner.load_params(params_file)) == []


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_first_and_literal(notebook):
    """Injected values override only names in the params file, so defaults must not be derived."""
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged 'parameters'"
    names = set()
    for node in ast.parse(code[0].source).body:
        assert isinstance(node, ast.Assign), f"{notebook.name}: only assignments in the parameters cell"
        ast.literal_eval(node.value)  # raises for anything but a literal
        names.update(t.id for t in node.targets)
    # papermill parses the cell with a regex: a name it cannot parse could never be overridden
    assert runner.declared_parameters(notebook) == names
    assert runner.RUN_DIR_PARAM in names


def _notebook(path: Path, params: str, body: str) -> None:
    nb = new_notebook(cells=[new_code_cell(params, metadata={"tags": ["parameters"]}), new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _params(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


def test_unknown_parameter_is_reported(tmp_path):
    _notebook(tmp_path / "a.ipynb", "x = 1\nrun_dir = None", "pass")
    spec = runner.load_params(_params(tmp_path, "notebooks:\n  - notebook: a.ipynb\n    parameters: {x: 2, y: 3}\n"))
    assert runner.check_spec(spec, tmp_path) == [f"{spec.source}: a.ipynb declares no parameter(s) y"]
    spec = runner.load_params(_params(tmp_path, "notebooks: [missing.ipynb]\n"))
    assert "notebook missing.ipynb not found" in runner.check_spec(spec, tmp_path)[0]


@pytest.mark.parametrize("text, message", [
    ("parameters: {symbol: X}\n", "non-empty 'notebooks' list"),
    ("notebooks: [a.ipynb]\nparameters: {clickhouse_password: hunter2}\n", "look like credentials"),
    ("notebooks: [{parameters: {}}]\n", r"notebooks\[1\] must be"),
    ("notebooks: [a.ipynb\n", "not valid YAML"),
])
def test_bad_params_files(tmp_path, text, message):
    with pytest.raises(runner.ParamsError, match=message):
        runner.load_params(_params(tmp_path, text))


def test_run_writes_reports_manifest_and_index(tmp_path):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _notebook(nbdir / "a.ipynb", "x = 1\nrun_dir = None",
              "from pathlib import Path\nPath(run_dir, 'a.txt').write_text(str(x * 10))\nprint('x is', x)")
    _notebook(nbdir / "b.ipynb", "x = 1\nlabel = 'b'", "print(label, x)")
    params = _params(tmp_path, "name: demo\nparameters: {x: 4}\nnotebooks:\n  - a.ipynb\n"
                               "  - notebook: b.ipynb\n    parameters: {label: bee}\n")
    index = runner.run(params, outputs=tmp_path / "out", notebooks_dir=nbdir)
    run_dir = index.parent
    assert run_dir.parent == tmp_path / "out" / "runs" and run_dir.name.endswith("-demo")
    assert (run_dir / "a.txt").read_text() == "40"
    executed = nbformat.read(run_dir / "b.ipynb", as_version=4)
    assert "bee 4" in executed.cells[-1].outputs[0]["text"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["name"] == "demo"
    assert [s["notebook"] for s in manifest["notebooks"]] == ["a.ipynb", "b.ipynb"]
    assert manifest["notebooks"][1]["parameters"] == {"x": 4, "label": "bee"}
    assert manifest["packages"]["pandas"] and "commit" in manifest["git"]
    assert all(s["seconds"] > 0 for s in manifest["notebooks"])
    page = index.read_text()
    assert "href='a.html'" in page and "href='b.html'" in page
    assert "bee 4" in (run_dir / "b.html").read_text()


def test_failing_notebook_stops_the_run_and_is_reported(tmp_path):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _notebook(nbdir / "bad.ipynb", "x = 1", "raise ValueError(f'no candles for x={x}')")
    _notebook(nbdir / "after.ipynb", "x = 1", "pass")
    params = _params(tmp_path, "notebooks: [bad.ipynb, after.ipynb]\n")
    with pytest.raises(RuntimeError, match=r"run failed in bad.ipynb: .*no candles for x=1"):
        runner.run(params, outputs=tmp_path / "out", notebooks_dir=nbdir)
    run_dir = next((tmp_path / "out" / "runs").iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and [s["status"] for s in manifest["notebooks"]] == ["failed"]
    assert (run_dir / "bad.html").exists() and not (run_dir / "after.ipynb").exists()
