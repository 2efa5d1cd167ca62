"""Batch runs: several params files (one per symbol, say) run side by side in their own processes.

A batch file lists params files under `runs`, each with optional overrides:

    name: majors
    jobs: 2                      # parallel processes (default 1); `--jobs` overrides
    runs:
      - params: btc_1h.yaml      # relative to the batch file's folder
      - params: eth_1h.yaml
        parameters: {epochs: 10} # like `-p epochs=10`, for this entry only

Every entry is checked before any process starts (a typo should not surface an hour in). Each
then runs as a normal `runner.run` in a process of its own (`python -m coffee_ml.batch`, in a
session of its own), at most `jobs` at a time, so it leaves its own run folder, and the store and
the model registry are shared through their own locks and atomic writes. A failing entry stops
only itself, and so does an entry whose process dies (killed, out of memory): not a process pool,
which breaks, and fails every entry, when one of its workers dies. `outputs/batches/<id>/` holds
`batch.json` (each entry's status, process, run, error and failing cell), a log per entry (every
progress line of its run, and its process's output) and `index.html`, rewritten as entries
start, name their run and finish.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from coffee_ml import config, provenance, runner
from coffee_ml.parameters import _show
from coffee_ml.runner import ParamsError, Progress

BATCH_JSON = "batch.json"
LOGS = "logs"
_BATCH_KEYS = {"name", "jobs", "runs"}
_ENTRY_KEYS = {"params", "parameters"}
_UNSAFE = re.compile(r"[^\w.-]+")  # in a label (a params file's `name`), for its log's file name
_POLL_SECONDS = 0.25  # how often the parent relays new log lines and looks for exited entries
_GRACE_SECONDS = 5.0  # for interrupted entries to record themselves, before their process groups are killed
_RUN_STARTED = re.compile(r"run (\S+) started")  # an entry's first line once its run folder exists


@dataclass(frozen=True)
class Entry:
    """One run of a batch, checked: its params file and the overrides it runs with."""

    label: str  # unique in the batch: the params file's name, numbered when repeated
    params: str  # as written in the batch file
    path: Path  # the params file
    overrides: dict[str, Any]  # the entry's `parameters`, then the command line's `-p`
    symbol: str | None


@dataclass(frozen=True)
class Batch:
    name: str
    source: Path
    jobs: int | None
    entries: list[Entry]


def is_batch(path: str | Path) -> bool:
    """A batch file has a top-level `runs` list (a params file has `notebooks`); a file that
    cannot be read is left to the params loader to report."""
    try:
        doc = runner.read_yaml(path)
    except ParamsError:
        return False
    return isinstance(doc, dict) and "runs" in doc


def load_batch(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Batch:
    """Parse and check a batch file and every params file it names, with their overrides
    (`overrides`, from `-p`, apply to every entry after its own). Raises one ParamsError
    listing every problem, each naming the batch file and the entry."""
    path = Path(path)
    doc = runner.read_yaml(path, "batch file")
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list) or not doc["runs"]:
        raise ParamsError(f"{path}: expected a mapping with a non-empty 'runs' list")
    problems = _unknown_keys(str(path), doc, _BATCH_KEYS)
    name = runner._check_name(path, doc.get("name"))
    jobs = doc.get("jobs")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        problems.append(f"{path}: jobs must be a whole number >= 1, got {jobs!r}")
    checked = [_check_entry(path, i, raw, overrides or {}) for i, raw in enumerate(doc["runs"], 1)]
    problems += [c for c in checked if isinstance(c, str)]
    if problems:
        raise ParamsError("; ".join(problems))
    entries = [replace(e, label=label) for e, label in zip(checked, _unique([e.label for e in checked]))]
    return Batch(name, path, jobs, entries)


def _unknown_keys(where: str, mapping: dict[Any, Any], allowed: set[str]) -> list[str]:
    """A typo'd key (`job: 2`) would otherwise be ignored without a word."""
    unknown = sorted(k if isinstance(k, str) and k.isidentifier() else _show(k) for k in set(mapping) - allowed)
    return [f"{where}: unknown key(s) {', '.join(unknown)} (expected {', '.join(sorted(allowed))})"] if unknown else []


def _check_entry(batch: Path, i: int, raw: Any, cli: Mapping[str, Any]) -> Entry | str:
    """The entry, checked as `coffee-ml run` checks a params file and its `-p` (labelled with
    the run's name), or the problem with it, prefixed with where it is."""
    where = f"{batch}: runs[{i}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("params"), str):
        return f"{where} must be a mapping with 'params: <file>.yaml'"
    if unknown := _unknown_keys(where, raw, _ENTRY_KEYS):
        return unknown[0]
    own = raw.get("parameters") or {}
    if not isinstance(own, dict):
        return f"{where}: 'parameters' must be a mapping"
    merged = {**runner._plain(own), **cli}
    target = batch.parent / raw["params"]
    if nested := _nested_batch(batch, target):
        return f"{where} ({raw['params']}): {nested}"
    try:
        spec = runner.load_params(target)
        problems = runner.check_spec(spec)
        if problems:
            raise ParamsError("; ".join(problems))
        spec = runner.apply_overrides(spec, merged)
        problems = runner.check_spec(spec)  # the values as the entry runs them, its overrides included
        if problems:
            raise ParamsError("; ".join(problems))
    except ParamsError as exc:
        return f"{where} ({raw['params']}): {exc}"
    return Entry(spec.name, raw["params"], batch.parent / raw["params"], merged, _symbol(spec))


def _nested_batch(batch: Path, target: Path) -> str | None:
    """Why `target` cannot be an entry of `batch`: it is the batch itself, or a batch (batches do
    not nest), one that leads back to this batch (a cycle) or not."""
    if not target.is_file():
        return None  # the params loader says what it is
    if target.resolve() == batch.resolve():
        return "the batch includes itself; list params files (with 'notebooks'), not batch files"
    if not is_batch(target):
        return None
    chain, seen, current = [batch.resolve(), target.resolve()], {batch.resolve()}, target.resolve()
    while current not in seen:  # follow the first batch entries, as a cycle would go
        seen.add(current)
        doc = runner.read_yaml(current, "batch file")
        following = [
            current.parent / r["params"]
            for r in doc.get("runs") or []
            if isinstance(r, dict) and isinstance(r.get("params"), str)
        ]
        following = [f.resolve() for f in following if f.is_file() and is_batch(f)]
        if not following:
            break
        current = following[0]
        chain.append(current)
    if chain[-1] in chain[:-1]:
        return (
            f"a cycle of batch files ({' -> '.join(p.name for p in chain)}); batches cannot include "
            "batches: list params files"
        )
    return "is itself a batch file; batches do not nest: list its params files here"


def _unique(names: list[str]) -> list[str]:
    """Labels that tell repeated params files apart: btc_1h, btc_1h-2, ..."""
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def _symbol(spec: runner.RunSpec) -> str | None:
    return next((str(s.parameters["symbol"]) for s in spec.steps if "symbol" in s.parameters), None)


def _run_entry(params: str, overrides: dict[str, Any], outputs: str, log: str, threads: int) -> dict[str, Any]:
    """One entry, in its own process: the run with every progress line in `log`, first naming
    its run (`run <id> started`, so that the parent can link the run folder of an entry that is
    later killed); never raises for a failed run, so that the parent gets the failure as data."""
    # each process gets its share of the cores (N processes each starting one thread per core run
    # slower than one alone); the kernels inherit it, a user's setting wins, the manifest records it
    for var in provenance.THREAD_VARIABLES:
        os.environ.setdefault(var, str(threads))
    os.environ.pop(config.RUN_ID_ENV, None)  # one inherited from a calling kernel is not this entry's run
    t0 = time.perf_counter()
    with open(log, "a", encoding="utf-8") as out:  # appended: the parent created it as the process's stderr
        named = False

        def say(line: str) -> None:
            nonlocal named
            # the runner sets the run id for its kernels before its first progress line
            if not named and (run_id := os.environ.get(config.RUN_ID_ENV)):
                named = True
                out.write(f"run {run_id} started\n")
            out.write(line + "\n")
            out.flush()

        try:
            index = runner.run(params, outputs=Path(outputs), overrides=overrides, progress=say)
            result: dict[str, Any] = {"status": "ok", "index": str(index)}
        except runner.RunFailed as exc:
            cell = exc.entry.get("cell")
            result = {
                "status": "failed",
                "index": str(exc.index),
                "error": exc.entry.get("error"),
                "notebook": exc.entry.get("notebook"),
                "cell": {k: cell[k] for k in ("number", "of", "source")} if cell else None,
            }
        except Exception as exc:  # noqa: BLE001 - any error is this entry's, reported with it
            result = {"status": "failed", "index": None, "error": f"{type(exc).__name__}: {exc}"}
            say(f"failed: {result['error']}")
            if not isinstance(exc, ParamsError):  # a params problem is its message; anything else may be a bug
                out.write(traceback.format_exc())
    return {**result, "seconds": round(time.perf_counter() - t0, 3)}


def _main(job: str) -> None:
    """The process of one entry (`python -m coffee_ml.batch JOB`, JOB the JSON that `_start`
    writes): its outcome goes to a file that is there whole or not at all, so the parent can tell
    a finished entry, failed or not, from a process that died (killed, out of memory)."""
    from coffee_ml.reports.records import write_atomic

    args = json.loads(job)
    result = _run_entry(args["params"], args["overrides"], args["outputs"], args["log"], args["threads"])
    write_atomic(Path(args["result"]), json.dumps(result, default=str))


def _result_path(log: Path) -> Path:
    return log.with_suffix(".json")


def _start(entry: Entry, outputs: Path, log: Path, threads: int) -> subprocess.Popen[bytes]:
    """Start one entry's process in a session of its own: its process group (the runner and
    whatever it starts in it) can then be signalled as one, and a Ctrl-C in the terminal reaches
    only the parent, which passes it on (`_stop`). Its stdout and stderr (a traceback, a warning)
    go to its log."""
    job = json.dumps(
        {
            "params": str(entry.path),
            "overrides": entry.overrides,
            "outputs": str(outputs),
            "log": str(log),
            "threads": threads,
            "result": str(_result_path(log)),
        }
    )
    with open(log, "ab") as out:  # O_APPEND, as the child's own handle: neither overwrites the other
        return subprocess.Popen(
            [sys.executable, "-m", "coffee_ml.batch", job],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the entry's process group (its session, see `_start`). The kernels are not in it
    (jupyter_client starts each in a session of its own) but they exit once their parent is gone
    (ipykernel's parent poller)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # group gone; (macOS) only a zombie left
        os.killpg(process.pid, sig)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop running entries when the parent is interrupted or fails: pass Ctrl-C on to each
    process group, so that each run records itself as interrupted and papermill shuts its kernel
    down, then kill whatever is left after `_GRACE_SECONDS` (at once on a second Ctrl-C)."""
    for process in processes:
        _signal_group(process, signal.SIGINT)
    deadline = time.monotonic() + _GRACE_SECONDS
    try:
        for process in processes:
            process.wait(max(0.0, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    for process in processes:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _outcome(code: int, result: Path) -> dict[str, Any]:
    """What an exited entry process left: its result file, else (it died before writing it) a
    failure naming the signal or the exit code."""
    try:
        return json.loads(result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    if code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    return {"status": "failed", "index": None, "error": f"entry process {how} before its run finished (see its log)"}


class _Tail:
    """New complete lines of a log that another process appends to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def lines(self) -> list[str]:
        if not self.path.is_file():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        return data[:end].decode("utf-8", errors="replace").splitlines()


def _record(entry: Entry, log: Path, batch_dir: Path) -> dict[str, Any]:
    return {
        "label": entry.label,
        "symbol": entry.symbol,
        "params": entry.params,
        "overrides": entry.overrides,
        "status": "pending",
        "pid": None,
        "run_id": None,
        "run_index": None,
        "log": log.relative_to(batch_dir).as_posix(),
        "error": None,
        "notebook": None,
        "cell": None,
        "seconds": None,
    }


def _link_run(record: dict[str, Any], index: Path, batch_dir: Path) -> None:
    record.update(run_id=index.parent.name, run_index=Path(os.path.relpath(index, batch_dir)).as_posix())


def _finish(record: dict[str, Any], result: dict[str, Any], batch_dir: Path) -> None:
    """Copy an entry's outcome into its record; a process that died keeps the run its log named."""
    index = result.pop("index", None)
    record.update(result)
    if index:
        _link_run(record, Path(index), batch_dir)


def run_batch(
    path: str | Path,
    jobs: int | None = None,
    outputs: Path | None = None,
    progress: Progress | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Run every entry of a batch file in `jobs` processes (default: the file's `jobs`, else 1);
    return the batch's index.html. `overrides` (`-p`) apply to every entry. Raises RuntimeError
    naming the failed entries once all have finished and the index is written."""
    from coffee_ml.reports.batch import write_batch_index
    from coffee_ml.reports.index import write_outputs_index
    from coffee_ml.reports.records import write_atomic

    batch = load_batch(path, overrides)
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    processes = min(jobs or batch.jobs or 1, len(batch.entries))
    threads = max(1, (os.cpu_count() or 1) // processes)
    say = progress or (lambda line: None)
    outputs = outputs or config.outputs_dir()
    batch_id, batch_dir = runner._new_run_dir(outputs / "batches", batch.name)
    (batch_dir / LOGS).mkdir()
    logs = [batch_dir / LOGS / f"{n:02d}-{_UNSAFE.sub('-', e.label)}.log" for n, e in enumerate(batch.entries, 1)]
    state: dict[str, Any] = {
        "batch_id": batch_id,
        "name": batch.name,
        "batch_file": runner._relative_to_project(batch.source),
        "jobs": processes,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "finished": None,
        "status": "running",
        "total_seconds": None,
        "entries": [_record(e, log, batch_dir) for e, log in zip(batch.entries, logs)],
    }

    def publish() -> Path:
        write_atomic(batch_dir / BATCH_JSON, json.dumps(state, indent=2, default=str))
        return write_batch_index(batch_dir)

    index = publish()
    say(f"batch {batch_id}: {len(batch.entries)} run(s) in {processes} process(es), {threads} thread(s) each")
    t0 = time.perf_counter()
    try:
        _execute(batch, processes, threads, outputs, logs, state["entries"], batch_dir, publish, say)
    except KeyboardInterrupt:
        state["status"] = "interrupted"
        raise
    finally:
        for record in state["entries"]:
            if record["status"] in ("pending", "running"):
                record["status"] = "interrupted"
        failed = [r["label"] for r in state["entries"] if r["status"] != "ok"]
        if state["status"] == "running":
            state["status"] = "failed" if failed else "ok"
        state["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        state["total_seconds"] = round(time.perf_counter() - t0, 3)
        publish()
        write_outputs_index(outputs)  # its list of batches
    say(
        f"batch {batch_id} {state['status']} in {runner._clock(state['total_seconds'])}: "
        f"{len(batch.entries) - len(failed)} ok, {len(failed)} failed"
    )
    if failed:
        raise RuntimeError(
            f"batch {batch.name}: {len(failed)} of {len(batch.entries)} run(s) failed "
            f"({', '.join(failed)}) (see {index})"
        )
    return index


def _execute(
    batch: Batch,
    processes: int,
    threads: int,
    outputs: Path,
    logs: list[Path],
    records: list[dict[str, Any]],
    batch_dir: Path,
    publish: Callable[[], Path],
    say: Progress,
) -> None:
    """Run every entry in a process of its own, at most `processes` at a time; relay the lines of
    their logs (prefixed with the label) and update the records and the index as each entry
    starts, names its run and exits. A process that dies fails only its own entry; if the parent
    is interrupted or fails here, the running entries are stopped (`_stop`) before it propagates."""
    tails = [_Tail(log) for log in logs]
    waiting = list(range(len(batch.entries)))
    running: dict[int, tuple[subprocess.Popen[bytes], float]] = {}

    def relay() -> bool:
        """Say each new line; True when a line named an entry's run folder."""
        named = False
        for record, tail in zip(records, tails):
            for line in tail.lines():
                if record["run_id"] is None and (started := _RUN_STARTED.fullmatch(line)):
                    _link_run(record, outputs / "runs" / started[1] / "index.html", batch_dir)
                    named = True
                say(f"[{record['label']}] {line}")
        return named

    try:
        while waiting or running:
            started = False
            while waiting and len(running) < processes:
                n = waiting.pop(0)
                process = _start(batch.entries[n], outputs, logs[n], threads)
                running[n] = (process, time.perf_counter())
                records[n].update(status="running", pid=process.pid)
                started = True
            if started:  # before any of its lines is relayed: batch.json names the entry's process
                publish()
            time.sleep(_POLL_SECONDS)
            exited = [n for n, (process, _) in running.items() if process.poll() is not None]
            named = relay()  # after the poll: an exited entry's last lines come before its outcome
            for n in exited:
                process, t0 = running.pop(n)
                _signal_group(process, signal.SIGKILL)  # what it left behind: a killed entry cannot clean up
                result = _outcome(process.returncode, _result_path(logs[n]))
                _finish(records[n], {"seconds": round(time.perf_counter() - t0, 3), **result}, batch_dir)
            if named or exited:
                publish()
    except BaseException:
        _stop([process for process, _ in running.values()])
        raise


if __name__ == "__main__":
    _main(sys.argv[1])
