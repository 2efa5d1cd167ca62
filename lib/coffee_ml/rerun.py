"""Re-execute a run from its manifest and say whether it reproduced.

A run's manifest holds each notebook's parameters (overrides included) and the store reads it made,
each with the bars it got and a fingerprint of them (`provenance.record_read`). A rerun executes
the same notebooks with the same parameters and thread settings (and `promote: false`: checking a run must not change
what production serves) into a new run folder, with the data range pinned:
a notebook that read "up to the newest candle" (`end` unset) reads up to the bar it read then,
so candles imported since do not change the answer. Afterwards the two runs are compared: the
fingerprints of what each notebook read (did the data change?) and every number the notebooks
recorded (did the results?). Timings are not results and are left out of the comparison.

A rerun takes only runs of this outputs folder (`$COFFEE_ML_OUTPUTS/runs/<id>`, checked after
resolving symlinks) and writes only there. Its manifest is checked whole before anything else is
read or run: its shape, and every notebook it names must be one of the project's notebooks
(`NN_name.ipynb` in notebooks/), so a crafted manifest cannot make a rerun open another file. Each
problem is one line naming the manifest and what was expected; no file's contents are echoed.
A run that did not finish (running, interrupted, died, failed) is re-executed all the same: the
manifest lists every notebook with its parameters from the start.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from coffee_ml import config
from coffee_ml.data.schema import interval_timedelta
from coffee_ml.provenance import THREAD_VARIABLES
from coffee_ml.runner import (
    ParamsError,
    Progress,
    RunFailed,
    RunSpec,
    Step,
    apply_overrides,
    check_spec,
    declared_parameters,
    read_text_file,
    run_spec,
)

_TIMING = re.compile(r"seconds|duration|datetime|elapsed", re.IGNORECASE)
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16_000_000  # a real manifest is a few KB (a hundred reads are ~30 KB)
_NOTEBOOK = re.compile(r"^\d\d_[A-Za-z0-9_]+\.ipynb$")
_RUN_ID = re.compile(r"^[\w.-]{1,200}$", re.ASCII)
_READ_TEXT = ("symbol", "interval", "how", "sha256")  # each read of the data, as provenance.record_read writes it
_READ_TIMES = ("start", "first", "last")


class ManifestError(ValueError):
    """A run folder or manifest that cannot be rerun as it is (one line, naming the file)."""


@dataclass
class Reproduction:
    """How a rerun compares with the run it repeats."""

    run_id: str
    rerun_id: str
    index: Path
    compared: int = 0  # numbers recorded by both runs
    differing: list[str] = field(default_factory=list)  # "record.path: old -> new"
    data_changes: list[str] = field(default_factory=list)  # reads whose bars differ
    overrides: dict[str, Any] = field(default_factory=dict)
    failed: str | None = None  # the rerun's own failure, if a notebook failed

    @property
    def reproduced(self) -> bool:
        return self.compared > 0 and not (self.differing or self.data_changes or self.failed)

    def summary(self) -> str:
        if self.failed:
            return f"rerun {self.rerun_id} of {self.run_id} failed: {self.failed}"
        if not self.compared and not self.differing:
            return f"rerun {self.rerun_id} of {self.run_id}: neither run recorded numbers, nothing to compare" + (
                f"; the data changed in {len(self.data_changes)} read(s)" if self.data_changes else ""
            )
        if self.reproduced:
            return (
                f"reproduced: rerun {self.rerun_id} recorded the same {self.compared} numbers as {self.run_id}, "
                "from the same data"
            )
        head = (
            f"rerun {self.rerun_id} of {self.run_id}: {len(self.differing)} of {self.compared} numbers differ"
            + (f" (overrides {self.overrides})" if self.overrides else "")
            + (
                f"; the data changed in {len(self.data_changes)} read(s)"
                if self.data_changes
                else "; the data are unchanged"
            )
        )
        return "\n".join(
            [
                head,
                *(f"  data: {d}" for d in self.data_changes[:10]),
                *(f"  {d}" for d in self.differing[:20]),
                *(["  ..."] if len(self.differing) > 20 else []),
            ]
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "rerun_of": self.run_id,
            "reproduced": self.reproduced,
            "compared": self.compared,
            "differing": self.differing,
            "data_changes": self.data_changes,
            "overrides": self.overrides,
        }


def _show(value: Any) -> str:
    """A manifest value in a message: short text as written (escaped), anything else by its type."""
    if isinstance(value, str):
        return ascii(value) if len(value) <= 60 else ascii(value[:57]) + "..."
    return "null" if value is None else f"a {type(value).__name__}"


def find_run(run: str | Path, outputs: Path | None = None) -> Path:
    """A run folder of this outputs folder: its id (outputs/runs/<id>) or its path. Anything that
    resolves (symlinks followed) elsewhere is refused, so a rerun reads and writes only here."""
    runs = (outputs or config.outputs_dir()) / "runs"
    text = str(run)
    plain = bool(text) and "/" not in text and "\\" not in text and text not in (".", "..")
    candidate = runs / text if plain else Path(text).expanduser()
    try:
        real, real_runs = candidate.resolve(), runs.resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        raise ManifestError(f"{text}: not a run folder (its path does not resolve)") from None
    if not real.is_relative_to(real_runs) or real.parent != real_runs:
        raise ManifestError(
            f"{text}: not a run of {runs}; rerun takes a run id or the path of a folder in "
            f"{runs} (COFFEE_ML_OUTPUTS chooses the outputs folder)"
        )
    manifest = real / MANIFEST
    if not manifest.is_file() and not manifest.is_symlink():
        raise FileNotFoundError(
            f"no run {text!r}: expected a run id under {runs} or the path of a run folder in it, with a manifest.json"
        )
    if manifest.resolve().parent != real:
        raise ManifestError(f"{manifest}: a link to a file outside its run folder; not a run manifest")
    return real


def _read_json(path: Path, what: str) -> Any:
    """A JSON file of a run folder, or one ManifestError line naming it (never its contents)."""
    try:
        text = read_text_file(path, what, MAX_MANIFEST_BYTES)
    except ParamsError as exc:
        raise ManifestError(f"{exc}; expected the run's {what} (JSON)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); expected the run's {what}"
        ) from None
    except RecursionError:
        raise ManifestError(f"{path}: JSON nested too deeply; expected the run's {what}") from None


def check_manifest(manifest: Any, where: str | Path = MANIFEST, notebooks_dir: Path | None = None) -> dict[str, Any]:
    """`manifest` if a rerun can use it; else one ManifestError line naming `where` and the first
    problem: its shape (the keys a rerun reads, with their types) and its notebooks, which must be
    plain file names of the project's notebooks (checked before any of them is opened)."""
    notebooks_dir = notebooks_dir or config.NOTEBOOKS_DIR

    def fail(what: str) -> ManifestError:
        return ManifestError(f"{where}: {what}")

    if not isinstance(manifest, dict):
        raise fail(f"expected a JSON object (a run manifest), got {_json_type(manifest)}")
    missing = [key for key in ("run_id", "notebooks") if key not in manifest]
    if missing:
        raise fail(
            f"no {' or '.join(repr(k) for k in missing)}; expected a run manifest with 'run_id' and a 'notebooks' list"
        )
    if not isinstance(manifest["run_id"], str) or not _RUN_ID.fullmatch(manifest["run_id"]):
        raise fail(f"run_id {_show(manifest['run_id'])}: expected a run id (letters, digits, '.', '_', '-')")
    for key in ("name",):
        if manifest.get(key) is not None and not isinstance(manifest[key], str):
            raise fail(f"{key} is {_json_type(manifest[key])}; expected text")
    for key in ("overrides", "threads"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise fail(f"{key} is {_json_type(manifest[key])}; expected an object")
    for name, value in (manifest.get("threads") or {}).items():
        if name in THREAD_VARIABLES and not (
            value is None
            or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
            or (isinstance(value, str) and re.fullmatch(r"[0-9, ]{1,32}", value))
        ):
            raise fail(f"threads.{name} {_show(value)}: expected a thread count or null")
    notebooks = manifest["notebooks"]
    if not isinstance(notebooks, list) or not notebooks:
        raise fail(
            f"notebooks is {_json_type(notebooks)}; expected a non-empty list of "
            "{'notebook': 'NN_name.ipynb', 'parameters': {...}} objects"
        )
    project = notebooks_dir.resolve()
    for i, entry in enumerate(notebooks, 1):
        at = f"notebooks[{i}]"
        if not isinstance(entry, dict):
            raise fail(f"{at} is {_json_type(entry)}; expected an object with 'notebook' and 'parameters'")
        name = entry.get("notebook")
        if not isinstance(name, str) or not _NOTEBOOK.fullmatch(name):
            raise fail(
                f"{at}.notebook {_show(name)}: expected the file name of one of the project's notebooks "
                f"(NN_name.ipynb in {notebooks_dir.name}/)"
            )
        path = notebooks_dir / name
        if not path.resolve().is_relative_to(project) or not path.is_file():
            raise fail(f"{at}.notebook {_show(name)}: no such notebook in {notebooks_dir}")
        params = entry.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise fail(f"{at}.parameters is {_json_type(params)}; expected an object of parameter values")
        reads = entry.get("data")
        if reads is not None and not isinstance(reads, list):
            raise fail(f"{at}.data is {_json_type(reads)}; expected the list of reads the notebook made")
        for j, read in enumerate(reads or [], 1):
            _check_read(read, f"{at}.data[{j}]", fail)
    return manifest


def _json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _check_read(read: Any, at: str, fail: Any) -> None:
    """One recorded store read: what `_pinned_end` and `compare_data` use from it."""
    if not isinstance(read, dict):
        raise fail(
            f"{at} is {_json_type(read)}; expected an object (symbol, interval, how, start, first, last, rows, sha256)"
        )
    for key in _READ_TEXT:
        if not isinstance(read.get(key), str):
            raise fail(f"{at}.{key} is {'missing' if key not in read else _json_type(read[key])}; expected text")
    for key in _READ_TIMES:
        if key not in read:
            raise fail(f"{at}.{key} is missing; expected a time or null")
        if read[key] is not None and not isinstance(read[key], str):
            raise fail(f"{at}.{key} is {_json_type(read[key])}; expected a time or null")
    if not isinstance(read.get("rows"), int) or isinstance(read["rows"], bool) or read["rows"] < 0:
        raise fail(f"{at}.rows {_show(read.get('rows'))}: expected a count of bars")
    try:
        interval_timedelta(read["interval"])
    except (ValueError, TypeError, KeyError, OverflowError):
        raise fail(f"{at}.interval {_show(read['interval'])}: expected a candle interval such as 1h") from None
    if read["last"]:
        try:
            last = pd.Timestamp(read["last"])
            last + interval_timedelta(read["interval"])  # noqa: B018 - what _pinned_end computes must not overflow
        except (ValueError, TypeError, OverflowError):
            last = None
        if last is None or last is pd.NaT or last.tzinfo is None:
            raise fail(
                f"{at}.last {_show(read['last'])}: expected the time of the last bar read, with its "
                "time zone (ISO 8601)"
            )


def load_manifest(folder: Path, notebooks_dir: Path | None = None) -> dict[str, Any]:
    """A run folder's manifest, read and checked (`check_manifest`)."""
    path = folder / MANIFEST
    return check_manifest(_read_json(path, "manifest"), path, notebooks_dir)


def _pinned_end(entry: Mapping[str, Any]) -> str | None:
    """Just past the newest bar the notebook read: reading up to it again gives the same bars."""
    ends = [pd.Timestamp(r["last"]) + interval_timedelta(r["interval"]) for r in entry.get("data") or [] if r["last"]]
    return max(ends).isoformat() if ends else None


def spec_from_manifest(
    manifest: Mapping[str, Any], notebooks_dir: Path | None = None, where: str | Path = MANIFEST
) -> RunSpec:
    """The run's notebooks and parameters as executed, `end` pinned where the run read to the newest bar."""
    notebooks_dir = notebooks_dir or config.NOTEBOOKS_DIR
    check_manifest(manifest, where, notebooks_dir)
    steps = []
    for entry in manifest["notebooks"]:
        params = dict(entry.get("parameters") or {})
        declared = declared_parameters(notebooks_dir / entry["notebook"])
        if params.get("end") is None and (end := _pinned_end(entry)) and "end" in declared:
            params["end"] = end
        if "promote" in declared:  # a reproduction check must not change what production serves
            params["promote"] = False
        steps.append(Step(entry["notebook"], params))
    document = {"rerun_of": manifest["run_id"], "params": manifest.get("params")}
    return RunSpec(
        str(manifest.get("name") or "rerun"),
        steps,
        None,
        document,
        dict(manifest.get("overrides") or {}),
        rerun_of=manifest["run_id"],
    )


def _threads_of(manifest: Mapping[str, Any]) -> AbstractContextManager[None]:
    """The run's thread settings for the rerun's kernels (a batch entry's run had its share of
    the cores; the same sums in another order would differ in the last digits)."""
    recorded = manifest.get("threads") or {}
    return config.environ(
        {name: str(recorded[name]) if recorded[name] else None for name in THREAD_VARIABLES if name in recorded}
    )


def _numbers(value: Any, path: str = "") -> dict[str, float | None]:
    """Every number in a record, by its path ('02_training.leaderboard.gru.mae'); timings left out."""
    if isinstance(value, Mapping):
        out: dict[str, float | None] = {}
        for key, item in value.items():
            if not _TIMING.search(str(key)):
                out.update(_numbers(item, f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _numbers(item, f"{path}[{i}]").items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {path: float(value)}
    return {}


def compare_records(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[int, list[str]]:
    """How many numbers both runs recorded, and those that differ beyond float round-off."""
    a, b = _numbers(old), _numbers(new)
    common = sorted(a.keys() & b.keys())
    differing = [
        f"{k}: {a[k]!r} -> {b[k]!r}"
        for k in common
        if not (
            a[k] == b[k]
            or (a[k] is not None and b[k] is not None and math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12))
        )
    ]
    differing += [f"{k}: only in the first run" for k in sorted(a.keys() - b.keys())]
    differing += [f"{k}: only in the rerun" for k in sorted(b.keys() - a.keys())]
    return len(common), differing


def compare_data(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Reads of the first run whose bars the rerun got differently (or did not make)."""
    changes = []
    for before, after in zip(old["notebooks"], new["notebooks"]):

        def key(r: Mapping[str, Any]) -> tuple[Any, ...]:
            return r["symbol"], r["interval"], r["how"], r["start"], r["first"]

        got = {key(r): r for r in after.get("data") or []}
        for r in before.get("data") or []:
            again = got.get(key(r))
            if again is None or again["sha256"] != r["sha256"]:
                now = f"{again['rows']} bars, other values" if again else "not read"
                changes.append(
                    f"{before['notebook']}: {r['symbol']} {r['interval']} {r['first']}..{r['last']} "
                    f"({r['rows']} bars) -> {now}"
                )
    return changes


def rerun(
    run: str | Path,
    overrides: Mapping[str, Any] | None = None,
    outputs: Path | None = None,
    notebooks_dir: Path | None = None,
    progress: Progress | None = None,
) -> Reproduction:
    """Execute a run again from its manifest (plus `overrides`) and compare data and results."""
    from coffee_ml.reports.index import write_run_index
    from coffee_ml.reports.records import METRICS_FILE, write_atomic

    outputs = outputs or config.outputs_dir()
    folder = find_run(run, outputs)
    manifest = load_manifest(folder, notebooks_dir)
    spec = spec_from_manifest(manifest, notebooks_dir, folder / MANIFEST)
    problems = check_spec(spec, notebooks_dir)  # parameters the notebooks no longer take: name the manifest
    if problems:
        raise ManifestError(f"{folder / MANIFEST}: {'; '.join(problems)}")
    spec = apply_overrides(spec, overrides or {}, notebooks_dir)
    recorded = {}
    if (folder / METRICS_FILE).exists() or (folder / METRICS_FILE).is_symlink():  # read now: before any work
        if (folder / METRICS_FILE).resolve().parent != folder:
            raise ManifestError(f"{folder / METRICS_FILE}: a link to a file outside its run folder")
        recorded = _read_json(folder / METRICS_FILE, "records")
        if not isinstance(recorded, dict):
            raise ManifestError(
                f"{folder / METRICS_FILE}: expected a JSON object of records, got {_json_type(recorded)}"
            )
    failed = None
    try:
        with _threads_of(manifest):
            index = run_spec(spec, outputs=outputs, notebooks_dir=notebooks_dir, progress=progress)
    except RunFailed as exc:
        index, failed = exc.index, str(exc)
    new_dir = index.parent
    new_manifest = json.loads((new_dir / MANIFEST).read_text())
    new_records = json.loads((new_dir / METRICS_FILE).read_text()) if (new_dir / METRICS_FILE).is_file() else {}
    compared, differing = compare_records(recorded, new_records)
    result = Reproduction(
        manifest["run_id"],
        new_manifest["run_id"],
        index,
        compared,
        differing,
        compare_data(manifest, new_manifest),
        dict(overrides or {}),
        failed,
    )
    new_manifest["reproduction"] = result.to_record()
    write_atomic(new_dir / MANIFEST, json.dumps(new_manifest, indent=2, default=str))
    write_run_index(new_dir)
    return result
