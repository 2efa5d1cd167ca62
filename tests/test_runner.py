"""Params files, notebook parameters cells and the papermill runner."""

from __future__ import annotations

import ast
import base64
import html
import json
import os
import re
import sys
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from coffee_ml import batch, config, runner
from coffee_ml.reports.records import read_records

PARAMS_FILES = [p for p in sorted(config.PARAMS_DIR.glob("*.yaml")) if not batch.is_batch(p)]  # batches: test_batch
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


@pytest.mark.parametrize(
    "text, message",
    [
        ("parameters: {symbol: X}\n", "non-empty 'notebooks' list"),
        ("notebooks: [a.ipynb]\nparameters: {clickhouse_password: hunter2}\n", "look like credentials"),
        ("notebooks: [{parameters: {}}]\n", r"notebooks\[1\] must be"),
        ("notebooks: [a.ipynb\n", "not valid YAML"),
    ],
)
def test_bad_params_files(tmp_path, text, message):
    with pytest.raises(runner.ParamsError, match=message):
        runner.load_params(_params(tmp_path, text))


def _links(page: Path) -> list[str]:
    """Local targets of every href of a page, each checked to exist (relative links only)."""
    from test_reports_export import assert_links_resolve

    return assert_links_resolve(page)


def test_run_writes_reports_manifest_and_index(tmp_path, nbdir):
    _notebook(
        nbdir / "a.ipynb",
        "x = 1\nrun_dir = None",
        "from pathlib import Path\nPath(run_dir, 'a.txt').write_text(str(x * 10))\nprint('x is', x)",
    )
    _notebook(nbdir / "b.ipynb", "x = 1\nlabel = 'b'", "print(label, x)")
    params = _params(
        tmp_path,
        "name: demo\nparameters: {x: 4}\nnotebooks:\n  - a.ipynb\n"
        "  - notebook: b.ipynb\n    parameters: {label: bee}\n",
    )
    index = runner.run(params, outputs=tmp_path / "out", notebooks_dir=nbdir)
    run_dir = index.parent
    assert run_dir.parent == tmp_path / "out" / "runs" and re.fullmatch(r"\d{8}-\d{6}-demo-[0-9a-f]{4}", run_dir.name)
    assert (run_dir / "a.txt").read_text() == "40"
    executed = nbformat.read(run_dir / "b.ipynb", as_version=4)
    assert "bee 4" in executed.cells[-1].outputs[0]["text"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["name"] == "demo" and manifest["run_id"] == run_dir.name
    assert [s["notebook"] for s in manifest["notebooks"]] == ["a.ipynb", "b.ipynb"]
    assert [s["status"] for s in manifest["notebooks"]] == ["ok", "ok"]
    assert manifest["notebooks"][1]["parameters"] == {"x": 4, "label": "bee"}
    assert manifest["notebooks"][0]["files"] == ["a.txt"] and manifest["notebooks"][1]["files"] == []
    assert manifest["packages"]["pandas"] and "commit" in manifest["git"]
    assert all(s["seconds"] > 0 for s in manifest["notebooks"]) and manifest["total_seconds"] > 0
    _no_absolute_paths(run_dir / "manifest.json", run_dir)
    _no_absolute_paths(run_dir / "a.ipynb", run_dir)
    assert "bee 4" in (run_dir / "b.html").read_text() and "print(label, x)" not in _text(run_dir / "b.html")
    assert "print(label, x)" in _text(run_dir / "b.code.html")
    linked = _links(index)
    assert {
        "a.html",
        "a.code.html",
        "a.ipynb",
        "a.txt",
        "b.html",
        "b.code.html",
        "b.ipynb",
        "manifest.json",
        "../../index.html",
    } <= set(linked)
    assert f"runs/{run_dir.name}/index.html" in _links(tmp_path / "out" / "index.html")


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


@pytest.fixture
def nbdir(tmp_path: Path) -> Path:
    """A folder for the tiny notebooks a test runs."""
    path = tmp_path / "nbs"
    path.mkdir()
    return path


def _no_absolute_paths(path: Path, run_dir: Path) -> None:
    from test_reports_export import without_images

    text = without_images(path.read_text())
    for local in (str(run_dir), str(run_dir.parent), str(Path.home()), str(config.PROJECT_ROOT)):
        assert local not in text, f"{path.name} names {local}"


def test_failing_notebook_is_reported_with_its_cell(tmp_path, nbdir):
    _notebook(nbdir / "bad.ipynb", "x = 1", "y = 2\nraise ValueError(f'no candles for x={x}')")
    _notebook(nbdir / "after.ipynb", "x = 1", "pass")
    params = _params(tmp_path, "notebooks: [bad.ipynb, after.ipynb]\n")
    with pytest.raises(RuntimeError, match=r"run failed in bad.ipynb \(cell 2/2\): ValueError: no candles for x=1"):
        runner.run(params, outputs=tmp_path / "out", notebooks_dir=nbdir)
    run_dir = next((tmp_path / "out" / "runs").iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and [s["status"] for s in manifest["notebooks"]] == ["failed", "skipped"]
    bad = manifest["notebooks"][0]
    assert bad["error"] == "ValueError: no candles for x=1" and bad["seconds"] > 0
    assert bad["cell"]["number"] == 2 and bad["cell"]["of"] == 2 and bad["cell"]["execution_count"] == 2
    assert bad["cell"]["source"] == "y = 2\nraise ValueError(f'no candles for x={x}')"
    executed = nbformat.read(run_dir / "bad.ipynb", as_version=4)
    assert "no candles" in executed.cells[bad["cell"]["index"]].outputs[0]["evalue"]
    assert (run_dir / "bad.html").exists() and not (run_dir / "after.ipynb").exists()
    page = (run_dir / "index.html").read_text()
    assert "ValueError: no candles for x=1" in page and "code cell 2 of 2" in page and "skipped" in page
    assert "failed: ValueError: no candles" in (tmp_path / "out" / "index.html").read_text()


def test_progress_lines_and_run_id_for_kernels(tmp_path, monkeypatch, nbdir):
    monkeypatch.delenv(runner.RUN_ID_ENV, raising=False)
    _notebook(nbdir / "a.ipynb", "x = 1", "import os\nprint(os.environ['COFFEE_ML_RUN_ID'])")
    lines: list[str] = []
    index = runner.run(
        _params(tmp_path, "parameters: {x: 2}\nnotebooks: [a.ipynb]\n"),
        outputs=tmp_path / "out",
        notebooks_dir=nbdir,
        progress=lines.append,
    )
    executed = nbformat.read(index.parent / "a.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["text"].strip() == index.parent.name
    assert runner.RUN_ID_ENV not in os.environ  # only the run's kernels saw it
    assert lines[0] == "[1/1] a.ipynb"
    assert [re.match(r"  a.ipynb cell (\d/\d)  \d+:\d\d \(run \d+:\d\d\)", line).group(1) for line in lines[1:4]] == [
        "1/3",
        "2/3",
        "3/3",
    ]
    assert "parameters" in lines[1] and "injected parameters" in lines[2]
    assert lines[4].startswith("  a.ipynb ok in ") and lines[5].startswith(f"run {index.parent.name} ok in ")


def test_overrides_reach_every_notebook_that_declares_them(tmp_path, nbdir):
    _notebook(nbdir / "a.ipynb", "x = 1\nmodels = ['a']", "print(x, models)")
    _notebook(nbdir / "b.ipynb", "y = 1", "print(y)")
    params = _params(tmp_path, "name: o\nparameters: {}\nnotebooks: [a.ipynb, b.ipynb]\n")
    overrides = runner.parse_overrides(["x=7", "models=[hybrid, drift]", "y=0.5"])
    assert overrides == {"x": 7, "models": ["hybrid", "drift"], "y": 0.5}
    index = runner.run(params, outputs=tmp_path / "out", notebooks_dir=nbdir, overrides=overrides)
    manifest = json.loads((index.parent / "manifest.json").read_text())
    assert [s["parameters"] for s in manifest["notebooks"]] == [{"x": 7, "models": ["hybrid", "drift"]}, {"y": 0.5}]
    assert manifest["overrides"] == overrides
    a = nbformat.read(index.parent / "a.ipynb", as_version=4)
    assert a.cells[-1].outputs[0]["text"].strip() == "7 ['hybrid', 'drift']"
    with pytest.raises(runner.ParamsError, match=r"no notebook of .*p.yaml declares parameter\(s\) nope"):
        runner.run(params, outputs=tmp_path / "out", notebooks_dir=nbdir, overrides={"nope": 1})
    with pytest.raises(runner.ParamsError, match="'run_dir' is set by the runner"):
        runner.run(params, outputs=tmp_path / "out", notebooks_dir=nbdir, overrides={"run_dir": "/x"})
    with pytest.raises(runner.ParamsError, match="-p expects key=value"):
        runner.parse_overrides(["x"])


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch, nbdir):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2025, 1, 1, 12, 0, 0, tzinfo=tz)

    monkeypatch.setattr(runner, "datetime", Frozen)
    _notebook(nbdir / "a.ipynb", "x = 1", "pass")
    params = _params(tmp_path, "name: same\nnotebooks: [a.ipynb]\n")
    first, second = (runner.run(params, outputs=tmp_path / "out", notebooks_dir=nbdir).parent for _ in range(2))
    assert first != second and first.name.startswith("20250101-120000-same-")
    assert [json.loads((d / "manifest.json").read_text())["status"] for d in (first, second)] == ["ok", "ok"]
    # the random suffix collides: the run takes the next one instead of failing on 'File exists'
    suffixes = iter(["beef", "beef", "cafe"])
    monkeypatch.setattr(runner.secrets, "token_hex", lambda n: next(suffixes))
    ids = [runner._new_run_dir(tmp_path / "ids", "same")[0] for _ in range(2)]
    assert ids == ["20250101-120000-same-beef", "20250101-120000-same-cafe"]


def test_pipeline_reports_have_every_figure(tmp_path, monkeypatch):
    """The real notebooks through the runner, small: every figure cell shows its image in the
    executed notebook and in both HTML reports; reviewer reports stay small and name no local path."""
    monkeypatch.delenv("MPLBACKEND", raising=False)  # kernels must draw inline figures
    params = _params(
        tmp_path,
        """
name: tiny
parameters: {symbol: BTCUSDT, interval: 1h, start: "2025-06-01", end: "2025-09-01"}
notebooks:
  - 00_data.ipynb
  - notebook: 01_features.ipynb
    parameters: {groups: [price, volatility]}
  - notebook: 02_training.ipynb
    parameters: {models: [drift], model_params: {}, epochs: 1, groups: [price, volatility]}
  - notebook: 03_backtesting.ipynb
    parameters: {models: [drift], retrain_every: 720, epochs: 1, n_jobs: 1}
""",
    )
    index = runner.run(params)
    run_dir = index.parent
    assert run_dir.parent == config.outputs_dir() / "runs"  # conftest's temporary outputs
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [s["status"] for s in manifest["notebooks"]] == ["ok"] * 4
    for entry in manifest["notebooks"]:
        nb = nbformat.read(run_dir / entry["output"], as_version=4)
        images = 0
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            pngs = sum("image/png" in o.get("data", {}) for o in cell.outputs)
            if re.search(r"\bplots\.\w+\(", cell.source):
                assert pngs, f"{entry['notebook']}: figure cell without an image:\n{cell.source}"
            images += pngs
        for page in (entry["html"], entry["code_html"]):
            html = (run_dir / page).read_text()
            srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)
            assert len(srcs) == html.count("<img") == images, f"{page}: {len(srcs)} images, notebook has {images}"
            assert all(base64.b64decode(s.split(",", 1)[1])[:4] == b"\x89PNG" for s in srcs)
            _no_absolute_paths(run_dir / page, run_dir)
        assert (run_dir / entry["html"]).stat().st_size < 3_000_000
        _no_absolute_paths(run_dir / entry["output"], run_dir)
    _no_absolute_paths(run_dir / "manifest.json", run_dir)
    page = _text(index)
    assert {"00_data.html", "01_features.html", "02_training.html", "03_backtesting.html"} <= set(_links(index))
    records = read_records(run_dir)
    for stage in ("00_data", "01_features", "02_training", "03_backtesting"):
        assert records[stage]["headline"]["text"].splitlines()[0] in page
    # each version saved from the run names the run, and the run lists the versions it saved
    models = config.outputs_dir() / "models"
    saved = {
        "/".join(p.parent.relative_to(models).parts): json.loads(p.read_text())
        for p in models.glob("*/*/*/v*/metadata.json")
    }
    assert set(records["02_training"]["saved_models"]) == set(saved) == {"BTCUSDT/1h/drift/v0001"}
    assert all(meta["run_id"] == run_dir.name for meta in saved.values())
    assert "BTCUSDT/1h/drift/v0001" in page


def test_params_files_cannot_leak_credentials_or_run_foreign_notebooks(tmp_path, nbdir):
    _notebook(nbdir / "a.ipynb", "x = 1\nmodel_params = {}", "pass")
    nested = _params(
        tmp_path, "notebooks:\n  - notebook: a.ipynb\n    parameters: {model_params: {gru: {api_token: s3}}}\n"
    )
    with pytest.raises(runner.ParamsError, match="api_token look like credentials"):
        runner.load_params(nested)
    outside = tmp_path / "elsewhere.ipynb"
    _notebook(outside, "x = 1", "pass")
    spec = runner.load_params(_params(tmp_path, f"notebooks: [{outside}, ../elsewhere.ipynb]\n"))
    problems = [p for p in runner.check_spec(spec, nbdir) if "outside nbs/" in p]
    assert len(problems) == 2
    twice = runner.load_params(_params(tmp_path, "notebooks: [a.ipynb, a.ipynb]\n"))
    assert any("listed twice" in p for p in runner.check_spec(twice, nbdir))
    assert runner.parse_overrides(["start=2024-06-01"]) == {"start": "2024-06-01"}  # not a date object


def test_kernels_run_this_environment_even_with_a_user_python3_kernel(tmp_path, monkeypatch):
    """A `python3` kernel spec a user installed for another Python (user data dir, preferred over
    the environment's with JUPYTER_PREFER_ENV_PATH=0) would win the lookup; the runner (and
    `make lab`) put this environment's kernel specs first."""
    from jupyter_client.kernelspec import KernelSpecManager

    other = tmp_path / "kernels" / "python3"
    other.mkdir(parents=True)
    (other / "kernel.json").write_text(
        json.dumps(
            {
                "argv": ["/usr/bin/false", "-f", "{connection_file}"],
                "display_name": "someone else's Python",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == "/usr/bin/false"  # the hijack
    with runner._kernel_env("run-x"):
        spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] in {"python", "python3", sys.executable}  # jupyter_client runs "python" as sys.executable
    assert Path(spec.resource_dir).resolve().is_relative_to(Path(sys.prefix).resolve())
