"""Re-execute a run from its manifest and say whether it reproduced.

A run's manifest holds each notebook's parameters (overrides included) and the store reads it made,
each with the bars it got and a fingerprint of them (`provenance.record_read`). A rerun executes
the same notebooks with the same parameters and thread settings (and `promote: false`: checking a run must not change
what production serves) into a new run folder, with the data range pinned:
a notebook that read "up to the newest candle" (`end` unset) reads up to the bar it read then,
so candles imported since do not change the answer. Afterwards the two runs are compared: the
fingerprints of what each notebook read (did the data change?) and every number the notebooks
recorded (did the results?). Timings are not results and are left out of the comparison.
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
from coffee_ml.runner import Progress, RunFailed, RunSpec, Step, apply_overrides, declared_parameters, run_spec

_TIMING = re.compile(r"seconds|duration|datetime|elapsed", re.IGNORECASE)


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
            return (f"rerun {self.rerun_id} of {self.run_id}: neither run recorded numbers, nothing to compare"
                    + (f"; the data changed in {len(self.data_changes)} read(s)" if self.data_changes else ""))
        if self.reproduced:
            return (f"reproduced: rerun {self.rerun_id} recorded the same {self.compared} numbers as {self.run_id}, "
                    "from the same data")
        head = (f"rerun {self.rerun_id} of {self.run_id}: {len(self.differing)} of {self.compared} numbers differ"
                + (f" (overrides {self.overrides})" if self.overrides else "")
                + (f"; the data changed in {len(self.data_changes)} read(s)" if self.data_changes else
                   "; the data are unchanged"))
        return "\n".join([head, *(f"  data: {d}" for d in self.data_changes[:10]),
                          *(f"  {d}" for d in self.differing[:20]),
                          *(["  ..."] if len(self.differing) > 20 else [])])

    def to_record(self) -> dict[str, Any]:
        return {"rerun_of": self.run_id, "reproduced": self.reproduced, "compared": self.compared,
                "differing": self.differing, "data_changes": self.data_changes, "overrides": self.overrides}


def find_run(run: str | Path, outputs: Path | None = None) -> Path:
    """A run folder from its id (outputs/runs/<id>) or its path."""
    folder = Path(run)
    if not (folder / "manifest.json").is_file():
        folder = (outputs or config.outputs_dir()) / "runs" / str(run)
    if not (folder / "manifest.json").is_file():
        raise FileNotFoundError(f"no run {run!r}: expected a run id under {(outputs or config.outputs_dir()) / 'runs'} "
                                "or a run folder with a manifest.json")
    return folder


def _pinned_end(entry: Mapping[str, Any]) -> str | None:
    """Just past the newest bar the notebook read: reading up to it again gives the same bars."""
    ends = [pd.Timestamp(r["last"]) + interval_timedelta(r["interval"]) for r in entry.get("data") or [] if r["last"]]
    return max(ends).isoformat() if ends else None


def spec_from_manifest(manifest: Mapping[str, Any], notebooks_dir: Path | None = None) -> RunSpec:
    """The run's notebooks and parameters as executed, `end` pinned where the run read to the newest bar."""
    notebooks_dir = notebooks_dir or config.NOTEBOOKS_DIR
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
    return RunSpec(str(manifest.get("name") or "rerun"), steps, None, document, dict(manifest.get("overrides") or {}),
                   rerun_of=manifest["run_id"])


def _threads_of(manifest: Mapping[str, Any]) -> AbstractContextManager[None]:
    """The run's thread settings for the rerun's kernels (a batch entry's run had its share of
    the cores; the same sums in another order would differ in the last digits)."""
    recorded = manifest.get("threads") or {}
    return config.environ({name: str(recorded[name]) if recorded[name] else None
                           for name in THREAD_VARIABLES if name in recorded})


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
    differing = [f"{k}: {a[k]!r} -> {b[k]!r}" for k in common
                 if not (a[k] == b[k] or (a[k] is not None and b[k] is not None and
                                          math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12)))]
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
                changes.append(f"{before['notebook']}: {r['symbol']} {r['interval']} {r['first']}..{r['last']} "
                               f"({r['rows']} bars) -> {now}")
    return changes


def rerun(run: str | Path, overrides: Mapping[str, Any] | None = None, outputs: Path | None = None,
          notebooks_dir: Path | None = None, progress: Progress | None = None) -> Reproduction:
    """Execute a run again from its manifest (plus `overrides`) and compare data and results."""
    from coffee_ml.reports.index import write_run_index
    from coffee_ml.reports.records import METRICS_FILE, write_atomic

    folder = find_run(run, outputs)
    manifest = json.loads((folder / "manifest.json").read_text())
    spec = apply_overrides(spec_from_manifest(manifest, notebooks_dir), overrides or {}, notebooks_dir)
    failed = None
    try:
        with _threads_of(manifest):
            index = run_spec(spec, outputs=outputs or folder.parent.parent, notebooks_dir=notebooks_dir,
                             progress=progress)
    except RunFailed as exc:
        index, failed = exc.index, str(exc)
    new_dir = index.parent
    new_manifest = json.loads((new_dir / "manifest.json").read_text())

    def records(d: Path) -> dict[str, Any]:
        return json.loads((d / METRICS_FILE).read_text()) if (d / METRICS_FILE).is_file() else {}

    compared, differing = compare_records(records(folder), records(new_dir))
    result = Reproduction(manifest["run_id"], new_manifest["run_id"], index, compared, differing,
                          compare_data(manifest, new_manifest), dict(overrides or {}), failed)
    new_manifest["reproduction"] = result.to_record()
    write_atomic(new_dir / "manifest.json", json.dumps(new_manifest, indent=2, default=str))
    write_run_index(new_dir)
    return result

