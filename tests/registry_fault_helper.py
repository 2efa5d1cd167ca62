"""A process for the registry's fault tests (tests/test_registry_faults.py) to kill: not a test.

It stops itself just before one of the file-system calls a registry write makes (the k-th
`os.mkdir`, `os.rename`, `os.replace`, `os.fsync`, `os.unlink`, `os.rmdir` or opening a file for
writing), says so on stdout and waits there for the test to SIGKILL it. The library runs unchanged:
the pause lives in this file, around the standard library.

    python registry_fault_helper.py serve ROOT SYMBOL INTERVAL
        imports coffee-ml once, then for each stdin line "promote MODEL VERSION K" or
        "save MODEL K" forks a child that does it, pausing before call K ("paused PID K CALL"),
        or finishing ("done PID CALLS"); the server reports "reaped PID STATUS" when it ends.
    python registry_fault_helper.py cli NAME -- ARGS...
        runs `coffee-ml ARGS` in this process, pausing before the first call on a file named NAME.
"""

from __future__ import annotations

import io
import os
import sys
import time


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # unbuffered: a forked child and its parent share stdout


def install(pause_at: int | None = None, name: str | None = None) -> list[int]:
    """Pause before the `pause_at`-th watched call (or the first on a file called `name`)."""
    count = [0]

    def watch(label: str, func, path_arg: int = 0, writing=None):
        def wrapper(*args, **kwargs):
            if writing is None or writing(*args, **kwargs):
                count[0] += 1
                target = args[path_arg] if len(args) > path_arg else ""
                target = os.fsdecode(target) if isinstance(target, (str, bytes, os.PathLike)) else str(target)
                if count[0] == pause_at or (name is not None and os.path.basename(target) == name):
                    _say(f"paused {os.getpid()} {count[0]} {label}:{os.path.basename(target)}")
                    while True:
                        time.sleep(3600)
            return func(*args, **kwargs)

        return wrapper

    def opens_for_writing(file, mode="r", *args, **kwargs):
        return any(c in mode for c in "wax+")

    for label, arg in (("mkdir", 0), ("rename", 1), ("replace", 1), ("fsync", 0), ("unlink", 0), ("rmdir", 0)):
        setattr(os, label, watch(label, getattr(os, label), arg))
    io.open = watch("open", io.open, 0, opens_for_writing)
    return count


def serve(root: str, symbol: str, interval: str) -> None:
    import torch

    from coffee_ml import registry

    _say(f"ready {os.getpid()}")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        pid = os.fork()
        if pid == 0:
            try:
                if words[0] == "promote":
                    ref = registry.resolve(symbol, interval, words[1], words[2], root=_path(root))
                    count = install(int(words[3]))
                    registry.promote(ref, reason="fault test")
                else:
                    count = install(int(words[2]))
                    registry.save(
                        {"w": torch.arange(4.0)},
                        {"note": "fault test"},
                        symbol=symbol,
                        interval=interval,
                        model=words[1],
                        root=_path(root),
                    )
                _say(f"done {os.getpid()} {count[0]}")
                os._exit(0)
            except BaseException as exc:  # noqa: BLE001 - report, never fall back into the server loop
                _say(f"error {os.getpid()} {type(exc).__name__}: {exc}")
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        _say(f"reaped {pid} {status}")


def _path(text: str):
    from pathlib import Path

    return Path(text)


def cli(name: str, argv: list[str]) -> None:
    from coffee_ml.cli import main

    _say(f"ready {os.getpid()}")
    install(name=name)
    sys.exit(main(argv))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(*sys.argv[2:5])
    else:
        cli(sys.argv[2], sys.argv[sys.argv.index("--") + 1 :])
