"""Run notebooks headlessly with papermill: params file in, a self-describing run folder out.

A run folder `outputs/runs/<run-id>/` holds each executed notebook, its reviewer report
(`NN_stage.html`, inputs hidden) and full rendering (`NN_stage.code.html`), the results the
notebooks recorded (`metrics.json`), a `manifest.json` (parameters, git commit, package versions,
and per notebook its status, duration and, for a failure, the error and the failing cell) and an
`index.html` that links all of it, so any result can be traced to the exact code and settings that
produced it. `outputs/index.html` lists every run, newest first.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from coffee_ml import config, provenance
from coffee_ml.config import RUN_ID_ENV

RUN_DIR_PARAM = "run_dir"  # injected by the runner into notebooks that declare it
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
        return [str(k) for k in value if _SECRET_KEY.search(str(k))] + [
            found for v in value.values() for found in _secret_keys(v)
        ]
    if isinstance(value, (list, tuple)):
        return [found for v in value for found in _secret_keys(v)]
    return []


def _check_secrets(label: str, params: Mapping[str, Any]) -> None:
    found = _secret_keys(params)
    if found:
        raise ParamsError(
            f"{label}: parameter(s) {', '.join(found)} look like credentials; papermill writes "
            "parameters into output notebooks, so set them in the environment (CLICKHOUSE_*)"
        )


MAX_PARAMS_BYTES = 256_000  # a params or batch file: far above any real one (a few KB), parsed in well under 10 s
MAX_YAML_VALUES = 10_000  # values a document may hold once its aliases are expanded
MAX_NAME_LENGTH = 100
_PARAMS_KEYS = ("name", "parameters", "notebooks")
_STEP_KEYS = ("notebook", "parameters")


class _AliasBomb(yaml.YAMLError):
    pass


class _SafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """yaml's safe loader (libyaml's where installed: fast, and it bounds the nesting depth) that
    refuses a document of more than MAX_YAML_VALUES values once its aliases are expanded (a few
    hundred bytes of nested `*alias` lists expand to billions, and everything that walks the
    parameters afterwards — the manifest, the secrets check — would run for hours)."""

    def construct_document(self, node: yaml.Node) -> Any:
        _expanded_size(node, {}, set())
        return super().construct_document(node)


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    """Values in `node` with every alias expanded, counted in time linear in the file."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise _AliasBomb("an alias refers to a collection that contains it (a recursive alias)")
    active.add(key)
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo, active) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo, active) + _expanded_size(v, memo, active) for k, v in node.value)
    else:
        size = 1
    active.discard(key)
    if size > MAX_YAML_VALUES:
        raise _AliasBomb(f"it holds more than {MAX_YAML_VALUES:,} values once its aliases (*name) are expanded")
    memo[key] = size
    return size


def read_text_file(path: str | Path, what: str = "params file", limit: int = MAX_PARAMS_BYTES) -> str:
    """A small UTF-8 text file, or a one-line ParamsError naming it: not found, a directory or
    another non-regular file (a device, a pipe: never opened, so /dev/zero or a FIFO cannot hang),
    over `limit` bytes (checked before reading), binary or not UTF-8."""
    import stat

    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ParamsError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ParamsError(f"{path}: is a directory, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise ParamsError(f"{path}: is not a regular file (a {what} is a YAML text file)")
    if info.st_size > limit:
        raise ParamsError(f"{path}: {what} is {info.st_size:,} bytes; the limit is {limit:,}")
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ParamsError(f"{path}: {what} is over {limit:,} bytes")
    if b"\0" in data:
        raise ParamsError(f"{path}: {what} is not UTF-8 text (it holds NUL bytes: a binary file?)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(
            f"{path}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}; save it as UTF-8)"
        ) from None


def read_yaml(path: str | Path, what: str = "params file") -> Any:
    """The one loader of params and batch files: `read_text_file`'s checks, then YAML with safe
    types only and a bound on alias expansion; every failure is one ParamsError line naming the file."""
    path = Path(path)
    text = read_text_file(path, what)
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except _AliasBomb as exc:
        raise ParamsError(f"{path}: refused: {exc}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ParamsError(f"{path}: refused: its YAML is nested too deeply") from None


def _check_name(path: Path, name: Any) -> str:
    """A run's name goes into folder names and pages: printable text, no control or bidi characters."""
    import unicodedata

    from coffee_ml.parameters import _show

    if name is None or name == "":
        return path.stem
    if isinstance(name, bool) or not isinstance(name, (str, int, float)):
        raise ParamsError(f"{path}: name = {_show(name)}: expected text")
    name = str(name)
    bad = [c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")]
    if bad:
        raise ParamsError(
            f"{path}: name {_show(name)} contains control or invisible formatting characters "
            f"({', '.join(sorted({f'U+{ord(c):04X}' for c in bad}))}); use printable text"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ParamsError(f"{path}: name is {len(name)} characters; at most {MAX_NAME_LENGTH}")
    return name


def _check_keys(where: str, mapping: Mapping[Any, Any], allowed: tuple[str, ...] | None = None) -> None:
    """Keys must be names (a `1:` key would be injected as nothing); with `allowed`, a typo'd key
    is refused rather than ignored."""
    from coffee_ml.parameters import _show

    def shown(key: Any) -> str:
        return key if isinstance(key, str) and key.isidentifier() else _show(key)

    if allowed is not None:
        unknown = [k for k in mapping if k not in allowed]
        if unknown:
            raise ParamsError(
                f"{where}: unknown key(s) {', '.join(map(shown, unknown))} (expected {', '.join(allowed)})"
            )
        return
    odd = [k for k in mapping if not isinstance(k, str) or not k.isidentifier()]
    if odd:
        raise ParamsError(f"{where}: key {_show(odd[0])} is not a parameter name")


def load_params(path: str | Path) -> RunSpec:
    """Parse a params YAML: `name`, shared `parameters`, and `notebooks` (names or {notebook, parameters}).

    Shared parameters go to every notebook; a step's own parameters override them.
    """
    path = Path(path)
    doc = read_yaml(path) or {}
    if isinstance(doc, dict) and "runs" in doc and "notebooks" not in doc:
        raise ParamsError(
            f"{path}: is a batch file (a 'runs' list), not a params file: run it with coffee-ml run {path}"
        )
    if not isinstance(doc, dict) or not isinstance(doc.get("notebooks"), list) or not doc["notebooks"]:
        raise ParamsError(f"{path}: expected a mapping with a non-empty 'notebooks' list")
    _check_keys(str(path), doc, _PARAMS_KEYS)
    _check_secrets(str(path), doc)  # anywhere in the file: the manifest keeps the whole document
    name = _check_name(path, doc.get("name"))
    shared = doc.get("parameters") or {}
    if not isinstance(shared, dict):
        raise ParamsError(f"{path}: 'parameters' must be a mapping")
    _check_keys(f"{path}: parameters", shared)
    steps = []
    for i, entry in enumerate(doc["notebooks"], 1):
        if isinstance(entry, str):
            entry = {"notebook": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("notebook"), str) or not entry["notebook"]:
            raise ParamsError(f"{path}: notebooks[{i}] must be a notebook name or a mapping with 'notebook: <name>'")
        _check_keys(f"{path}: notebooks[{i}]", entry, _STEP_KEYS)
        own = entry.get("parameters") or {}
        if not isinstance(own, dict):
            raise ParamsError(f"{path}: notebooks[{i}].parameters must be a mapping")
        _check_keys(f"{path}: notebooks[{i}].parameters", own)
        params = _plain({**shared, **own})
        _check_secrets(str(path), params)
        steps.append(Step(entry["notebook"], params))
    return RunSpec(name, steps, path, doc)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` strings (from `-p`) to a dict; values are YAML (`3` an int, `[a, b]` a list)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ParamsError(f"-p expects key=value with a parameter name as key, got {pair!r}")
        try:
            out[key] = _plain(yaml.load(text, Loader=_SafeLoader)) if text.strip() else None  # noqa: S506
        except yaml.YAMLError as exc:
            raise ParamsError(f"-p {key}: value is not valid YAML: {' '.join(str(exc).split())}") from None
        except RecursionError:
            raise ParamsError(f"-p {key}: value is nested too deeply") from None
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


def notebook_defaults(notebook: Path) -> dict[str, Any]:
    """The values of the notebook's `parameters` cell (its literals; a default that is not a
    literal is left out), to check a step's parameters against the values it would run with."""
    path = Path(notebook).resolve()
    return dict(_declared_defaults(str(path), path.stat().st_mtime_ns))


@lru_cache(maxsize=64)
def _declared(path: str, mtime_ns: int) -> frozenset[str]:
    return frozenset(name for name, _ in _declared_defaults(path, mtime_ns))


@lru_cache(maxsize=64)
def _declared_defaults(path: str, mtime_ns: int) -> tuple[tuple[str, Any], ...]:
    import ast

    import papermill

    out = []
    for name, info in papermill.inspect_notebook(path).items():
        try:
            value = ast.literal_eval(info.get("default") or "")
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = _NOT_LITERAL
        out.append((name, value))
    return tuple(out)


_NOT_LITERAL = object()


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
    steps = [
        replace(s, parameters={**s.parameters, **{k: v for k, v in overrides.items() if k in declared[s.notebook]}})
        for s in spec.steps
    ]
    return replace(spec, steps=steps, overrides={**spec.overrides, **overrides})


def check_spec(spec: RunSpec, notebooks_dir: Path | None = None) -> list[str]:
    """Every problem that would make papermill silently ignore a parameter or miss a notebook."""
    notebooks_dir = notebooks_dir or config.NOTEBOOKS_DIR
    problems = []
    stems = [Path(s.notebook).stem for s in spec.steps]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        problems.append(
            f"{spec.label}: notebook(s) {', '.join(twice)} listed twice; their reports would "
            "overwrite each other (run them in separate params files)"
        )
    for step in spec.steps:
        nb = notebooks_dir / step.notebook
        if not nb.resolve().is_relative_to(notebooks_dir.resolve()):
            problems.append(
                f"{spec.label}: notebook {step.notebook} is outside {notebooks_dir.name}/; "
                "only the project's notebooks run"
            )
            continue
        if not nb.is_file():
            problems.append(f"{spec.label}: notebook {step.notebook} not found in {notebooks_dir}")
            continue
        declared = declared_parameters(nb)
        unknown = sorted(set(step.parameters) - declared)
        if unknown:
            problems.append(
                f"{spec.label}: {step.notebook} declares no parameter(s) {', '.join(unknown)}"
                + _did_you_mean(unknown, declared)
            )
        if RUN_DIR_PARAM in step.parameters:
            problems.append(
                f"{spec.label}: {step.notebook}: '{RUN_DIR_PARAM}' is set by the runner, not the params file"
            )
        if not unknown and RUN_DIR_PARAM not in step.parameters:
            problems += [f"{spec.label}: {step.notebook}: {problem}" for problem in _value_problems(step, nb, spec)]
    return problems


def _did_you_mean(unknown: list[str], declared: set[str]) -> str:
    import difflib

    guesses = [
        f"{match[0]} for {name}"
        for name in unknown
        if (match := difflib.get_close_matches(name, sorted(declared), n=1, cutoff=0.75))
    ]
    return f" (did you mean {', '.join(guesses)}?)" if guesses else ""


def _value_problems(step: Step, nb: Path, spec: RunSpec) -> list[str]:
    """The step's values against the notebook's declaration (coffee_ml.parameters), merged with
    the notebook's defaults for the rules across parameters; a value set with -p says so."""
    from coffee_ml import parameters

    if parameters.declaration(nb) is None:
        return []  # not one of the project's notebooks (a test's own): nothing declared to check against
    values = {k: v for k, v in notebook_defaults(nb).items() if v is not _NOT_LITERAL} | step.parameters
    values.pop(RUN_DIR_PARAM, None)
    found = parameters.problems(nb, values, given=list(step.parameters))
    return [p + (" (set with -p)" if p.split(" ", 1)[0].rstrip(":") in spec.overrides else "") for p in found]


def check_data(spec: RunSpec) -> None:
    """Fail before any kernel starts when a symbol the run names has no candles in the store at all
    (a missing range within stored data is the notebook's to report, with the coverage it finds)."""
    wanted = {
        (
            str(s.parameters["symbol"]),
            str(s.parameters.get("interval") or "1h"),
            str(s.parameters.get("backend") or "auto"),
        )
        for s in spec.steps
        if s.parameters.get("symbol")
    }
    if not wanted:
        return
    from coffee_ml.data import open_store

    for backend in sorted({b for *_, b in wanted}):
        stored = open_store(backend).list_symbols()
        have = set(stored["symbol"])
        for symbol, interval in sorted((sym, i) for sym, i, b in wanted if b == backend and sym not in have):
            listing = ", ".join(f"{r.symbol} {r.interval}" for r in stored.itertuples()) or "nothing"
            raise ParamsError(
                f"{spec.label}: no {symbol} candles in the store (it holds {listing}); import them "
                f"first, e.g. coffee-ml import <files> --symbol {symbol} --interval {interval} "
                f"(../shared/data/{symbol}-{interval}.parquet where it exists)"
            )


def artifact_path(run_dir: str | Path | None, name: str) -> Path:
    """Where a notebook saves an output file: its run folder under `coffee-ml run`, else
    outputs/scratch/ for interactive sessions."""
    folder = Path(run_dir) if run_dir else config.outputs_dir() / "scratch"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached a run: its record is finalised as `interrupted` (which notebook,
    when, which signal) and its kernel stopped before this propagates. A KeyboardInterrupt, so
    every caller that handles Ctrl-C handles a `kill` the same way."""

    def __init__(self, signum: int) -> None:
        self.signal = signal.Signals(signum).name
        super().__init__(self.signal)


class DiskFull(RunFailed):
    """The run stopped because its filesystem is full: the message names the run folder, the
    space free there and what the run needs; the manifest says `failed` with `error: disk full ...`."""


PROGRESS_SECONDS = 10.0  # at most one forwarded progress line per notebook this often
RESERVE_BYTES = 256 * 1024  # held in the run folder, freed to write the final record on a full disk
RESERVE_FILE = ".reserve"
_LIVE_CLIENTS: set[Any] = set()  # the notebook clients executing now: stopped at once on a signal


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
    return os.pathsep.join(
        [
            str(Path(sys.prefix) / "share" / "jupyter"),
            *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep)),
        ]
    )


def _kernel_env(run_id: str) -> AbstractContextManager[None]:
    """Environment the run's kernels inherit (papermill starts them with this process's env)."""
    from coffee_ml.progress import PROGRESS_ENV

    return config.environ(
        {
            RUN_ID_ENV: run_id,
            "MPLBACKEND": INLINE_BACKEND,
            "JUPYTER_PATH": kernel_path(),
            provenance.READS_ENV: os.environ.get(provenance.READS_ENV),
            PROGRESS_ENV: os.environ.get(PROGRESS_ENV),
        }
    )


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
    """A papermill engine that reports each code cell as it starts (notebook, n/N, elapsed) to
    `on_cell`, remembers the cell executing (`current["cell"]`, for a kernel that dies in it) and
    keeps its notebook client where a signal handler finds it (to stop the kernel at once)."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man,
            kernel_name,
            on_cell=None,
            current=None,
            log_output=False,
            stdout_file=None,
            stderr_file=None,
            start_timeout=60,
            execution_timeout=None,
            **kwargs,
        ):
            cells = nb_man.nb.cells
            code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
            start = nb_man.cell_start

            def cell_start(cell, cell_index=None, **kw):
                if current is not None:
                    current["cell"] = cell_index
                if on_cell is not None and cell_index in code:
                    on_cell(code.index(cell_index) + 1, len(code), _section(cells, cell_index))
                return start(cell, cell_index, **kw)

            nb_man.cell_start = cell_start
            # as NBClientEngine.execute_managed_notebook, keeping hold of the client
            kwargs = remove_args(["input_path"], **kwargs)
            safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                safe_kwargs,
                timeout=execution_timeout or kwargs.get("timeout"),
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logger,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
            client = PapermillNotebookClient(nb_man, **final_kwargs)
            _LIVE_CLIENTS.add(client)
            try:
                return client.execute()
            finally:
                _LIVE_CLIENTS.discard(client)

    papermill_engines.register(_ENGINE, ProgressEngine)
    return _ENGINE


def _cell_info(cells: list[Any], index: int, scrub: Callable[[str], str]) -> dict[str, Any]:
    code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
    lines = cells[index].source.splitlines()
    excerpt = "\n".join(lines[:8]) + ("\n..." if len(lines) > 8 else "")
    return {
        "index": index,
        "number": code.index(index) + 1,
        "of": len(code),
        "execution_count": cells[index].get("execution_count"),
        "source": scrub(excerpt),
    }


def _failure(
    exc: BaseException, executed: Path, scrub: Callable[[str], str], current: int | None = None
) -> dict[str, Any]:
    """The error text and the failing cell (its index in the executed .ipynb, its number among the
    code cells, and the start of its source), from papermill's error or the executed notebook;
    `current` is the cell that was executing, for an error papermill does not attach to a cell
    (a kernel that died: killed, out of memory, crashed)."""
    import nbformat
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        error = f"{exc.ename}: {exc.evalue}" if exc.evalue else exc.ename
    elif isinstance(exc, DeadKernelError):
        error = (
            "DeadKernelError: the kernel died while running this cell (killed by a signal, out of memory, "
            "or crashed in native code)"
        )
    else:
        error = f"{type(exc).__name__}: {exc}" if str(exc).strip() else type(exc).__name__
    out: dict[str, Any] = {"error": scrub(error.strip())[:2000]}
    if not executed.exists():
        return out
    try:
        cells = nbformat.read(executed, as_version=4).cells
    except Exception:  # noqa: BLE001 - half written (a full disk): the error alone
        return out
    code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
    for index in code:
        meta = cells[index].metadata.get("papermill", {})
        if meta.get("exception") or meta.get("status") == "running":  # running: the kernel died in it
            out["cell"] = _cell_info(cells, index, scrub)
            return out
    if current in code:
        out["cell"] = _cell_info(cells, current, scrub)
    return out


def _data_read(reads: Path) -> list[dict[str, Any]]:
    """The store reads a notebook made, each once (a notebook may load the same range twice)."""
    if not reads.exists():
        return []
    unique = {line: None for line in reads.read_text().splitlines() if line.strip()}
    reads.unlink()
    return [json.loads(line) for line in unique]


def _files(run_dir: Path) -> dict[str, int]:
    return {
        p.relative_to(run_dir).as_posix(): p.stat().st_mtime_ns
        for p in run_dir.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def _stage_files(before: dict[str, int], after: dict[str, int], own: set[str | None]) -> list[str]:
    """Files a notebook wrote into the run folder: new or changed while it ran, minus its reports."""
    return sorted(k for k, t in after.items() if before.get(k) != t and k not in own)


class _ProgressTail:
    """Forward the lines a notebook's kernel reports (`coffee_ml.progress.report`, appended to
    `path`) to the console while the notebook runs: at most one every `interval` seconds since the
    last line said about this notebook, always the latest, from a thread of its own."""

    def __init__(self, path: Path, emit: Callable[[str], None], interval: float) -> None:
        self.path, self.emit, self.interval = path, emit, interval
        self.offset, self.latest, self.shown = 0, None, None
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="coffee-ml-progress", daemon=True)

    def __enter__(self) -> "_ProgressTail":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def touch(self) -> None:
        """A line about the notebook was just said (a cell started): the next comes `interval` later."""
        self.last = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self.interval / 4)):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - progress must never break a run
                pass

    def poll(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self.offset += end
        lines = [line for line in data[:end].decode("utf-8", errors="replace").splitlines() if line.strip()]
        if lines:
            self.latest = lines[-1]
        if self.latest and self.latest != self.shown and time.monotonic() - self.last >= self.interval:
            self.shown, self.last = self.latest, time.monotonic()
            self.emit(self.latest)


def _execute(
    step: Step, entry: dict[str, Any], notebooks_dir: Path, run_dir: Path, say: Progress, t_run: float
) -> None:
    """Run one notebook into the run folder and fill its manifest entry: status, seconds, the error
    and failing cell, its reports (paths scrubbed, the .ipynb included) and the files it saved.
    Raises OSError(ENOSPC) when the notebook or the runner ran out of disk space (the entry says
    so: rendering its reports would need space too)."""
    import nbformat
    import papermill

    from coffee_ml.progress import PROGRESS_ENV
    from coffee_ml.reports import export

    source = notebooks_dir / step.notebook
    executed = run_dir / source.name
    params = dict(step.parameters)
    if RUN_DIR_PARAM in declared_parameters(source):
        params[RUN_DIR_PARAM] = str(run_dir)
    before = _files(run_dir)
    reads = run_dir / f".reads-{source.stem}.jsonl"
    lines = run_dir / f".progress-{source.stem}.log"
    os.environ[provenance.READS_ENV] = str(reads)  # the kernel starts with this environment
    os.environ[PROGRESS_ENV] = str(lines)
    t0 = time.perf_counter()
    current: dict[str, int | None] = {"cell": None}

    def forward(line: str) -> None:
        now = time.perf_counter()
        say(f"  {step.notebook} {_clock(now - t0)} (run {_clock(now - t_run)})  {line}")

    tail = _ProgressTail(lines, forward, PROGRESS_SECONDS)

    def on_cell(i: int, total: int, section: str) -> None:
        now = time.perf_counter()
        tail.touch()
        say(
            f"  {step.notebook} cell {i}/{total}  {_clock(now - t0)} (run {_clock(now - t_run)})"
            + (f"  {section}" if section else "")
        )

    full = None
    try:
        with tail:
            papermill.execute_notebook(
                str(source),
                str(executed),
                parameters=params,
                cwd=str(notebooks_dir),
                engine_name=_register_engine(),
                on_cell=on_cell,
                current=current,
                progress_bar=False,
                log_output=False,
                extra_arguments=KERNEL_ARGUMENTS,
            )
        entry["status"] = "ok"
    except Exception as exc:  # any failure goes into the manifest; the caller skips later notebooks
        entry.update(status="failed", **_failure(exc, executed, export.path_scrubber(run_dir), current["cell"]))
        if _disk_full(exc) or _disk_full(entry["error"]):
            full = exc
            entry["error"] = f"disk full: {entry['error']}"
    finally:
        lines.unlink(missing_ok=True)
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    entry["data"] = _data_read(reads)
    if full is not None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run_dir)) from full
    if executed.exists():
        nbformat.write(export.scrub_notebook(nbformat.read(executed, as_version=4), run_dir), executed)
        pages = export.export_reports(executed, run_dir)
        entry.update(
            title=pages["title"], output=executed.name, html=pages["reviewer"].name, code_html=pages["code"].name
        )
    own = {entry.get(k) for k in ("output", "html", "code_html")} | {
        "manifest.json",
        "index.html",
        "summary.html",
        "metrics.json",
    }
    entry["files"] = _stage_files(before, _files(run_dir), own)


_DISK_FULL_TEXT = re.compile(r"\[Errno (28|122)\]|No space left on device|Disk quota exceeded")


def _disk_full(error: BaseException | str | None) -> bool:
    """Did this error (an exception of the runner, or a notebook's error text) come from a full
    disk (ENOSPC) or an exhausted quota (EDQUOT)?"""
    if isinstance(error, str):
        return bool(_DISK_FULL_TEXT.search(error))
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


def _size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.name == RESERVE_FILE:
            continue
        try:
            total += p.stat().st_size if p.is_file() else 0
        except OSError:
            pass
    return total


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB" if n < 2**30 else f"{n / 2**30:.1f} GB"


def _free(path: Path) -> str:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return "free space unknown"
    return f"{_mb(usage.free)} free of {_mb(usage.total)}"


def _disk_full_message(run_dir: Path, outputs: Path, name: str) -> str:
    """One line: which folder, how much is free there and how much the run needs (what a
    finished run of the same name took, else what this one had written: at least that again)."""
    written = _size(run_dir) if run_dir.exists() else 0
    previous = []
    runs = outputs / "runs"
    for other in runs.glob("*/manifest.json") if runs.is_dir() else []:
        try:
            manifest = json.loads(other.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and manifest.get("name") == name and manifest.get("status") == "ok":
            previous.append(_size(other.parent))
    need = (
        f"needs about {_mb(max(previous))}, what the last finished run of {name!r} took"
        if previous
        else f"needs more than the {_mb(written)} it had written"
    )
    return (
        f"disk full: no space left for run folder {run_dir} ({_free(run_dir if run_dir.exists() else outputs)}; "
        f"the run {need}); free some space and run again"
    )


class _Reserve:
    """A little disk space set aside in the run folder at the start, released before the final
    record is written: a run that fills its disk can still say so."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / RESERVE_FILE
        try:
            with open(self.path, "wb") as f:
                f.write(bytes(RESERVE_BYTES))
        except OSError:
            self.release()
            raise

    def release(self) -> None:
        with suppress(OSError):
            self.path.unlink(missing_ok=True)


@contextmanager
def _signals() -> Any:
    """SIGINT and SIGTERM raise RunInterrupted while the run works (once: a second signal while
    the run finalises its record is held, then delivered once the previous handlers are back), and
    stop the executing kernel at once rather than gracefully. Only in the main thread (where
    Python runs signal handlers); elsewhere the caller's handling stands."""
    state: dict[str, Any] = {"armed": True, "late": None}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: Any) -> None:
        if not state["armed"]:
            state["late"] = state["late"] or signum
            return
        state["armed"] = False
        for client in list(_LIVE_CLIENTS):
            client.shutdown_kernel = "immediate"
        raise RunInterrupted(signum)

    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, handler) for s in watched}
    try:
        yield state
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if state["late"]:
        signal.raise_signal(state["late"])


def _say_cell(say: Progress, cell: dict[str, Any]) -> None:
    say(
        f"  failing cell {cell['number']}/{cell['of']}:\n"
        + "\n".join(f"    | {line}" for line in cell["source"].splitlines())
    )


def run(
    params_file: str | Path,
    outputs: Path | None = None,
    notebooks_dir: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> Path:
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


def run_spec(
    spec: RunSpec,
    outputs: Path | None = None,
    notebooks_dir: Path | None = None,
    progress: Progress | None = None,
    on_start: Callable[[Path], None] | None = None,
) -> Path:
    """Execute a RunSpec into a new run folder; return its index.html. `on_start(run_dir)` is
    called once the folder and its first manifest exist (a job queue links the run from there).

    Stops at the first failing notebook (later ones would read its missing outputs), still
    rendering that notebook's reports, the manifest and the indexes, then raises RunFailed
    naming the notebook, the error and the cell. A full disk raises DiskFull (a RunFailed) naming
    the folder and the space; SIGINT/SIGTERM finalise the record as interrupted and raise
    RunInterrupted. The manifest names its owner (pid, host, process start) and the runner holds
    `<run>/.lock` while it runs, so that readers tell a run whose process died from a live one
    (`coffee_ml.run_state.run_state`).
    """
    from coffee_ml import run_state
    from coffee_ml.reports.index import write_outputs_index, write_run_index
    from coffee_ml.reports.records import write_atomic

    notebooks_dir = notebooks_dir or config.NOTEBOOKS_DIR
    problems = check_spec(spec, notebooks_dir)
    if problems:
        raise ParamsError("; ".join(problems))
    check_data(spec)
    say = progress or (lambda line: None)
    outputs = outputs or config.outputs_dir()
    try:
        run_id, run_dir = _new_run_dir(outputs / "runs", spec.name)
        lock = run_state.RunLock(run_dir)  # held until the record is final, or the process ends
    except OSError as exc:
        if _disk_full(exc):
            raise DiskFull(
                _disk_full_message(outputs / "runs", outputs, spec.name),
                outputs / "index.html",
                {"notebook": None, "error": "disk full"},
            ) from None
        raise
    manifest: dict[str, Any] = {
        "run_id": run_id,
        "name": spec.name,
        "params_file": _relative_to_project(spec.source) if spec.source else None,
        "params": spec.document,
        "overrides": spec.overrides,
        **({"rerun_of": spec.rerun_of} if spec.rerun_of else {}),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "finished": None,
        "status": "running",
        "total_seconds": None,
        "owner": run_state.owner(),
        **provenance.environment(),
        "notebooks": [
            {"notebook": s.notebook, "stage": Path(s.notebook).stem, "parameters": s.parameters, "status": "pending"}
            for s in spec.steps
        ],
    }

    def publish(all_runs: bool = False) -> None:
        """This run's manifest and page; the page of every run (which reads every run folder)
        only when this run starts and ends."""
        write_atomic(run_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
        write_run_index(run_dir)
        if all_runs:
            write_outputs_index(outputs)

    def publish_final() -> None:
        """The final record, on a full disk too: the reserve freed first; when the pages do not
        fit, the manifest alone, compact; when not even that fits, nothing (readers see the
        released lock and the gone process and show the run as died)."""
        try:
            publish(all_runs=True)
        except OSError as exc:
            if not _disk_full(exc):
                raise
            with suppress(OSError):
                write_atomic(run_dir / "manifest.json", json.dumps(manifest, default=str))

    t_run = time.perf_counter()
    failure = None
    full: str | None = None
    reserve: _Reserve | None = None
    with _signals() as signals:
        try:
            reserve = _Reserve(run_dir)
            publish(all_runs=True)
            if on_start is not None:
                on_start(run_dir)
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
                    say(
                        f"  {step.notebook} {entry['status']} in {_clock(entry['seconds'])}"
                        + (f": {entry['error'].splitlines()[0]}" if failure else "")
                    )
                    if failure and "cell" in failure:
                        _say_cell(say, failure["cell"])
                    publish()
        except KeyboardInterrupt as exc:
            manifest["status"] = "interrupted"
            manifest["interrupted"] = {
                "signal": getattr(exc, "signal", "SIGINT"),
                "notebook": run_state.last_notebook(manifest),
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            raise
        except Exception as exc:
            manifest["status"] = "failed"
            if not _disk_full(exc):
                raise
            full = _disk_full_message(run_dir, outputs, spec.name)  # measured with the reserve still held
            manifest["error"] = f"disk full ({_free(run_dir)})"
            # the notebook that ran out of space; one that finished ok before its reports or the
            # manifest could be written keeps its status (the run's error says why the run stopped)
            failure = next((e for e in manifest["notebooks"] if e["status"] in ("failed", "running")), None)
            if failure is not None:
                failure["status"] = "failed"
                if not str(failure.get("error", "")).startswith("disk full"):
                    failure["error"] = manifest["error"] + (f": {failure['error']}" if failure.get("error") else "")
                say(f"  {failure['notebook']} failed: {failure['error'].splitlines()[0]}")
                if "cell" in failure:
                    _say_cell(say, failure["cell"])
        finally:
            signals["armed"] = False  # a signal now waits until the record is final
            if manifest["status"] == "running":
                manifest["status"] = "failed" if failure else "ok"
            manifest["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            manifest["total_seconds"] = round(time.perf_counter() - t_run, 3)
            for entry in manifest["notebooks"]:
                if entry["status"] in ("pending", "running"):
                    entry["status"] = "skipped" if entry["status"] == "pending" else manifest["status"]
            try:
                if reserve is not None:
                    reserve.release()
                publish_final()
            finally:
                lock.release()
    index = run_dir / "index.html"
    say(f"run {run_id} {manifest['status']} in {_clock(manifest['total_seconds'])}")
    if full:
        raise DiskFull(full, index, failure or {"notebook": None, "error": manifest["error"]})
    if failure:
        where = f" (cell {failure['cell']['number']}/{failure['cell']['of']})" if "cell" in failure else ""
        raise RunFailed(
            f"run failed in {failure['notebook']}{where}: {failure['error'].splitlines()[0]} (see {index})",
            index,
            failure,
        )
    return index
