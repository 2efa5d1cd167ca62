"""Model registry on disk: outputs/models/<symbol>/<interval>/<model>/<version>/.

A version is `weights.pt` (a plain tensor state dict, read back with `weights_only=True`) plus
`metadata.json` (model type, hyperparameters, feature names, scaler, horizon, data range, metrics,
calibration, git commit, package versions, the weights' SHA-256). Nothing is pickled, so loading
a file never runs code. A version is written in a temporary folder and renamed into place, so a
crash leaves either the whole version or nothing. `production` is a pointer file replaced atomically.

Each model keeps its own `production` pointer, and each symbol and interval one `production.json`
naming the model or ensemble that serves it (what `coffee-ml predict` and the trading sidebar
use), with when and why it was promoted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from filelock import FileLock

from coffee_ml import config

FORMAT = "coffee-ml-model/1"
WEIGHTS, METADATA, PRODUCTION, LAST_VERSION = "weights.pt", "metadata.json", "production", ".last_version"
SERVING = "production.json"  # per symbol and interval: the model serving it
_VERSION = re.compile(r"^v(\d{4,})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RegistryError(RuntimeError):
    """A registry entry that is missing, corrupted or not a coffee-ml model."""


@dataclass(frozen=True)
class ModelRef:
    symbol: str
    interval: str
    model: str
    version: str
    path: Path


def models_dir() -> Path:
    return config.outputs_dir() / "models"


def _check_name(kind: str, value: str) -> str:
    if not _NAME.fullmatch(value or ""):
        raise ValueError(f"{kind} {value!r} is not a valid registry name (letters, digits, '.', '_', '-')")
    return value


def _model_dir(symbol: str, interval: str, model: str, root: Path | None) -> Path:
    return (root or models_dir()) / _check_name("symbol", symbol) / _check_name("interval", interval) / \
        _check_name("model", model)


def _versions(model_dir: Path) -> list[str]:
    if not model_dir.is_dir():
        return []
    found = [p.name for p in model_dir.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name)]
    return sorted(found, key=lambda v: int(v[1:]))


def _last_number(model_dir: Path) -> int:
    """Highest version number ever used here: existing folders and the counter that outlives
    deletions, so a deleted version's number never comes back for a different model."""
    existing = _versions(model_dir)
    counter = model_dir / LAST_VERSION
    recorded = int(counter.read_text().strip() or 0) if counter.is_file() else 0
    return max(int(existing[-1][1:]) if existing else 0, recorded)


def _record_number(model_dir: Path, number: int) -> None:
    tmp = model_dir / f".{LAST_VERSION}.{os.getpid()}"
    tmp.write_text(f"{max(number, _last_number(model_dir))}\n")
    os.replace(tmp, model_dir / LAST_VERSION)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save(tensors: dict[str, torch.Tensor], metadata: dict[str, Any], *, symbol: str, interval: str, model: str,
         root: Path | None = None) -> ModelRef:
    """Write a new version atomically and return where it went (v0001, v0002, ...; a number is
    never reused, even after its version is deleted)."""
    target_dir = _model_dir(symbol, interval, model, root)
    target_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, buf)
    weights = buf.getvalue()
    meta = {**metadata, "format": FORMAT, "symbol": symbol, "interval": interval, "model": model,
            "saved_at": datetime.now(timezone.utc).isoformat(), "weights_sha256": _sha256(weights)}
    body = json.dumps(meta, indent=2, sort_keys=True, default=_json_default)
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=target_dir))
    try:
        (staging / WEIGHTS).write_bytes(weights)
        (staging / METADATA).write_text(body)
        for f in (staging / WEIGHTS, staging / METADATA):
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        while True:  # another process may take the same number first: take the next one
            version = f"v{_last_number(target_dir) + 1:04d}"
            try:
                os.rename(staging, target_dir / version)
                break
            except OSError:
                if not (target_dir / version).exists():
                    raise
        _record_number(target_dir, int(version[1:]))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return ModelRef(symbol, interval, model, version, target_dir / version)


def _json_default(value: Any) -> Any:
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in model metadata")


def resolve(symbol: str, interval: str, model: str, version: str = "latest", root: Path | None = None) -> ModelRef:
    """`version`: "vNNNN", "latest" or "production"."""
    model_dir = _model_dir(symbol, interval, model, root)
    versions = _versions(model_dir)
    if not versions:
        raise RegistryError(f"no saved versions of {symbol}/{interval}/{model} in {model_dir.parent.parent.parent}")
    if version == "latest":
        version = versions[-1]
    elif version == "production":
        pointer = model_dir / PRODUCTION
        if not pointer.is_file():
            raise RegistryError(f"{symbol}/{interval}/{model} has no production version; promote one first")
        version = pointer.read_text().strip()
    if version not in versions:
        raise RegistryError(f"{symbol}/{interval}/{model} has no version {version!r} (have {', '.join(versions)})")
    return ModelRef(symbol, interval, model, version, model_dir / version)


def read(ref: ModelRef) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a version, verified: clear errors for corrupted or foreign files."""
    meta_path, weights_path = ref.path / METADATA, ref.path / WEIGHTS
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise RegistryError(f"{meta_path}: missing; not a coffee-ml model version") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{meta_path}: corrupted metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RegistryError(f"{meta_path}: not a coffee-ml model (format {meta.get('format') if isinstance(meta, dict) else None!r}, "
                            f"expected {FORMAT!r})")
    try:
        data = weights_path.read_bytes()
    except FileNotFoundError:
        raise RegistryError(f"{weights_path}: missing") from None
    if _sha256(data) != meta.get("weights_sha256"):
        raise RegistryError(f"{weights_path}: checksum mismatch: the file is corrupted or was replaced")
    try:
        tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-tensor or truncated payloads
        raise RegistryError(f"{weights_path}: not a plain tensor state dict ({type(exc).__name__})") from None
    return tensors, meta


def versions(symbol: str, interval: str, root: Path | None = None) -> Iterator[tuple[ModelRef, dict[str, Any]]]:
    """Every readable version of every model of `symbol` `interval`, oldest first per model, with
    its metadata (unchecked: for choosing among versions, not loading one; an unreadable
    metadata.json is skipped, `list_models` marks it)."""
    folder = (root or models_dir()) / _check_name("symbol", symbol) / _check_name("interval", interval)
    for model_dir in sorted(p for p in folder.glob("*") if p.is_dir()):
        for version in _versions(model_dir):
            try:
                meta = json.loads((model_dir / version / METADATA).read_text())
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict):
                yield ModelRef(symbol, interval, model_dir.name, version, model_dir / version), meta


def list_models(root: Path | None = None) -> pd.DataFrame:
    """Every saved version with its headline test metric and whether it is in production."""
    root = root or models_dir()
    rows = []
    for meta_path in sorted(root.glob(f"*/*/*/v*/{METADATA}")):
        version_dir = meta_path.parent
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):  # unreadable, not UTF-8 or not JSON: listed, marked unreadable
            meta = None
        if not isinstance(meta, dict):  # one broken version must not hide the others
            meta = {"saved_at": "unreadable metadata.json"}
        pointer = version_dir.parent / PRODUCTION
        production = pointer.is_file() and pointer.read_text().strip() == version_dir.name
        test = (meta.get("metrics") or {}).get("test") or {}
        rows.append({"symbol": version_dir.parts[-4], "interval": version_dir.parts[-3],
                     "model": version_dir.parts[-2], "version": version_dir.name, "production": production,
                     "saved_at": meta.get("saved_at"), "horizon": meta.get("horizon"),
                     "test_mae": test.get("mae"), "naive_mae": test.get("naive_mae")})
    return pd.DataFrame(rows, columns=["symbol", "interval", "model", "version", "production", "saved_at",
                                       "horizon", "test_mae", "naive_mae"])


def _replace_text(path: Path, text: str) -> None:
    """Replace a small file atomically and durably: a crash leaves the old or the new text."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def promote(ref: ModelRef, reason: str | None = None) -> None:
    """Mark a version as production: of its model, and as the model serving its symbol and interval
    (both pointers replaced atomically, under a lock per symbol and interval so that two processes
    promoting at once leave both pointers naming the same winner; `reason` is kept for whoever asks why)."""
    read(ref)  # never promote a version that would not load
    serving = {"model": ref.model, "version": ref.version, "reason": reason,
               "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with FileLock(str(ref.path.parent.parent / f".{SERVING}.lock")):
        _replace_text(ref.path.parent / PRODUCTION, ref.version + "\n")
        _replace_text(ref.path.parent.parent / SERVING, json.dumps(serving, indent=2) + "\n")


def _serving_folder(symbol: str, interval: str, root: Path | None) -> Path:
    return (root or models_dir()) / _check_name("symbol", symbol) / _check_name("interval", interval)


def promotion(symbol: str, interval: str, root: Path | None = None) -> dict[str, Any]:
    """Which model serves `symbol` `interval`, since when and why ({} when never promoted here)."""
    pointer = _serving_folder(symbol, interval, root) / SERVING
    if not pointer.is_file():
        return {}
    try:
        record = json.loads(pointer.read_text())
        if not isinstance(record, dict) or not {"model", "version"} <= record.keys():
            raise ValueError
        return record
    except ValueError:
        raise RegistryError(f"{pointer}: corrupted; promote a version again "
                            f"(coffee-ml models promote {symbol} {interval} MODEL VERSION)") from None


def production(symbol: str, interval: str, root: Path | None = None) -> ModelRef:
    """The model or ensemble serving `symbol` `interval` (what `coffee-ml predict` forecasts with).

    Registries written before symbol-level promotion have only per-model pointers: one of them is
    unambiguous and is used; several are an error that says how to choose.
    """
    record = promotion(symbol, interval, root)
    if record:
        return resolve(symbol, interval, record["model"], record["version"], root)
    folder = _serving_folder(symbol, interval, root)
    models = sorted(p.parent.name for p in folder.glob(f"*/{PRODUCTION}")) if folder.is_dir() else []
    if len(models) == 1:
        return resolve(symbol, interval, models[0], "production", root)
    if models:
        raise RegistryError(f"{symbol} {interval}: several models have a production version ({', '.join(models)}); "
                            f"promote the one to serve: coffee-ml models promote {symbol} {interval} MODEL VERSION")
    raise RegistryError(f"no production model for {symbol} {interval} in {root or models_dir()}: run the quickstart "
                        f"(make run) or promote one: coffee-ml models promote {symbol} {interval} MODEL VERSION")


def delete(ref: ModelRef) -> None:
    """Remove a version; refuses the production version (demote by promoting another first)."""
    pointer = ref.path.parent / PRODUCTION
    if pointer.is_file() and pointer.read_text().strip() == ref.version:
        raise RegistryError(f"{ref.symbol}/{ref.interval}/{ref.model}/{ref.version} is in production; "
                            "promote another version before deleting it")
    trash = ref.path.with_name(f".deleting-{ref.version}")
    os.rename(ref.path, trash)  # vanishes from listings at once, then is removed
    shutil.rmtree(trash)
