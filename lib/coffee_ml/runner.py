"""Run notebooks headlessly with papermill: params file in, a self-describing run folder out.

A run folder `outputs/runs/<run-id>/` holds each executed notebook, its HTML rendering, a
`manifest.json` (parameters, git commit, package versions, timings) and an `index.html` that links
the reports, so any result can be traced to the exact code and settings that produced it.
"""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from coffee_ml import config, provenance

RUN_DIR_PARAM = "run_dir"  # injected by the runner into notebooks that declare it
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api_?key|credential", re.IGNORECASE)


class ParamsError(ValueError):
    """A params file that cannot be run as written."""


@dataclass(frozen=True)
class Step:
    notebook: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    name: str
    steps: list[Step]
    source: Path


def load_params(path: str | Path) -> RunSpec:
    """Parse a params YAML: `name`, shared `parameters`, and `notebooks` (names or {notebook, parameters}).

    Shared parameters go to every notebook; a step's own parameters override them.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("notebooks"), list) or not doc["notebooks"]:
        raise ParamsError(f"{path}: expected a mapping with a non-empty 'notebooks' list")
    shared = doc.get("parameters") or {}
    if not isinstance(shared, dict):
        raise ParamsError(f"{path}: 'parameters' must be a mapping")
    steps = []
    for i, entry in enumerate(doc["notebooks"], 1):
        if isinstance(entry, str):
            entry = {"notebook": entry}
        if not isinstance(entry, dict) or "notebook" not in entry:
            raise ParamsError(f"{path}: notebooks[{i}] must be a notebook name or a mapping with 'notebook'")
        own = entry.get("parameters") or {}
        if not isinstance(own, dict):
            raise ParamsError(f"{path}: notebooks[{i}].parameters must be a mapping")
        params = {**shared, **own}
        secrets = [k for k in params if _SECRET_KEY.search(str(k))]
        if secrets:
            raise ParamsError(f"{path}: parameter(s) {', '.join(secrets)} look like credentials; papermill writes "
                              "parameters into output notebooks, so set them in the environment (CLICKHOUSE_*)")
        steps.append(Step(str(entry["notebook"]), params))
    return RunSpec(str(doc.get("name") or path.stem), steps, path)


def declared_parameters(notebook: Path) -> set[str]:
    """Names in the notebook's `parameters` cell, as papermill sees them."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def check_spec(spec: RunSpec, notebooks_dir: Path | None = None) -> list[str]:
    """Every problem that would make papermill silently ignore a parameter or miss a notebook."""
    notebooks_dir = notebooks_dir or config.NOTEBOOKS_DIR
    problems = []
    for step in spec.steps:
        nb = notebooks_dir / step.notebook
        if not nb.is_file():
            problems.append(f"{spec.source}: notebook {step.notebook} not found in {notebooks_dir}")
            continue
        unknown = sorted(set(step.parameters) - declared_parameters(nb))
        if unknown:
            problems.append(f"{spec.source}: {step.notebook} declares no parameter(s) {', '.join(unknown)}")
        if RUN_DIR_PARAM in step.parameters:
            problems.append(f"{spec.source}: '{RUN_DIR_PARAM}' is set by the runner, not the params file")
    return problems


def artifact_path(run_dir: str | Path | None, name: str) -> Path:
    """Where a notebook saves an output file: its run folder under `coffee-ml run`, else
    outputs/scratch/ for interactive sessions."""
    folder = Path(run_dir) if run_dir else config.outputs_dir() / "scratch"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _render_html(executed: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(executed, as_version=4))
    target = executed.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def _write_index(run_dir: Path, manifest: dict[str, Any]) -> Path:
    rows = "".join(
        f"<tr><td><a href='{html.escape(s['html'])}'>{html.escape(s['notebook'])}</a></td>"
        f"<td>{s['status']}</td><td>{s['seconds']:.1f}</td>"
        f"<td><code>{html.escape(json.dumps(s['parameters']))}</code></td></tr>"
        for s in manifest["notebooks"])
    git = manifest["git"]
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(manifest['run_id'])}</title>"
            f"<h1>coffee-ml run {html.escape(manifest['run_id'])}</h1>"
            f"<p>params: {html.escape(manifest['params_file'])} &middot; status: {manifest['status']} &middot; "
            f"commit: {html.escape(str(git['commit']))}{' (dirty)' if git['dirty'] else ''} &middot; "
            f"{manifest['total_seconds']:.1f} s</p>"
            "<table border='1' cellpadding='4'><tr><th>report</th><th>status</th><th>seconds</th>"
            f"<th>parameters</th></tr>{rows}</table><p><a href='manifest.json'>manifest.json</a></p>")
    index = run_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def run(params_file: str | Path, outputs: Path | None = None, notebooks_dir: Path | None = None) -> Path:
    """Execute every notebook of a params file in order; return the run's index.html.

    Stops at the first failing notebook (later ones would read its missing outputs), still
    writing that notebook's HTML, the manifest and the index, then raises RuntimeError.
    """
    import papermill

    spec = load_params(params_file)
    notebooks_dir = notebooks_dir or config.NOTEBOOKS_DIR
    problems = check_spec(spec, notebooks_dir)
    if problems:
        raise ParamsError("; ".join(problems))
    run_id = f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{spec.name}"
    run_dir = (outputs or config.outputs_dir()) / "runs" / run_id
    run_dir.mkdir(parents=True)
    manifest: dict[str, Any] = {
        "run_id": run_id, "name": spec.name, "params_file": str(spec.source),
        "params": yaml.safe_load(spec.source.read_text()),
        "started": datetime.now(timezone.utc).isoformat(), **provenance.environment(),
        "notebooks": [], "status": "running",
    }
    t_run = time.perf_counter()
    failure = None
    for step in spec.steps:
        source = notebooks_dir / step.notebook
        params = dict(step.parameters)
        if RUN_DIR_PARAM in declared_parameters(source):
            params[RUN_DIR_PARAM] = str(run_dir)
        executed = run_dir / source.name
        t0 = time.perf_counter()
        status = "ok"
        try:
            papermill.execute_notebook(str(source), str(executed), parameters=params, cwd=str(notebooks_dir),
                                       progress_bar=False, log_output=False)
        except Exception as exc:  # papermill's error carries the cell's traceback; keep its first line
            status, failure = "failed", f"{step.notebook}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}"
        seconds = time.perf_counter() - t0
        report = _render_html(executed).name if executed.exists() else ""
        manifest["notebooks"].append({"notebook": step.notebook, "parameters": step.parameters, "output": executed.name,
                                      "html": report, "seconds": round(seconds, 3), "status": status})
        if failure:
            break
    manifest["status"] = "failed" if failure else "ok"
    manifest["total_seconds"] = round(time.perf_counter() - t_run, 3)
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    index = _write_index(run_dir, manifest)
    if failure:
        raise RuntimeError(f"run failed in {failure} (see {index})")
    return index
