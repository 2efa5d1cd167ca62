"""Where a result came from: git commit and package versions, saved with every run and model."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from coffee_ml import config

TRACKED_PACKAGES = ("coffee-ml", "numpy", "pandas", "pyarrow", "scikit-learn", "torch", "ta-lib", "optuna",
                    "chdb", "clickhouse-connect", "papermill", "nbconvert", "matplotlib")


def git_state() -> dict[str, Any]:
    """HEAD commit and whether the work tree had uncommitted changes (None outside a checkout)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=config.PROJECT_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
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


def environment() -> dict[str, Any]:
    return {"git": git_state(), "packages": package_versions(), "python": sys.version.split()[0],
            "platform": platform.platform()}
