"""Is a run still running? Tell a live run from one whose process died (kill -9, out of memory,
a lost machine) without trusting the manifest's `"status": "running"` alone.

The runner records its owner in the manifest (`owner`: pid, host, the process's start time and
the machine's boot id) and holds an exclusive `flock` on `<run>/.lock` for as long as it runs;
both go with the process, whatever kills it. A reader then decides, conservatively (a live run is
never shown as died):

- the lock is held by someone: running;
- same machine (host and boot id): running while a process with that pid and start time exists,
  else died; a new boot id means the machine restarted since: died;
- another machine whose lock this one cannot see held: `unknown` (the run may be alive there).

`run_state(run_dir)` is the one function every reader (the indexes, the summary, rerun) asks;
`settle(run_dir)` writes a run found dead back into its manifest as `died`.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # not on Windows: readers fall back to the owner's pid
    fcntl = None  # type: ignore[assignment]

from coffee_ml import processes

LOCK_FILE = ".lock"
MANIFEST = "manifest.json"
FINISHED = ("ok", "failed", "interrupted", "died")


@dataclass(frozen=True)
class RunState:
    """What a reader should show for a run.

    status: ok, failed, interrupted (as recorded), running (alive), died (its process is gone
    while the manifest still says running) or unknown (running on another machine, cannot tell);
    recorded: the manifest's own status; notebook: the last notebook it reached (None before the
    first); reason: one line saying why, for pages and the console."""

    status: str
    recorded: str
    notebook: str | None = None
    reason: str = ""

    @property
    def live(self) -> bool:
        return self.status == "running"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def owner() -> dict[str, Any]:
    """This process as a run's owner, for its manifest."""
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "started": processes.process_start(pid),
        "boot_id": processes.boot_id(),
    }


def lock_held(run_dir: str | Path) -> bool | None:
    """Is `<run>/.lock` held by a process (this one included)? None: no lock file, or this
    filesystem cannot lock."""
    if fcntl is None:
        return None
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: two readers never see each other as the owner
    except BlockingIOError:
        return True
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class RunLock:
    """The lock a runner holds on its run folder while it runs (`<run>/.lock`, flock exclusive);
    released by `release()` or by the process's end, however it ends."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._file: IO[bytes] | None = open(self.path, "wb")  # noqa: SIM115 - held for the run
        if fcntl is not None:
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a filesystem without locks: readers go by the owner's pid
                pass

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the only descriptor drops the flock
            self._file = None


def last_notebook(manifest: Mapping[str, Any]) -> str | None:
    """The notebook the run was in (status running) or, between notebooks, the last one it
    reached; None before the first."""
    entries = [e for e in manifest.get("notebooks") or [] if isinstance(e, dict)]
    running = [e for e in entries if e.get("status") == "running"]
    if running:
        return str(running[0].get("notebook"))
    reached = [e for e in entries if e.get("status") not in (None, "pending", "skipped")]
    return str(reached[-1].get("notebook")) if reached else None


def _where(manifest: Mapping[str, Any]) -> str:
    entries = [e for e in manifest.get("notebooks") or [] if isinstance(e, dict)]
    if any(e.get("status") == "running" for e in entries):
        return f"in {last_notebook(manifest)}"
    notebook = last_notebook(manifest)
    return f"after {notebook}" if notebook else "before its first notebook"


def _recorded_reason(manifest: Mapping[str, Any], status: str, notebook: str | None) -> str:
    if status == "died":
        died = manifest.get("died") if isinstance(manifest.get("died"), dict) else {}
        return str(died.get("reason") or f"died in {notebook}")
    if status == "interrupted":
        info = manifest.get("interrupted") if isinstance(manifest.get("interrupted"), dict) else {}
        where = info.get("notebook") or notebook
        return f"interrupted by {info.get('signal', 'a signal')}" + (f" in {where}" if where else "")
    if status == "failed":
        failed = [e for e in manifest.get("notebooks") or [] if isinstance(e, dict) and e.get("status") == "failed"]
        error = manifest.get("error") or (failed[0].get("error") if failed else None)
        return f"failed: {str(error).splitlines()[0]}" if error else "failed"
    return ""


def _as_died(manifest: dict[str, Any], state: RunState) -> dict[str, Any]:
    """The manifest of a run found dead, as it would have recorded its end."""
    manifest = json.loads(json.dumps(manifest, default=str))  # a copy, nothing shared with the caller's
    manifest["status"] = "died"
    manifest["died"] = {
        "detected": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "notebook": state.notebook,
        "reason": state.reason,
    }
    for entry in manifest.get("notebooks") or []:
        if isinstance(entry, dict) and entry.get("status") in ("running", "pending"):
            entry["status"] = "died" if entry["status"] == "running" else "skipped"
    return manifest


def shown(run_dir: str | Path, manifest: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], RunState]:
    """(the manifest as a page should show it, the run's state): for a run whose process died
    while its manifest says running, a copy that says died (the notebook it was in marked died,
    later ones skipped); otherwise the manifest as it is."""
    run_dir = Path(run_dir)
    manifest = _read(run_dir / MANIFEST) if manifest is None else manifest
    state = run_state(run_dir, manifest)
    if state.status == "died" and state.recorded == "running":
        return _as_died(dict(manifest), state), state
    return dict(manifest), state


def run_state(run_dir: str | Path, manifest: Mapping[str, Any] | None = None) -> RunState:
    """The status a reader should show for the run in `run_dir` (its manifest read from there
    unless given): what the manifest records, except that a run recorded as running is checked
    against its owner and its lock and comes back as running, died or unknown."""
    run_dir = Path(run_dir)
    manifest = _read(run_dir / MANIFEST) if manifest is None else manifest
    recorded = str(manifest.get("status") or "unknown")
    notebook = last_notebook(manifest)
    if recorded != "running":
        return RunState(recorded, recorded, notebook, _recorded_reason(manifest, recorded, notebook))
    own = manifest.get("owner")
    held = lock_held(run_dir)
    if held:
        return RunState("running", recorded, notebook, "its runner holds the run's lock")
    if not isinstance(own, dict):  # a manifest from before owners were recorded: cannot tell
        return RunState("running", recorded, notebook, "recorded as running (no owner recorded)")
    pid, host = own.get("pid"), own.get("host")
    where = _where(manifest)
    if host != socket.gethostname():
        return RunState(
            "unknown", recorded, notebook, f"running on {host} {where}, as far as this machine can tell (process {pid})"
        )
    if own.get("boot_id") and processes.boot_id() and own["boot_id"] != processes.boot_id():
        return RunState("died", recorded, notebook, f"died {where}: {host} restarted since (process {pid})")
    alive = processes.alive(pid, own.get("started"))
    if alive is False:
        return RunState("died", recorded, notebook, f"died {where}: its process {pid} on {host} is gone")
    if alive is None:
        return RunState("unknown", recorded, notebook, f"recorded as running {where}; process {pid} cannot be checked")
    return RunState("running", recorded, notebook, f"process {pid} on {host} is running")


def settle(run_dir: str | Path) -> RunState:
    """Check the run and, when its process is gone, record that in its manifest: status `died`,
    `died` (when found, the last notebook, why), the notebook it was in marked `died`, later ones
    `skipped`. Returns the state (written or not); a write that fails leaves the manifest as it was
    and readers still show the run as died."""
    from coffee_ml.reports.records import write_atomic

    run_dir = Path(run_dir)
    manifest = _read(run_dir / MANIFEST)
    state = run_state(run_dir, manifest)
    if state.status != "died" or fcntl is None:
        return state
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        fd = None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # one settler at a time; never a live runner's
        manifest = _read(run_dir / MANIFEST)
        if manifest.get("status") != "running":
            return run_state(run_dir, manifest)
        manifest = _as_died(manifest, state)
        write_atomic(run_dir / MANIFEST, json.dumps(manifest, indent=2, default=str))
        with suppress(Exception):
            from coffee_ml.reports.index import write_run_index

            write_run_index(run_dir)
    except OSError:
        pass
    finally:
        if fd is not None:
            os.close(fd)
    return state
