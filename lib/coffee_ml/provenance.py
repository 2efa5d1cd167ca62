"""Where a result came from: git commit and package versions, saved with every run and model."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from coffee_ml import config

TRACKED_PACKAGES = (
    "coffee-ml",
    "numpy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "torch",
    "ta-lib",
    "optuna",
    "chdb",
    "clickhouse-connect",
    "papermill",
    "nbconvert",
    "matplotlib",
)


def git_state() -> dict[str, Any]:
    """HEAD commit and whether the work tree had uncommitted changes (None outside a checkout)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=config.PROJECT_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what sets torch's and BLAS's thread counts


def threads() -> dict[str, Any]:
    """The thread settings kernels inherit: float sums in another order change the last digits of
    a trained model, so a rerun applies the same ones (batch entries set them per process)."""
    return {"cpus": os.cpu_count(), **{name: os.environ.get(name) for name in THREAD_VARIABLES}}


def environment() -> dict[str, Any]:
    return {
        "git": git_state(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "threads": threads(),
    }


READS_ENV = "COFFEE_ML_READS_FILE"  # set by the runner for each notebook's kernel


def fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of a candle frame's raw bytes (the times as int64 nanoseconds, each column as
    float64): equal only for the same bars with the same numbers, so a rerun can tell whether its
    data changed, and independent of how any library version hashes objects."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(np.ascontiguousarray(frame.index.as_unit("ns").asi8).tobytes())
    for column in frame.columns:
        digest.update(np.ascontiguousarray(frame[column].to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()


def record_read(how: str, symbol: str, interval: str, start: Any, end: Any, frame: pd.DataFrame) -> None:
    """Append what a store read returned to the run's reads file, when a runner kernel has one:
    the query (symbol, interval, bounds), the bars it got and their fingerprint."""
    path = os.environ.get(READS_ENV)
    if not path:
        return
    entry = {
        "how": how,
        "symbol": symbol,
        "interval": interval,
        "start": None if start is None else str(start),
        "end": None if end is None else str(end),
        "rows": len(frame),
        "first": frame.index[0].isoformat() if len(frame) else None,
        "last": frame.index[-1].isoformat() if len(frame) else None,
        "sha256": fingerprint(frame),
    }
    with open(path, "a", encoding="utf-8") as fh:  # one short line per read: appends do not interleave
        fh.write(json.dumps(entry) + "\n")
