"""kill -9 in the middle of a registry write leaves no false record and nothing behind.

Real processes, real SIGKILLs: a child process promotes or saves and stops just before its k-th
file-system call (tests/registry_fault_helper.py wraps the standard library; the registry code
is the one that ships); the test kills it there, for every k until the write completes. After
each kill the next command must see a true registry: `models list` flags exactly the version
production.json names, every listed version loads, no staging folder or temporary file is left,
and promoting or saving again works. Leftovers are removed only once their owner is gone.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from coffee_ml import registry
from coffee_ml.cli import main

HELPER = Path(__file__).with_name("registry_fault_helper.py")
SYMBOL, INTERVAL = "BTCUSDT", "1h"
DEADLINE_S = 180.0  # a loaded machine starts python and imports torch slowly: wait generously
LEFTOVER = re.compile(r"^\.(incoming-|deleting-|production\.json\.(?!lock$)|\.last_version\.|production\.\d)")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and /proc: Linux")


class Helper:
    """The helper process, and the lines it prints, read with a deadline."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(HELPER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.buffer = b""

    def line(self, deadline: float = DEADLINE_S) -> str:
        end = time.monotonic() + deadline
        while b"\n" not in self.buffer:
            left = end - time.monotonic()
            chunk = (
                os.read(self.proc.stdout.fileno(), 65536) if left > 0 and self.selector.select(min(left, 1.0)) else None
            )
            if chunk == b"" or left <= 0:  # the helper ended, or is too slow even for a loaded machine
                if self.proc.poll() is None:
                    self.proc.kill()
                self.proc.wait(timeout=60)
                raise AssertionError(
                    f"no line from the helper within {deadline:.0f} s (got {self.buffer!r}, exit "
                    f"{self.proc.returncode}; stderr {self.proc.stderr.read()[-2000:]!r})"
                )
            self.buffer += chunk or b""
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def send(self, text: str) -> None:
        self.proc.stdin.write((text + "\n").encode())
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()


def _version(root: Path, model: str) -> registry.ModelRef:
    return registry.save(
        {"w": torch.ones(2)}, {"note": model}, symbol=SYMBOL, interval=INTERVAL, model=model, root=root
    )


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*") if LEFTOVER.match(p.name))


def _flagged(root: Path) -> list[tuple[str, str]]:
    table = registry.list_models(root)
    return [(r.model, r.version) for r in table[table["production"]].itertuples()]


def _assert_true_record(root: Path) -> tuple[str, str]:
    """What the next command sees: one production version, the one production.json names; every
    listed version loads; nothing half-written left once list_models (the next open) ran."""
    flagged = _flagged(root)
    record = json.loads((root / SYMBOL / INTERVAL / registry.SERVING).read_text())
    assert flagged == [(record["model"], record["version"])]
    assert registry.production(SYMBOL, INTERVAL, root).model == record["model"]
    for row in registry.list_models(root).itertuples():
        registry.read(registry.resolve(SYMBOL, INTERVAL, row.model, row.version, root))
    assert _leftovers(root) == []
    assert not list((root / SYMBOL / INTERVAL).glob(f"*/{registry.PRODUCTION}"))  # the old second pointer
    return flagged[0]


def _kill_at_every_point(root: Path, command: str, after_kill) -> int:
    """Run `command` in a forked child of the helper, killed before its k-th call, k = 1, 2, ...
    until it completes; `after_kill(k)` checks the registry after each. Returns the points killed at."""
    helper = Helper("serve", str(root), SYMBOL, INTERVAL)
    try:
        assert helper.line().startswith("ready ")
        for k in range(1, 100):
            helper.send(f"{command} {k}")
            said = helper.line().split()
            assert said[0] in ("paused", "done"), said
            if said[0] == "done":
                assert helper.line().split()[0] == "reaped"
                return k - 1
            pid = int(said[1])
            before = _leftovers(root)
            registry.list_models(root)  # another process opens the registry while the writer is alive
            assert _leftovers(root) == before, f"removed work in progress of a live process at {said}"
            os.kill(pid, signal.SIGKILL)
            reaped = helper.line().split()
            assert reaped[:2] == ["reaped", str(pid)] and os.WIFSIGNALED(int(reaped[2])), reaped
            after_kill(k)
        raise AssertionError(f"{command} never completed")
    finally:
        helper.close()


def test_kill_9_at_every_point_of_a_promotion(tmp_path):
    root = tmp_path / "models"
    drift, hybrid = _version(root, "drift"), _version(root, "hybrid")
    legacy = hybrid.path.parent / registry.PRODUCTION

    def start_state() -> None:
        registry.promote(drift, reason="before")
        legacy.write_text("v0001\n")  # a registry from before production.json: the old second pointer
        assert _flagged(root) == [("drift", "v0001")]  # production.json wins over it; the listing removed it
        legacy.write_text("v0001\n")  # put back, for the promotion to remove (a point to kill at)

    outcomes = set()

    def after_kill(k: int) -> None:
        outcomes.add(_assert_true_record(root))
        registry.promote(hybrid)  # the next command works
        assert _flagged(root) == [("hybrid", "v0001")] and _leftovers(root) == []
        start_state()

    start_state()
    points = _kill_at_every_point(root, "promote hybrid v0001", after_kill)
    assert points >= 4  # temporary file opened, written (fsync), renamed over, folder synced
    assert outcomes == {("drift", "v0001"), ("hybrid", "v0001")}  # killed before and after the rename
    assert _assert_true_record(root) == ("hybrid", "v0001")  # the last, unkilled promotion


def test_kill_9_at_every_point_of_a_save(tmp_path):
    root = tmp_path / "models"
    registry.promote(_version(root, "drift"))
    first = _version(root, "hybrid")
    numbers = []

    def after_kill(k: int) -> None:
        assert _assert_true_record(root) == ("drift", "v0001")  # a save never changes production
        ref = _version(root, "hybrid")  # the next save works, with a number never used before
        numbers.append(int(ref.version[1:]))
        assert numbers == sorted(set(numbers)) and numbers[0] > int(first.version[1:])
        registry.read(ref)

    points = _kill_at_every_point(root, "save hybrid", after_kill)
    assert points >= 8  # staging folder, two files and their syncs, the rename, the version counter
    _assert_true_record(root)
    notes = [meta["note"] for ref, meta in registry.versions(SYMBOL, INTERVAL, root) if ref.model == "hybrid"]
    assert notes.count("hybrid") == 1 + points  # the first, and the next save after each kill
    # the killed saves: whole versions (listed, loadable) when killed after their rename, else nothing;
    # the last, unkilled one is always there
    assert 1 <= notes.count("fault test") <= points and len(notes) == len(registry.list_models(root)) - 1


def test_kill_9_of_the_promote_command_before_its_rename(tmp_path, monkeypatch, capsys):
    """`coffee-ml models promote` in a process of its own, killed just before production.json is
    replaced: its temporary file is left; the next `models list` says the truth and removes it."""
    from coffee_ml.data import load_sample
    from coffee_ml.features import build_dataset
    from coffee_ml.models import make_model
    from coffee_ml.models.persistence import save_model

    monkeypatch.setenv("COFFEE_ML_OUTPUTS", str(tmp_path))
    root = registry.models_dir()
    ds = build_dataset(load_sample().loc["2025-09-01":"2025-10-01"], INTERVAL, groups=["price"], window=24, horizon=4)
    model = make_model("drift", window=24).fit(ds)  # the command loads what it promotes: a real model
    drift, _ = (save_model(model, ds, symbol=SYMBOL, name=name) for name in ("drift", "hybrid"))
    registry.promote(drift)
    helper = Helper("cli", registry.SERVING, "--", "models", "promote", SYMBOL, INTERVAL, "hybrid", "v0001")
    try:
        assert helper.line().startswith("ready ")
        said = helper.line().split()
        assert said[0] == "paused" and said[3] == f"replace:{registry.SERVING}", said
        temp = [p.name for p in (root / SYMBOL / INTERVAL).glob(f".{registry.SERVING}.*") if p.suffix != ".lock"]
        assert len(temp) == 1 and said[1] in temp[0]  # named after its owner
        os.kill(int(said[1]), signal.SIGKILL)
        assert helper.proc.wait(timeout=DEADLINE_S) == -signal.SIGKILL
    finally:
        helper.close()
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    flags = {tuple(line.split()[2:5]) for line in out[1:]}
    assert flags == {("drift", "v0001", "True"), ("hybrid", "v0001", "False")}
    assert _leftovers(root) == []
    assert main(["models", "promote", SYMBOL, INTERVAL, "hybrid", "v0001"]) == 0
    assert _assert_true_record(root) == ("hybrid", "v0001")


# ------------------------------------------------------------------ who owns a leftover
def _dead_pid() -> int:
    done = subprocess.run(["true"], check=True)
    assert done.returncode == 0
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_leftovers_are_removed_only_when_their_owner_is_gone(tmp_path):
    root = tmp_path / "models"
    ref = _version(root, "hybrid")
    model_dir, folder = ref.path.parent, ref.path.parent.parent
    me = registry._owner()
    host, pid, start = me.split("-")
    dead = _dead_pid()
    other_host = ("0" if host[0] != "0" else "1") + host[1:]
    kept = [
        model_dir / f".incoming-{me}-abcd1234",  # this live process
        model_dir / f".incoming-{other_host}-{dead}-5-abcd1234",  # another machine: cannot tell
        folder / f".{registry.SERVING}.{me}",
        model_dir / ".incoming-young123",
    ]  # an older coffee-ml's, not yet an hour old
    gone = [
        model_dir / f".incoming-{host}-{dead}-{start}-abcd1234",  # its process ended
        model_dir / f".incoming-{me.rsplit('-', 1)[0]}-{int(start) + 7}-efgh5678",  # its pid now another's
        folder / f".{registry.SERVING}.{dead}",  # the older name: a pid alone
        folder / f".{registry.SERVING}.{host}-{dead}-{start}",
        model_dir / f"..last_version.{host}-{dead}-{start}",
        model_dir / f".deleting-v0007-{host}-{dead}-{start}",
        model_dir / ".incoming-old12345",
    ]  # an older coffee-ml's, two hours old
    for path in kept + gone:
        if "incoming" in path.name or "deleting" in path.name:
            path.mkdir()
            (path / registry.WEIGHTS).write_bytes(b"partial")
        else:
            path.write_text("partial")
    old = time.time() - 2 * registry.STALE_AFTER_S
    os.utime(model_dir / ".incoming-old12345", (old, old))
    registry.list_models(root)
    assert [p.exists() for p in kept] == [True] * len(kept)
    assert [p.exists() for p in gone] == [False] * len(gone)
    assert registry.list_models(root)["version"].tolist() == ["v0001"]
