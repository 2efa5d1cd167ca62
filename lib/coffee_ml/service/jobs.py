"""Long jobs of the service: a backtest, a search or a training run started over HTTP.

A job is a normal run (the runner, a run folder under outputs/runs, a manifest) executed by its
own process (`python -m coffee_ml.service.jobs <job folder>`), so a request returns at once and a
job that crashes, or is killed, takes nothing else with it. Its record is
`outputs/jobs/<id>/job.json`, replaced atomically: status, the run it made, its last progress
line, its owner (pid, process start, boot) and, at the end, the outcome. Every uvicorn worker
reads the same records, so any of them answers for a job another started, and a reader tells a
job whose process is gone from a live one (`died`), as for runs.

Jobs run niced (+19) with their share of the cores (`COFFEE_ML_JOB_THREADS`, default 1 thread),
so that the service keeps answering while one runs; at most `max_jobs` run at once.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from coffee_ml import config, processes

KINDS = {  # what a job runs: the notebook whose parameters the request carries
    "backtest": "03_backtesting.ipynb",
    "hpo": "05_hpo.ipynb",
    "train": "02_training.ipynb",
}
JOB_FILE = "job.json"
TOKEN_ENV = "COFFEE_ML_API_TOKEN"
SPAWNED_FILE = "spawned.json"  # the job's pid as its parent started it, until the job records itself
LOG_FILE = "log.txt"
NICE = 19  # the lowest priority: a job takes what the service leaves (CFS weight 15 against 1024)
SPAWN_GRACE_S = 60.0  # a queued record with no process named after this long was never started
PROGRESS_EVERY_S = 1.0  # the record is rewritten at most this often for progress lines
_ID_CHARS = set("0123456789abcdefghijklmnopqrstuvwxyz-")


class JobLimit(RuntimeError):
    """As many jobs as allowed are running already."""


def jobs_dir() -> Path:
    return config.outputs_dir() / "jobs"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write(folder: Path, record: dict[str, Any]) -> None:
    from coffee_ml.reports.records import write_atomic

    write_atomic(folder / JOB_FILE, json.dumps(record, indent=2, default=str))


def _read(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _owner(folder: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The job's process: as the process recorded itself, else as its parent saw it start (the
    parent writes its own file, so the two never overwrite each other's record)."""
    if isinstance(record.get("owner"), dict):
        return record["owner"]
    try:
        spawned = json.loads((folder / SPAWNED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return spawned if isinstance(spawned, dict) else {}


def _live(folder: Path, record: dict[str, Any]) -> bool:
    owner = _owner(folder, record)
    if record.get("status") not in ("queued", "running"):
        return False
    if not owner:  # between the record and the spawn; a parent that died there left an orphan
        return time.time() - (folder / JOB_FILE).stat().st_mtime < SPAWN_GRACE_S
    if owner.get("boot_id") and owner.get("boot_id") != processes.boot_id():
        return False
    return processes.alive(owner.get("pid"), owner.get("started")) is not False


def status(job_id: str) -> dict[str, Any] | None:
    """A job's record as a reader should show it: a job recorded as queued or running whose process
    is gone shows as `died` (with the run it had reached); None for an unknown id."""
    if not job_id or len(job_id) > 80 or not set(job_id) <= _ID_CHARS:
        return None
    folder = jobs_dir() / job_id
    record = _read(folder)
    if record is None:
        return None
    if record.get("status") in ("queued", "running") and not _live(folder, record):
        record = {
            **record,
            "status": "died",
            "recorded_status": record["status"],
            "error": "the job's process ended without finishing its record (killed, out of memory or a lost machine)",
        }
    if record.get("run_id"):
        from coffee_ml.run_state import run_state

        run_dir = config.outputs_dir() / "runs" / record["run_id"]
        if run_dir.is_dir():
            state = run_state(run_dir)
            record["run_status"] = state.status
            record["run_reason"] = state.reason
    record.pop("owner", None)
    return record


def running() -> list[str]:
    """Ids of the jobs whose process is alive."""
    folder = jobs_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (r := _read(p)) is not None and _live(p, r))


@dataclass(frozen=True)
class Started:
    job_id: str
    folder: Path


def start(kind: str, parameters: dict[str, Any], *, max_jobs: int, threads: int = 1) -> Started:
    """Check `parameters` against the notebook's declaration (ParamsError naming each problem), then
    start the job's process. Raises JobLimit when `max_jobs` jobs are alive already."""
    from coffee_ml import runner

    spec = spec_for(kind, parameters)
    problems = runner.check_spec(spec)
    if problems:
        raise runner.ParamsError("; ".join(problems))
    runner.check_data(spec)
    root = jobs_dir()
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".start.lock"), timeout=30):  # several uvicorn workers count the same jobs
        if len(running()) >= max_jobs:
            raise JobLimit(f"{max_jobs} job(s) are running already (COFFEE_ML_MAX_JOBS); retry when one finishes")
        job_id = f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{kind}-{secrets.token_hex(3)}"
        folder = root / job_id
        folder.mkdir()
        record = {
            "id": job_id,
            "kind": kind,
            "notebook": KINDS[kind],
            "parameters": parameters,
            "status": "queued",
            "created": _now(),
            "started": None,
            "finished": None,
            "run_id": None,
            "progress": None,
            "error": None,
        }
        _write(folder, record)
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}  # a run never sees the API token
        env |= {v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if v not in os.environ}
        with open(folder / LOG_FILE, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "coffee_ml.service.jobs", str(folder)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        # so that a child that dies before it records itself reads as died, not queued forever
        from coffee_ml.reports.records import write_atomic

        write_atomic(
            folder / SPAWNED_FILE,
            json.dumps({"pid": proc.pid, "started": _process_start(proc.pid), "boot_id": processes.boot_id()}),
        )
    return Started(job_id, folder)


def _process_start(pid: int) -> str | None:
    for _ in range(50):  # /proc/<pid>/stat appears as the child is created
        if (started := processes.process_start(pid)) is not None:
            return started
        time.sleep(0.01)
    return None


def spec_for(kind: str, parameters: dict[str, Any]) -> Any:
    """The run a job of `kind` executes: its notebook with the request's parameters (the notebook's
    defaults for the rest), named after the kind and symbol."""
    from coffee_ml import runner

    if kind not in KINDS:
        raise ValueError(f"job kind {kind!r}: expected one of {', '.join(KINDS)}")
    symbol = parameters.get("symbol")
    name = f"api-{kind}" + (f"-{symbol}" if isinstance(symbol, str) and symbol.isalnum() else "")
    return runner.RunSpec(
        name,
        [runner.Step(KINDS[kind], dict(parameters))],
        document={"command": f"POST /api/ml/{kind}", "parameters": parameters},
    )


def _lower_priority() -> None:
    """Nice this process (its kernels inherit it). With the kernel's autogroups (Linux, on by
    default) a process in a session of its own competes as a group, where its nice value means
    nothing to other sessions: the group's own nice is set too (/proc/self/autogroup)."""
    os.nice(NICE)
    try:
        Path("/proc/self/autogroup").write_text(str(NICE))
    except OSError:  # no autogroups (or not Linux): the process's nice value is what counts
        pass


def _descendants(root: int) -> list[int]:
    """Pids of the processes below `root` (Linux /proc; [] elsewhere)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else []:
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    below, frontier = [], {root}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier}
        below += sorted(frontier)
    return below


def _keep_children_low(stop: threading.Event) -> None:
    """The run's kernels start sessions (so autogroups) of their own, which would compete with the
    service as equals: lower each new one's group as it appears."""
    done: set[int] = set()
    while not stop.wait(1.0):
        for pid in _descendants(os.getpid()):
            if pid not in done:
                done.add(pid)
                try:
                    Path(f"/proc/{pid}/autogroup").write_text(str(NICE))
                except OSError:
                    pass


def _main(folder: Path) -> int:
    """The job's process: run it, keeping its record current; the outcome is recorded however the
    run ends (a failed notebook, a full disk, SIGTERM)."""
    from coffee_ml import runner

    _lower_priority()
    stop = threading.Event()
    threading.Thread(target=_keep_children_low, args=(stop,), daemon=True).start()
    record = _read(folder)
    if record is None:
        print(f"{folder}: no readable {JOB_FILE}", file=sys.stderr)
        return 2
    record.update(
        status="running",
        started=_now(),
        owner={"pid": os.getpid(), "started": processes.process_start(os.getpid()), "boot_id": processes.boot_id()},
    )
    _write(folder, record)
    last = [0.0]

    def progress(line: str) -> None:
        print(line, flush=True)
        record["progress"] = line.strip().splitlines()[0][:300] if line.strip() else record["progress"]
        if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
            last[0] = time.monotonic()
            _write(folder, record)

    def started(run_dir: Path) -> None:
        record["run_id"] = run_dir.name
        _write(folder, record)

    code = 0
    try:
        runner.run_spec(spec_for(record["kind"], record["parameters"]), progress=progress, on_start=started)
        record["status"] = "ok"
    except KeyboardInterrupt as exc:
        record.update(status="interrupted", error=f"interrupted by {getattr(exc, 'signal', 'SIGINT')}")
        code = 130
    except Exception as exc:  # a failed notebook or a full disk: recorded, the process ends with 1
        record.update(status="failed", error=" ".join(str(exc).split())[:1000])
        code = 1
    stop.set()
    record["finished"] = _now()
    _write(folder, record)
    return code


if __name__ == "__main__":
    sys.exit(_main(Path(sys.argv[1])))
