"""Run records: each notebook's key results as JSON in its run folder (`metrics.json`).

One file per run, one key per notebook ("02_training"), so the run index and the list of all
runs can show and compare results without parsing rendered HTML. Values are made JSON-safe here
(numpy and pandas scalars, frames as {row: {column: value}}, NaN as null) so that a notebook
records what it computed, as it computed it. The file is replaced atomically: a reader never sees
half a file, and a value that cannot be serialised leaves the previous file untouched.
Interactive sessions have no run folder (`run_dir=None`) and record nothing.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from coffee_ml import config

if TYPE_CHECKING:  # the registry imports torch; recording results must not
    from coffee_ml.registry import ModelRef

METRICS_FILE = "metrics.json"
_REF_FIELDS = ("symbol", "interval", "model", "version")


def model_ref(ref: "ModelRef") -> str:
    """A registry version as people and run records name it: `BTCUSDT/1h/lstm_fast/v0003`
    (relative to the registry, so it means the same on every machine)."""
    return f"{ref.symbol}/{ref.interval}/{ref.model}/{ref.version}"


def display_path(path: str | Path) -> str:
    """A saved file's path for printing: relative to the outputs folder when inside it (an
    absolute local path means nothing to a reviewer), else just its name."""
    path = Path(path).resolve()
    try:
        return path.relative_to(config.outputs_dir().resolve()).as_posix()
    except ValueError:
        return path.name


def _key(key: Any) -> str:
    return "/".join(map(str, key)) if isinstance(key, tuple) else str(key)


def to_json(value: Any, where: str = "value") -> Any:
    """`value` as plain JSON types: NaN/NaT/inf become null, frames {row: {column: value}},
    series {label: value}, timestamps ISO strings, registry refs `model_ref`; objects with a
    `to_record()` (a `Headline`) are converted through it. Anything else raises TypeError."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    if isinstance(value, (pd.Timedelta, timedelta)):
        return str(value)
    if isinstance(value, pd.DataFrame):
        return {
            _key(row): {_key(col): to_json(v, f"{where}[{row!r}][{col!r}]") for col, v in values.items()}
            for row, values in value.to_dict(orient="index").items()
        }
    if isinstance(value, pd.Series):
        return {_key(k): to_json(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, Mapping):
        return {_key(k): to_json(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple, set, np.ndarray, pd.Index)):
        return [to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "to_record"):
        return to_json(value.to_record(), where)
    if all(hasattr(value, f) for f in _REF_FIELDS):  # a registry.ModelRef
        return model_ref(value)
    raise TypeError(
        f"cannot record {where} of type {type(value).__name__}: record numbers, strings, lists, "
        "dicts, pandas/numpy values or a Headline (paths as strings relative to the run folder)"
    )


def read_records(run_dir: str | Path | None) -> dict[str, Any]:
    """The run's records ({} when it has none yet, or for an interactive session)."""
    if run_dir is None:
        return {}
    path = Path(run_dir) / METRICS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{METRICS_FILE} in run {Path(run_dir).name}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{METRICS_FILE} in run {Path(run_dir).name}: expected an object, got {type(data).__name__}")
    return data


def record(run_dir: str | Path | None, notebook: str, **results: Any) -> None:
    """Merge `results` into the run's records under `notebook` (e.g. "02_training"): keys given
    here replace the same keys recorded before, others stay. No-op when `run_dir` is None.

    Everything is converted and serialised before the file is touched, then written to a
    temporary file beside it and renamed over it.
    """
    if run_dir is None:
        return
    if not results:
        raise ValueError("record() needs at least one result, e.g. record(run_dir, '02_training', headline=h)")
    run_dir = Path(run_dir)
    records = read_records(run_dir)
    stage = records.get(notebook)
    records[notebook] = {**(stage if isinstance(stage, dict) else {}), **{k: to_json(v, k) for k, v in results.items()}}
    write_atomic(run_dir / METRICS_FILE, json.dumps(records, indent=2, ensure_ascii=False, allow_nan=False))


def data_range(data: pd.DataFrame | pd.Series | pd.DatetimeIndex) -> dict[str, Any]:
    """First and last timestamp and row count of what a notebook worked on (the run index's
    "Data range"), from a time-indexed frame or an index."""
    index = data if isinstance(data, pd.DatetimeIndex) else data.index
    if len(index) == 0:
        return {"first": None, "last": None, "rows": 0}
    return {"first": index[0].isoformat(), "last": index[-1].isoformat(), "rows": len(index)}


def write_atomic(path: Path, text: str) -> Path:
    """Write through a temporary file renamed over `path`: a browser, or a run finishing next to
    this one, never reads half a page or half a manifest."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")  # created under the umask, unlike mkstemp's 0600
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
