"""Whether the process that owns a piece of work in progress is still alive.

A run folder, a model version being saved and a production pointer being replaced each name the
process writing them. A reader that finds one unfinished asks here whether that process is gone
(then the work died with it) or may still be writing. A pid alone is not enough: pids are reused,
so the owner is named with its start time (clock ticks since boot, from /proc/<pid>/stat) and
the boot it started in. A zombie (killed, not yet reaped by its parent) counts as gone.
"""

from __future__ import annotations

import os
from pathlib import Path


def boot_id() -> str | None:
    """This boot of this machine (Linux); pids and start times mean nothing across boots."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """The process's start time as the kernel counts it; None when no such process is running
    (absent, a zombie) or /proc cannot be read (not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]  # field 22 of the whole line


def alive(pid: object, started: str | None = None) -> bool | None:
    """Is process `pid` (started at `started`, when known) running on this machine? None: this
    machine cannot tell (no /proc and no permission to signal it, or not a pid at all)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    now = process_start(pid)
    if now is not None:
        return started is None or now == started
    if Path("/proc/self/stat").exists():  # /proc works here and holds no such running process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return None
    return True
