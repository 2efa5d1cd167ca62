"""Faults during `coffee-ml run`, with real processes and real signals: kill -9 (the run shows as
died, with the notebook it was in, and the next run works), SIGTERM (the record says interrupted
and the kernel is stopped), a kernel that dies (its cell is named), a full disk (a real tmpfs: one
line naming the folder and the space, the record says failed: disk full), and the progress lines
long cells send to the console.

Every wait is on a condition with a generous deadline, never a fixed sleep, so a slow or loaded
machine makes these tests slower, not red.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from coffee_ml import progress, run_state, runner
from coffee_ml.cli import main

DEADLINE = 120.0  # seconds: only ever reached when something is wrong
# a cell that reports progress until the test lets it go (a file `release` in the run folder)
LOOP = (
    "import os, time\nfrom pathlib import Path\nfrom coffee_ml import progress\n"
    "Path(run_dir, 'kernel.pid').write_text(str(os.getpid()))\ni = 0\n"
    "while not Path(run_dir, 'release').exists() and i < 2400:\n"
    "    progress.report(f'step {i}')\n    i += 1\n    time.sleep(0.05)"
)


def _notebook(path: Path, params: str, body: str) -> None:
    nb = new_notebook(cells=[new_code_cell(params, metadata={"tags": ["parameters"]}), new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _wait(condition, what: str, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")


def _manifest(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").is_file() and Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"


class Project:
    """A temporary checkout (COFFEE_ML_HOME, its notebooks/) and outputs folder for the command."""

    def __init__(self, root: Path, outputs: Path | None = None) -> None:
        self.home = root / "home"
        (self.home / "notebooks").mkdir(parents=True)
        self.outputs = outputs or root / "out"
        self.env = {**os.environ, "COFFEE_ML_HOME": str(self.home), "COFFEE_ML_OUTPUTS": str(self.outputs)}
        self.env.pop(runner.RUN_ID_ENV, None)
        self.env.pop(progress.PROGRESS_ENV, None)
        self.logs = root

    def notebook(self, name: str, body: str, params: str = "x = 1\nrun_dir = None") -> None:
        _notebook(self.home / "notebooks" / name, params, body)

    def params(self, name: str, notebooks: list[str]) -> Path:
        path = self.home / f"{name}.yaml"
        path.write_text(f"name: {name}\nnotebooks: [{', '.join(notebooks)}]\n")
        return path

    def start(self, params: Path) -> subprocess.Popen:
        log = self.logs / f"{params.stem}-{time.monotonic_ns()}.log"
        with open(log, "w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "coffee_ml.cli", "run", str(params)],
                env=self.env,
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        process.log = log
        return process

    def run(self, params: Path) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-m", "coffee_ml.cli", "run", str(params)],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=DEADLINE * 2,
        )
        return done.returncode, done.stdout + done.stderr

    def run_here(self, params: Path) -> Path:
        """A run in this process (the command's start-up costs seconds on a loaded machine)."""
        return runner.run(params, outputs=self.outputs, notebooks_dir=self.home / "notebooks")

    def runs(self) -> list[Path]:
        runs = self.outputs / "runs"
        return sorted(runs.iterdir()) if runs.is_dir() else []

    def in_loop(self) -> Path | None:
        """The run folder once its kernel is inside the reporting loop."""
        for run_dir in self.runs():
            if (run_dir / "kernel.pid").is_file() and list(run_dir.glob(".progress-*.log")):
                return run_dir
        return None


def _output(process: subprocess.Popen) -> str:
    return process.log.read_text()


def _stop(process: subprocess.Popen, run_dir: Path | None) -> None:
    """Leave nothing running, whatever the test did."""
    if process.poll() is None:
        process.kill()
        process.wait()
    pid = run_dir / "kernel.pid" if run_dir else None
    if pid and pid.is_file():
        kernel = int(pid.read_text())
        try:
            _wait(lambda: _pid_gone(kernel), "the kernel to exit after its runner", 30)
        finally:
            if not _pid_gone(kernel):
                os.kill(kernel, signal.SIGKILL)


def test_kill_9_mid_notebook_shows_died_and_the_next_run_works(tmp_path, monkeypatch, capsys):
    project = Project(tmp_path)
    project.notebook("a.ipynb", "print('a', x)")
    project.notebook("slow.ipynb", LOOP)
    process = project.start(project.params("slow", ["a.ipynb", "slow.ipynb"]))
    run_dir = None
    try:
        run_dir = _wait(project.in_loop, "the second notebook's loop")
        assert _manifest(run_dir)["status"] == "running"
        state = run_state.run_state(run_dir)
        assert state.status == "running" and state.live  # the lock and the process say so, while they live
        process.send_signal(signal.SIGKILL)
        process.wait()
        state = run_state.run_state(run_dir)
        assert state.status == "died" and state.notebook == "slow.ipynb" and state.recorded == "running"
        assert "died in slow.ipynb" in state.reason
        monkeypatch.setenv("COFFEE_ML_OUTPUTS", str(project.outputs))
        assert main(["runs"]) == 0  # `coffee-ml runs` says so too
        assert f"{run_dir.name}  died" in capsys.readouterr().out
        kernel = int((run_dir / "kernel.pid").read_text())
        _wait(lambda: _pid_gone(kernel), "the orphaned kernel to exit", 30)
    finally:
        _stop(process, run_dir)
    # the next run works, and settles the dead one: its manifest, its page and the list of runs say died
    project.run_here(project.params("fast", ["a.ipynb"]))
    manifest = _manifest(run_dir)
    assert manifest["status"] == "died" and manifest["died"]["notebook"] == "slow.ipynb"
    assert [e["status"] for e in manifest["notebooks"]] == ["ok", "died"]
    page = (project.outputs / "index.html").read_text()
    row = page[page.index(run_dir.name) :].split("</tr>")[0]
    assert 'class="status died"' in row and "died in slow.ipynb" in row
    assert 'class="status died"' in (run_dir / "index.html").read_text()
    assert "run died in slow" in (run_dir / "summary.html").read_text()
    newest = project.runs()[-1]
    assert newest != run_dir and _manifest(newest)["status"] == "ok"


def test_sigterm_finalises_the_record_and_stops_the_kernel(tmp_path):
    project = Project(tmp_path)
    project.notebook("slow.ipynb", LOOP)
    project.notebook("after.ipynb", "pass")
    process = project.start(project.params("term", ["slow.ipynb", "after.ipynb"]))
    run_dir = None
    try:
        run_dir = _wait(project.in_loop, "the notebook's loop")
        kernel = int((run_dir / "kernel.pid").read_text())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 143  # 128 + SIGTERM, as a shell reports it
        assert _output(process).strip().splitlines()[-1] == "coffee-ml: error: interrupted by SIGTERM"
        manifest = _manifest(run_dir)
        assert manifest["status"] == "interrupted" and manifest["finished"]
        assert manifest["interrupted"]["signal"] == "SIGTERM" and manifest["interrupted"]["notebook"] == "slow.ipynb"
        assert [e["status"] for e in manifest["notebooks"]] == ["interrupted", "skipped"]
        state = run_state.run_state(run_dir)
        assert state.status == "interrupted" and "SIGTERM in slow.ipynb" in state.reason
        _wait(lambda: _pid_gone(kernel), "the kernel to be stopped", 30)
        assert not (run_dir / runner.RESERVE_FILE).exists()
        assert 'class="status interrupted"' in (project.outputs / "index.html").read_text()
    finally:
        _stop(process, run_dir)


def test_a_dead_kernel_is_reported_with_its_cell(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "dead.ipynb", "x = 1", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    params = tmp_path / "p.yaml"
    params.write_text("notebooks: [dead.ipynb]\n")
    lines: list[str] = []
    with pytest.raises(runner.RunFailed, match=r"run failed in dead.ipynb \(cell 2/2\): DeadKernelError") as failed:
        runner.run(params, outputs=tmp_path / "out", notebooks_dir=nbs, progress=lines.append)
    entry = failed.value.entry
    assert entry["cell"]["number"] == 2 and "os.kill(os.getpid(), signal.SIGKILL)" in entry["cell"]["source"]
    assert "the kernel died" in entry["error"]
    assert any("failing cell 2/2" in line and "os.kill" in line for line in lines)
    manifest = _manifest(failed.value.index.parent)
    assert manifest["status"] == "failed" and manifest["notebooks"][0]["cell"]["number"] == 2


@pytest.fixture
def tiny_disk(tmp_path):
    """A 6 MB tmpfs (root only: skipped where mount is not permitted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)], check=True, capture_output=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        pytest.skip("needs permission to mount a tmpfs (root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def test_a_full_disk_ends_with_one_line_and_a_true_record(tmp_path, tiny_disk):
    project = Project(tmp_path, outputs=tiny_disk / "out")
    project.notebook("a.ipynb", "print('a', x)")
    project.notebook(
        "fill.ipynb",
        "from pathlib import Path\nwith open(Path(run_dir, 'big.bin'), 'wb') as f:\n"
        "    for _ in range(64):\n        f.write(bytes(2**20))",
    )
    code, out = project.run(project.params("fill", ["a.ipynb", "fill.ipynb"]))
    assert code == 1, out
    last = out.strip().splitlines()[-1]
    (run_dir,) = project.runs()
    assert last.startswith(f"coffee-ml: error: disk full: no space left for run folder {run_dir} (")
    assert "free of 6.0 MB" in last and "needs more than" in last
    manifest = _manifest(run_dir)
    assert manifest["status"] == "failed" and manifest["error"].startswith("disk full")
    assert [e["status"] for e in manifest["notebooks"]] == ["ok", "failed"]
    assert manifest["notebooks"][1]["error"].startswith("disk full") and manifest["finished"]
    assert run_state.run_state(run_dir).status == "failed"
    # space freed, the next run works and the failed one stays failed: disk full
    (run_dir / "big.bin").unlink()
    project.run_here(project.params("fast", ["a.ipynb"]))
    page = (project.outputs / "index.html").read_text()
    row = page[page.index(run_dir.name) :].split("</tr>")[0]
    assert 'class="status failed"' in row and "disk full" in row


def test_readers_tell_live_dead_and_unknown_runs_apart(tmp_path):
    """A run between two notebooks, a pid reused by another process, a machine restarted since,
    another machine: died where that is certain, never for a run that may be alive."""
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    me = run_state.owner()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    notebooks = [{"notebook": "a.ipynb", "status": "ok"}, {"notebook": "b.ipynb", "status": "pending"}]

    def state(**owner):
        manifest = {"status": "running", "notebooks": notebooks, "owner": {**me, **owner}}
        return run_state.run_state(run_dir, manifest)

    dead = state(pid=exited.pid, started=None)
    assert dead.status == "died" and dead.notebook == "a.ipynb" and "died after a.ipynb" in dead.reason
    assert state().status == "running"  # this process
    assert state(started="1").status == "died"  # the pid now belongs to another process
    assert state(boot_id="another-boot").status == "died"  # the machine restarted since
    assert state(host=socket.gethostname() + "-elsewhere").status == "unknown"
    lock = run_state.RunLock(run_dir)
    try:  # the lock says running, wherever the owner was
        assert state(host="elsewhere").status == "running" and state(pid=exited.pid).status == "running"
    finally:
        lock.release()
    assert run_state.run_state(run_dir, {"status": "running", "notebooks": notebooks}).status == "running"  # no owner
    assert run_state.run_state(run_dir, {"status": "ok", "owner": {**me, "pid": exited.pid}}).status == "ok"


def test_long_cells_send_progress_to_the_console_not_to_the_notebook(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "PROGRESS_SECONDS", 0.5)
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(
        nbs / "long.ipynb",
        "x = 1",
        "import time\nfrom coffee_ml import progress\nt0 = time.monotonic()\ni = 0\n"
        "while time.monotonic() - t0 < 4:\n    progress.report(f'step {i} of the loop')\n"
        "    i += 1\n    time.sleep(0.02)\nprint('done', i > 0)",
    )
    params = tmp_path / "p.yaml"
    params.write_text("notebooks: [long.ipynb]\n")
    lines: list[str] = []
    index = runner.run(params, outputs=tmp_path / "out", notebooks_dir=nbs, progress=lines.append)
    forwarded = [line for line in lines if "of the loop" in line]
    assert len(forwarded) >= 2, lines
    assert all(line.startswith("  long.ipynb ") for line in forwarded)
    steps = [int(line.split("step ")[1].split()[0]) for line in forwarded]
    assert steps == sorted(set(steps))  # always the latest, never the same line twice
    assert len(forwarded) <= 4 / 0.5 + 1  # throttled
    executed = nbformat.read(index.parent / "long.ipynb", as_version=4)
    assert "of the loop" not in json.dumps(executed.cells[-1].outputs)
    assert "of the loop" not in (index.parent / "long.html").read_text()
    assert not list(index.parent.glob(".progress-*"))
    assert _manifest(index.parent)["notebooks"][0]["files"] == []
    assert progress.PROGRESS_ENV not in os.environ


def test_progress_outside_a_run_does_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    progress.report("nobody listens")
    assert not progress.enabled() and list(tmp_path.iterdir()) == []
    target = tmp_path / ".progress.log"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(target))
    monkeypatch.setattr(progress, "_last", {})
    for i in range(50):
        progress.report(f"step\n{i}")  # one line each, rate-limited
    assert target.read_text() == "step 0\n"


def test_training_reports_each_epoch_to_a_listening_runner(tmp_path, monkeypatch):
    import torch

    from coffee_ml.training import TrainConfig, train

    target = tmp_path / ".progress.log"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(target))
    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)
    x = torch.randn(32, 3)
    batches = [(x, x.sum(1, keepdim=True))]
    train(torch.nn.Linear(3, 1), batches, batches, TrainConfig(max_epochs=3, patience=5, device="cpu", progress=False))
    lines = target.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == [f"training epoch {e}/3" for e in (1, 2, 3)]
