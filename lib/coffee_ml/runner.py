"""Run notebooks headlessly with papermill: params file in, a self-describing run folder out.

A run folder `outputs/runs/<run-id>/` holds each executed notebook, its reviewer report
(`NN_stage.html`, inputs hidden) and full rendering (`NN_stage.code.html`), the results the
notebooks recorded (`metrics.json`), a `manifest.json` (parameters, git commit, package versions,
and per notebook its status, duration and, for a failure, the error and the failing cell) and an
`index.html` that links all of it, so any result can be traced to the exact code and settings that
produced it. `outputs/index.html` lists every run, newest first.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from functools import lru_cache
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from coffee_ml import config, provenance

RUN_DIR_PARAM = "run_dir"  # injected by the runner into notebooks that declare it
RUN_ID_ENV = "COFFEE_ML_RUN_ID"  # set for the kernels of a run, so saved models can name it
# Kernels of a run always draw inline figures: a non-interactive MPLBACKEND inherited from the
# shell (Agg) would otherwise leave every report without charts.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
# The kernel's own log (not the notebook's output) to errors only: its start-up warning about
# TCP transport would otherwise interleave with the progress lines of every notebook.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api_?key|credential", re.IGNORECASE)
_ENGINE = "coffee_ml"
Progress = Callable[[str], None]


class ParamsError(ValueError):
    """A params file (or override) that cannot be run as written."""


class RunFailed(RuntimeError):
    """A notebook of a run failed: its reports, manifest and indexes are written; `index` is the
    run's index.html and `entry` the failed notebook's manifest entry (error, failing cell)."""

    def __init__(self, message: str, index: Path, entry: dict[str, Any]) -> None:
        super().__init__(message)
        self.index = index
        self.entry = entry


@dataclass(frozen=True)
class Step:
    notebook: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    """What to run: a name, notebooks with their parameters, and where that came from."""

    name: str
    steps: list[Step]
    source: Path | None = None  # the params file; None for a run built on the command line
    document: dict[str, Any] = field(default_factory=dict)  # the params as written, for the manifest
    overrides: dict[str, Any] = field(default_factory=dict)
    rerun_of: str | None = None  # the run whose manifest this spec re-executes

    @property
    def label(self) -> str:
        return str(self.source) if self.source else f"run {self.name}"


def _secret_keys(value: Any) -> list[str]:
    """Keys that look like credentials anywhere in a (nested) parameters document."""
    if isinstance(value, Mapping):
        return [str(k) for k in value if _SECRET_KEY.search(str(k))] + \
            [found for v in value.values() for found in _secret_keys(v)]
    if isinstance(value, (list, tuple)):
        return [found for v in value for found in _secret_keys(v)]
    return []


def _check_secrets(label: str, params: Mapping[str, Any]) -> None:
    found = _secret_keys(params)
    if found:
        raise ParamsError(f"{label}: parameter(s) {', '.join(found)} look like credentials; papermill writes "
                          "parameters into output notebooks, so set them in the environment (CLICKHOUSE_*)")


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
    _check_secrets(str(path), doc)  # anywhere in the file: the manifest keeps the whole document
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
        params = _plain({**shared, **own})
        _check_secrets(str(path), params)
        steps.append(Step(str(entry["notebook"]), params))
    return RunSpec(str(doc.get("name") or path.stem), steps, path, doc)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` strings (from `-p`) to a dict; values are YAML (`3` an int, `[a, b]` a list)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ParamsError(f"-p expects key=value with a parameter name as key, got {pair!r}")
        try:
            out[key] = _plain(yaml.safe_load(text)) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ParamsError(f"-p {key}: value is not valid YAML: {exc}".replace("\n", " ")) from None
    return out


def _plain(value: Any) -> Any:
    """YAML reads 2024-06-01 as a date, which papermill cannot inject: keep dates as ISO text."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def declared_parameters(notebook: Path) -> set[str]:
    """Names in the notebook's `parameters` cell, as papermill sees them (read once per version
    of the file: checking a spec, applying overrides and running each ask)."""
    path = Path(notebook).resolve()
    return set(_declared(str(path), path.stat().st_mtime_ns))


@lru_cache(maxsize=64)
def _declared(path: str, mtime_ns: int) -> frozenset[str]:
    import papermill

    return frozenset(papermill.inspect_notebook(path))


def apply_overrides(spec: RunSpec, overrides: Mapping[str, Any], notebooks_dir: Path | None = None) -> RunSpec:
    """Set each override in every notebook of the run that declares it (`-p key=value`).

    A key that no notebook declares is an error: papermill would silently ignore it.
    """
    if not overrides:
        return spec
    notebooks_dir = notebooks_dir or config.NOTEBOOKS_DIR
    _check_secrets("-p", overrides)
    if RUN_DIR_PARAM in overrides:
        raise ParamsError(f"-p: '{RUN_DIR_PARAM}' is set by the runner")
    declared = {s.notebook: declared_parameters(notebooks_dir / s.notebook) for s in spec.steps}
    unknown = sorted(k for k in overrides if not any(k in names for names in declared.values()))
    if unknown:
        raise ParamsError(f"-p: no notebook of {spec.label} declares parameter(s) {', '.join(unknown)}")
    steps = [replace(s, parameters={**s.parameters, **{k: v for k, v in overrides.items()
                                                       if k in declared[s.notebook]}})
             for s in spec.steps]
    return replace(spec, steps=steps, overrides={**spec.overrides, **overrides})


def check_spec(spec: RunSpec, notebooks_dir: Path | None = None) -> list[str]:
    """Every problem that would make papermill silently ignore a parameter or miss a notebook."""
    notebooks_dir = notebooks_dir or config.NOTEBOOKS_DIR
    problems = []
    stems = [Path(s.notebook).stem for s in spec.steps]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        problems.append(f"{spec.label}: notebook(s) {', '.join(twice)} listed twice; their reports would "
                        "overwrite each other (run them in separate params files)")
    for step in spec.steps:
        nb = notebooks_dir / step.notebook
        if not nb.resolve().is_relative_to(notebooks_dir.resolve()):
            problems.append(f"{spec.label}: notebook {step.notebook} is outside {notebooks_dir.name}/; "
                            "only the project's notebooks run")
            continue
        if not nb.is_file():
            problems.append(f"{spec.label}: notebook {step.notebook} not found in {notebooks_dir}")
            continue
        unknown = sorted(set(step.parameters) - declared_parameters(nb))
        if unknown:
            problems.append(f"{spec.label}: {step.notebook} declares no parameter(s) {', '.join(unknown)}")
        if RUN_DIR_PARAM in step.parameters:
            problems.append(f"{spec.label}: '{RUN_DIR_PARAM}' is set by the runner, not the params file")
    return problems


def check_data(spec: RunSpec) -> None:
    """Fail before any kernel starts when a symbol the run names has no candles in the store at all
    (a missing range within stored data is the notebook's to report, with the coverage it finds)."""
    wanted = {(str(s.parameters["symbol"]), str(s.parameters.get("interval") or "1h"),
               str(s.parameters.get("backend") or "auto")) for s in spec.steps if s.parameters.get("symbol")}
    if not wanted:
        return
    from coffee_ml.data import open_store

    for backend in sorted({b for *_, b in wanted}):
        stored = open_store(backend).list_symbols()
        have = set(stored["symbol"])
        for symbol, interval in sorted((sym, i) for sym, i, b in wanted if b == backend and sym not in have):
            listing = ", ".join(f"{r.symbol} {r.interval}" for r in stored.itertuples()) or "nothing"
            raise ParamsError(f"{spec.label}: no {symbol} candles in the store (it holds {listing}); import them "
                              f"first, e.g. coffee-ml import <files> --symbol {symbol} --interval {interval} "
                              f"(../shared/data/{symbol}-{interval}.parquet where it exists)")


def artifact_path(run_dir: str | Path | None, name: str) -> Path:
    """Where a notebook saves an output file: its run folder under `coffee-ml run`, else
    outputs/scratch/ for interactive sessions."""
    folder = Path(run_dir) if run_dir else config.outputs_dir() / "scratch"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _new_run_dir(runs: Path, name: str) -> tuple[str, Path]:
    """A fresh run folder: UTC timestamp, name, random suffix; mkdir without exist_ok claims it,
    so two runs started in the same second never share (or fail on) a folder."""
    runs.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^\w.-]+", "-", name).strip("-") or "run"
    for _ in range(100):
        run_id = f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{safe}-{secrets.token_hex(2)}"
        try:
            (runs / run_id).mkdir()
        except FileExistsError:
            continue
        return run_id, runs / run_id
    raise RuntimeError(f"could not create a new run folder in {runs}")


def _relative_to_project(path: Path) -> str:
    """A params file as the manifest names it: relative to the checkout, else just its name."""
    try:
        return Path(path).resolve().relative_to(config.PROJECT_ROOT).as_posix()
    except ValueError:
        return Path(path).name


def kernel_path() -> str:
    """JUPYTER_PATH with this environment's kernel specs first: its `python3` kernel (ipykernel's,
    which runs this interpreter) then wins over one a user installed for another Python."""
    return os.pathsep.join([str(Path(sys.prefix) / "share" / "jupyter"),
                            *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep))])


def _kernel_env(run_id: str) -> AbstractContextManager[None]:
    """Environment the run's kernels inherit (papermill starts them with this process's env)."""
    return config.environ({RUN_ID_ENV: run_id, "MPLBACKEND": INLINE_BACKEND, "JUPYTER_PATH": kernel_path(),
                           provenance.READS_ENV: os.environ.get(provenance.READS_ENV)})


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _section(cells: list[Any], index: int) -> str:
    """What a cell is about, for progress lines: its parameters tag or the heading above it."""
    tags = cells[index].metadata.get("tags", [])
    if "injected-parameters" in tags:
        return "injected parameters"
    if "parameters" in tags:
        return "parameters"
    for cell in reversed(cells[:index]):
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()[:60]
    return ""


def _register_engine() -> str:
    """A papermill engine that reports each code cell as it starts (notebook, n/N, elapsed)."""
    from papermill.engines import NBClientEngine, papermill_engines

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, on_cell=None, **kwargs):
            if on_cell is not None:
                cells = nb_man.nb.cells
                code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
                start = nb_man.cell_start

                def cell_start(cell, cell_index=None, **kw):
                    if cell_index in code:
                        on_cell(code.index(cell_index) + 1, len(code), _section(cells, cell_index))
                    return start(cell, cell_index, **kw)

                nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(_ENGINE, ProgressEngine)
    return _ENGINE


def _failure(exc: BaseException, executed: Path, scrub: Callable[[str], str]) -> dict[str, Any]:
    """The error text and the failing cell (its index in the executed .ipynb, its number among the
    code cells, and the start of its source), from papermill's error or the executed notebook."""
    import nbformat
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        error = f"{exc.ename}: {exc.evalue}" if exc.evalue else exc.ename
    else:
        error = f"{type(exc).__name__}: {exc}" if str(exc).strip() else type(exc).__name__
    out: dict[str, Any] = {"error": scrub(error.strip())[:2000]}
    if not executed.exists():
        return out
    cells = nbformat.read(executed, as_version=4).cells
    code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
    for index in code:
        meta = cells[index].metadata.get("papermill", {})
        if meta.get("exception") or meta.get("status") == "running":  # running: the kernel died in it
            lines = cells[index].source.splitlines()
            excerpt = "\n".join(lines[:8]) + ("\n..." if len(lines) > 8 else "")
            out["cell"] = {"index": index, "number": code.index(index) + 1, "of": len(code),
                           "execution_count": cells[index].get("execution_count"), "source": scrub(excerpt)}
            break
    return out


def _data_read(reads: Path) -> list[dict[str, Any]]:
    """The store reads a notebook made, each once (a notebook may load the same range twice)."""
    if not reads.exists():
        return []
    unique = {line: None for line in reads.read_text().splitlines() if line.strip()}
    reads.unlink()
    return [json.loads(line) for line in unique]


def _files(run_dir: Path) -> dict[str, int]:
    return {p.relative_to(run_dir).as_posix(): p.stat().st_mtime_ns
            for p in run_dir.rglob("*") if p.is_file() and not p.name.startswith(".")}


def _stage_files(before: dict[str, int], after: dict[str, int], own: set[str | None]) -> list[str]:
    """Files a notebook wrote into the run folder: new or changed while it ran, minus its reports."""
    return sorted(k for k, t in after.items() if before.get(k) != t and k not in own)


def _execute(step: Step, entry: dict[str, Any], notebooks_dir: Path, run_dir: Path, say: Progress,
             t_run: float) -> None:
    """Run one notebook into the run folder and fill its manifest entry: status, seconds, the error
    and failing cell, its reports (paths scrubbed, the .ipynb included) and the files it saved."""
    import nbformat
    import papermill

    from coffee_ml.reports import export

    source = notebooks_dir / step.notebook
    executed = run_dir / source.name
    params = dict(step.parameters)
    if RUN_DIR_PARAM in declared_parameters(source):
        params[RUN_DIR_PARAM] = str(run_dir)
    before = _files(run_dir)
    reads = run_dir / f".reads-{source.stem}.jsonl"
    os.environ[provenance.READS_ENV] = str(reads)  # the kernel starts with this environment
    t0 = time.perf_counter()

    def on_cell(i: int, total: int, section: str) -> None:
        now = time.perf_counter()
        say(f"  {step.notebook} cell {i}/{total}  {_clock(now - t0)} (run {_clock(now - t_run)})"
            + (f"  {section}" if section else ""))

    try:
        papermill.execute_notebook(str(source), str(executed), parameters=params, cwd=str(notebooks_dir),
                                   engine_name=_register_engine(), on_cell=on_cell, progress_bar=False,
                                   log_output=False, extra_arguments=KERNEL_ARGUMENTS)
        entry["status"] = "ok"
    except Exception as exc:  # any failure goes into the manifest; the caller skips later notebooks
        entry.update(status="failed", **_failure(exc, executed, export.path_scrubber(run_dir)))
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    entry["data"] = _data_read(reads)
    if executed.exists():
        nbformat.write(export.scrub_notebook(nbformat.read(executed, as_version=4), run_dir), executed)
        pages = export.export_reports(executed, run_dir)
        entry.update(title=pages["title"], output=executed.name, html=pages["reviewer"].name,
                     code_html=pages["code"].name)
    own = {entry.get(k) for k in ("output", "html", "code_html")} | {"manifest.json", "index.html", "summary.html",
                                                                     "metrics.json"}
    entry["files"] = _stage_files(before, _files(run_dir), own)


def run(params_file: str | Path, outputs: Path | None = None, notebooks_dir: Path | None = None,
        overrides: Mapping[str, Any] | None = None, progress: Progress | None = None) -> Path:
    """Execute every notebook of a params file in order; return the run's index.html.

    `overrides` (from `coffee-ml run -p key=value`) replace a parameter in every notebook that
    declares it; `progress` receives one line per notebook and per code cell.
    """
    notebooks_dir = notebooks_dir or config.NOTEBOOKS_DIR
    spec = load_params(params_file)
    problems = check_spec(spec, notebooks_dir)  # a missing notebook, before asking what it declares
    if problems:
        raise ParamsError("; ".join(problems))
    spec = apply_overrides(spec, overrides or {}, notebooks_dir)
    return run_spec(spec, outputs=outputs, notebooks_dir=notebooks_dir, progress=progress)


def run_spec(spec: RunSpec, outputs: Path | None = None, notebooks_dir: Path | None = None,
             progress: Progress | None = None) -> Path:
    """Execute a RunSpec into a new run folder; return its index.html.

    Stops at the first failing notebook (later ones would read its missing outputs), still
    rendering that notebook's reports, the manifest and the indexes, then raises RuntimeError
    naming the notebook, the error and the cell.
    """
    from coffee_ml.reports.index import write_outputs_index, write_run_index
    from coffee_ml.reports.records import write_atomic

    notebooks_dir = notebooks_dir or config.NOTEBOOKS_DIR
    problems = check_spec(spec, notebooks_dir)
    if problems:
        raise ParamsError("; ".join(problems))
    check_data(spec)
    say = progress or (lambda line: None)
    outputs = outputs or config.outputs_dir()
    run_id, run_dir = _new_run_dir(outputs / "runs", spec.name)
    manifest: dict[str, Any] = {
        "run_id": run_id, "name": spec.name,
        "params_file": _relative_to_project(spec.source) if spec.source else None,
        "params": spec.document, "overrides": spec.overrides, **({"rerun_of": spec.rerun_of} if spec.rerun_of else {}),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "finished": None,
        "status": "running", "total_seconds": None, **provenance.environment(),
        "notebooks": [{"notebook": s.notebook, "stage": Path(s.notebook).stem, "parameters": s.parameters,
                       "status": "pending"} for s in spec.steps],
    }

    def publish(all_runs: bool = False) -> None:
        """This run's manifest and page; the page of every run (which reads every run folder)
        only when this run starts and ends."""
        write_atomic(run_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
        write_run_index(run_dir)
        if all_runs:
            write_outputs_index(outputs)

    publish(all_runs=True)
    t_run = time.perf_counter()
    failure = None
    try:
        with _kernel_env(run_id):
            for n, (step, entry) in enumerate(zip(spec.steps, manifest["notebooks"]), 1):
                if failure:
                    entry["status"] = "skipped"
                    continue
                say(f"[{n}/{len(spec.steps)}] {step.notebook}")
                entry.update(status="running", started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
                publish()
                _execute(step, entry, notebooks_dir, run_dir, say, t_run)
                failure = entry if entry["status"] == "failed" else None
                say(f"  {step.notebook} {entry['status']} in {_clock(entry['seconds'])}"
                    + (f": {entry['error'].splitlines()[0]}" if failure else ""))
                if failure and "cell" in failure:
                    cell = failure["cell"]
                    say(f"  failing cell {cell['number']}/{cell['of']}:\n"
                        + "\n".join(f"    | {line}" for line in cell["source"].splitlines()))
                publish()
    except KeyboardInterrupt:
        manifest["status"] = "interrupted"
        raise
    except Exception:
        manifest["status"] = "failed"
        raise
    finally:
        if manifest["status"] == "running":
            manifest["status"] = "failed" if failure else "ok"
        manifest["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        manifest["total_seconds"] = round(time.perf_counter() - t_run, 3)
        for entry in manifest["notebooks"]:
            if entry["status"] in ("pending", "running"):
                entry["status"] = "skipped" if entry["status"] == "pending" else manifest["status"]
        publish(all_runs=True)
    index = run_dir / "index.html"
    say(f"run {run_id} {manifest['status']} in {_clock(manifest['total_seconds'])}")
    if failure:
        where = f" (cell {failure['cell']['number']}/{failure['cell']['of']})" if "cell" in failure else ""
        raise RunFailed(f"run failed in {failure['notebook']}{where}: {failure['error'].splitlines()[0]} "
                        f"(see {index})", index, failure)
    return index
