"""Model registry on disk: outputs/models/<symbol>/<interval>/<model>/<version>/.

A version is `weights.pt` (a plain tensor state dict, read back with `weights_only=True`) plus
`metadata.json` (model type, hyperparameters, feature names, scaler, horizon, data range, metrics,
calibration, git commit, package versions, the weights' SHA-256). Nothing is pickled, so loading
a file never runs code. A version is written in a staging folder and renamed into place, so a
crash leaves either the whole version or nothing.

Which version is in production is recorded in one place: `production.json` per symbol and
interval, naming the model and version that serve it (what `coffee-ml predict`, the trading
sidebar, `models list` and `resolve(..., "production")` read), with when and why it was promoted.
It is replaced by one atomic rename, so a crash at any point leaves the old or the new record,
never two versions that both claim production. Registries written before it kept a `production`
file per model: without a `production.json` a single such file is still read (several are an
error that says how to choose); the first promotion writes `production.json` and removes them.

Work in progress carries its owner (a hash of the host name, the pid and the process's start
time from /proc, so a reused pid is not mistaken for it): staging folders `.incoming-<owner>-*`,
temporary files `.<name>.<owner>` and `.deleting-vNNNN-<owner>`. Leftovers of a killed process
(its pid gone, or reused by another process) are removed by the next save, promote, delete,
`resolve` or `list_models` that looks at their folder; nothing whose owner is alive, or runs on
another host, is touched. Leftovers of older versions of coffee-ml, which did not record an owner,
are removed once they are an hour old (a save or promote takes seconds).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from filelock import FileLock

from coffee_ml import config, processes

FORMAT = "coffee-ml-model/1"
WEIGHTS, METADATA, LAST_VERSION = "weights.pt", "metadata.json", ".last_version"
SERVING = "production.json"  # per symbol and interval: the model serving it, the only production record
PRODUCTION = "production"  # per model, written before production.json existed: read only without one
STALE_AFTER_S = 3600  # leftovers that name no owner (older coffee-ml) are removed after this long
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


# ------------------------------------------------------------------ owners of work in progress
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_OWNER = r"(?:(?P<host>[0-9a-f]{8})-)?(?P<pid>\d+)(?:-(?P<start>\d+))?"
_STAGING = re.compile(rf"^\.incoming-{_OWNER}-[A-Za-z0-9_]+$")
_DELETING = re.compile(rf"^\.deleting-v\d{{4,}}-{_OWNER}$")
_TEMP = re.compile(rf"^\.(?P<name>{re.escape(SERVING)}|{re.escape(LAST_VERSION)}|{PRODUCTION})\.{_OWNER}$")
_UNOWNED = re.compile(r"^\.(?:incoming-[A-Za-z0-9_]{8}|deleting-v\d{4,})$")  # older coffee-ml: no owner


def _owner() -> str:
    """This process, as named in the files it is writing: host hash, pid, start time."""
    pid = os.getpid()  # asked each time: a forked child is another owner
    return f"{_HOST}-{pid}-{processes.process_start(pid) or 0}"


def _alive(match: re.Match[str]) -> bool:
    """Whether the owner named in a leftover's name may still be writing it (when unsure: yes)."""
    if match["host"] and match["host"] != _HOST:
        return True  # another machine sharing this folder: its processes cannot be seen from here
    started = match["start"] if match["start"] not in (None, "0") else None
    return processes.alive(int(match["pid"]), started) is not False


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:  # read-only outputs, or another process removed it first: not this call's business
        pass


def _tidy(folder: Path) -> None:
    """Remove what killed processes left in `folder` (a model's or a symbol/interval's folder):
    staging folders, temporary pointer files and half-deleted versions whose owner is gone."""
    try:
        entries = [p for p in folder.iterdir() if p.name.startswith(".")]
    except OSError:
        return
    now = time.time()
    for path in entries:
        match = _STAGING.fullmatch(path.name) or _DELETING.fullmatch(path.name) or _TEMP.fullmatch(path.name)
        if match is not None:
            if not _alive(match):
                _remove(path)
        elif _UNOWNED.fullmatch(path.name):
            try:
                old = now - path.stat().st_mtime > STALE_AFTER_S
            except OSError:
                continue
            if old:
                _remove(path)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_name(kind: str, value: str) -> str:
    if not _NAME.fullmatch(value or ""):
        raise ValueError(f"{kind} {value!r} is not a valid registry name (letters, digits, '.', '_', '-')")
    return value


def _model_dir(symbol: str, interval: str, model: str, root: Path | None) -> Path:
    return (
        (root or models_dir())
        / _check_name("symbol", symbol)
        / _check_name("interval", interval)
        / _check_name("model", model)
    )


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
    _replace_text(model_dir / LAST_VERSION, f"{max(number, _last_number(model_dir))}\n")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save(
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, Any],
    *,
    symbol: str,
    interval: str,
    model: str,
    root: Path | None = None,
) -> ModelRef:
    """Write a new version atomically and return where it went (v0001, v0002, ...; a number is
    never reused, even after its version is deleted)."""
    target_dir = _model_dir(symbol, interval, model, root)
    target_dir.mkdir(parents=True, exist_ok=True)
    _tidy(target_dir)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, buf)
    weights = buf.getvalue()
    meta = {
        **metadata,
        "format": FORMAT,
        "symbol": symbol,
        "interval": interval,
        "model": model,
        "saved_at": datetime.now(timezone.utc).isoformat(),
        "weights_sha256": _sha256(weights),
    }
    body = json.dumps(meta, indent=2, sort_keys=True, default=_json_default)
    staging = Path(tempfile.mkdtemp(prefix=f".incoming-{_owner()}-", dir=target_dir))
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
        _fsync_dir(target_dir)
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
    """`version`: "vNNNN", "latest" or "production" (the version production.json names, when it
    names this model)."""
    model_dir = _model_dir(symbol, interval, model, root)
    _tidy(model_dir)
    versions = _versions(model_dir)
    if not versions:
        raise RegistryError(f"no saved versions of {symbol}/{interval}/{model} in {model_dir.parent.parent.parent}")
    if version == "latest":
        version = versions[-1]
    elif version == "production":
        claims = _production_of(model_dir.parent)
        if model not in claims:
            serving = promotion(symbol, interval, root)
            if serving:
                raise RegistryError(
                    f"{symbol}/{interval}/{model} is not in production: {serving['model']} "
                    f"{serving['version']} serves {symbol} {interval}; promote a version of "
                    f"{model} to make it production"
                )
            raise RegistryError(f"{symbol}/{interval}/{model} has no production version; promote one first")
        version = claims[model]
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
        raise RegistryError(
            f"{meta_path}: not a coffee-ml model (format {meta.get('format') if isinstance(meta, dict) else None!r}, "
            f"expected {FORMAT!r})"
        )
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
    """Every saved version with its headline test metric and whether it is in production (as its
    symbol and interval's production.json says). Removes what killed processes left behind."""
    root = root or models_dir()
    claims: dict[Path, dict[str, str]] = {}
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        _tidy_serving(folder)
        try:
            claims[folder] = _production_of(folder)
        except RegistryError as exc:  # listed without a production flag; the record must be repaired
            warnings.warn(str(exc), stacklevel=2)
            claims[folder] = {}
    rows = []
    for meta_path in sorted(root.glob(f"*/*/*/v*/{METADATA}")):
        version_dir = meta_path.parent
        if not _VERSION.fullmatch(version_dir.name):
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):  # unreadable, not UTF-8 or not JSON: listed, marked unreadable
            meta = None
        if not isinstance(meta, dict):  # one broken version must not hide the others
            meta = {"saved_at": "unreadable metadata.json"}
        model = version_dir.parent.name
        production = claims.get(version_dir.parent.parent, {}).get(model) == version_dir.name
        test = (meta.get("metrics") or {}).get("test") or {}
        test = test if isinstance(test, dict) else {}
        rows.append(
            {
                "symbol": version_dir.parts[-4],
                "interval": version_dir.parts[-3],
                "model": model,
                "version": version_dir.name,
                "production": production,
                "saved_at": meta.get("saved_at"),
                "horizon": meta.get("horizon"),
                "test_mae": test.get("mae"),
                "naive_mae": test.get("naive_mae"),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "symbol",
            "interval",
            "model",
            "version",
            "production",
            "saved_at",
            "horizon",
            "test_mae",
            "naive_mae",
        ],
    )


def _replace_text(path: Path, text: str) -> None:
    """Replace a small file atomically and durably: a crash leaves the old or the new text (and a
    temporary file named after its owner, which the next `_tidy` removes)."""
    tmp = path.with_name(f".{path.name}.{_owner()}")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _lock(folder: Path) -> FileLock:
    """Serialises promotions and deletions of one symbol and interval across processes."""
    return FileLock(str(folder / f".{SERVING}.lock"))


def promote(ref: ModelRef, reason: str | None = None) -> None:
    """Make a version the one serving its symbol and interval: one atomic replacement of
    production.json (under a lock per symbol and interval, so two processes promoting at once
    leave one winner; `reason` is kept for whoever asks why). Per-model `production` files of
    older registries are removed afterwards; production.json overrides them until then."""
    read(ref)  # never promote a version that would not load
    serving = {
        "model": ref.model,
        "version": ref.version,
        "reason": reason,
        "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    folder = ref.path.parent.parent
    with _lock(folder):
        _tidy(folder)
        _tidy(ref.path.parent)
        _replace_text(folder / SERVING, json.dumps(serving, indent=2) + "\n")
        _remove_legacy_pointers(folder)


def _serving_folder(symbol: str, interval: str, root: Path | None) -> Path:
    return (root or models_dir()) / _check_name("symbol", symbol) / _check_name("interval", interval)


def _read_serving(folder: Path) -> dict[str, Any] | None:
    """`folder`'s production.json (None when there is none); RegistryError when it is corrupted."""
    pointer = folder / SERVING
    try:
        record = json.loads(pointer.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        record = None
    if not (
        isinstance(record, dict)
        and isinstance(record.get("model"), str)
        and _NAME.fullmatch(record["model"])
        and isinstance(record.get("version"), str)
        and _VERSION.fullmatch(record["version"])
    ):
        raise RegistryError(
            f"{pointer}: corrupted; promote a version again "
            f"(coffee-ml models promote {folder.parent.name} {folder.name} MODEL VERSION)"
        )
    return record


def _legacy_pointers(folder: Path) -> dict[str, str]:
    """model -> version of the per-model `production` files older registries wrote."""
    found = {}
    for pointer in sorted(folder.glob(f"*/{PRODUCTION}")):
        try:
            version = pointer.read_text(encoding="utf-8").strip()
        except (OSError, ValueError):
            continue
        if _VERSION.fullmatch(version):
            found[pointer.parent.name] = version
    return found


def _production_of(folder: Path) -> dict[str, str]:
    """model -> version of what is in production in a symbol/interval folder: what production.json
    names; in a registry without one, each older per-model pointer."""
    record = _read_serving(folder)
    if record is not None:
        return {record["model"]: record["version"]}
    return _legacy_pointers(folder) if folder.is_dir() else {}


def _remove_legacy_pointers(folder: Path) -> None:
    for pointer in folder.glob(f"*/{PRODUCTION}"):
        _remove(pointer)


def _tidy_serving(folder: Path) -> None:
    """`_tidy` a symbol/interval folder and its models; once production.json is readable, the
    per-model pointers of an older layout (or of an interrupted migration) go too."""
    _tidy(folder)
    try:
        models = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return
    for model_dir in models:
        _tidy(model_dir)
    try:
        if _read_serving(folder) is not None:
            _remove_legacy_pointers(folder)
    except RegistryError:
        pass


def promotion(symbol: str, interval: str, root: Path | None = None) -> dict[str, Any]:
    """Which model serves `symbol` `interval`, since when and why ({} when never promoted here)."""
    return _read_serving(_serving_folder(symbol, interval, root)) or {}


def production(symbol: str, interval: str, root: Path | None = None) -> ModelRef:
    """The model or ensemble serving `symbol` `interval` (what `coffee-ml predict` forecasts with).

    Registries written before production.json have only per-model pointers: one of them is
    unambiguous and is used; several are an error that says how to choose.
    """
    record = promotion(symbol, interval, root)
    if record:
        return resolve(symbol, interval, record["model"], record["version"], root)
    folder = _serving_folder(symbol, interval, root)
    models = sorted(_legacy_pointers(folder)) if folder.is_dir() else []
    if len(models) == 1:
        return resolve(symbol, interval, models[0], "production", root)
    if models:
        raise RegistryError(
            f"{symbol} {interval}: several models have a production version ({', '.join(models)}); "
            f"promote the one to serve: coffee-ml models promote {symbol} {interval} MODEL VERSION"
        )
    raise RegistryError(
        f"no production model for {symbol} {interval} in {root or models_dir()}: run the quickstart "
        f"(make run) or promote one: coffee-ml models promote {symbol} {interval} MODEL VERSION"
    )


def delete(ref: ModelRef) -> None:
    """Remove a version; refuses the production version (demote by promoting another first)."""
    folder = ref.path.parent.parent
    with _lock(folder):
        if _production_of(folder).get(ref.model) == ref.version:
            raise RegistryError(
                f"{ref.symbol}/{ref.interval}/{ref.model}/{ref.version} is in production; "
                "promote another version before deleting it"
            )
        trash = ref.path.with_name(f".deleting-{ref.version}-{_owner()}")
        os.rename(ref.path, trash)  # vanishes from listings at once, then is removed
    shutil.rmtree(trash)
