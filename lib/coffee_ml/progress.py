"""Progress lines from long library loops (training epochs, walk-forward folds, search trials,
ensemble strategies) to the console of `coffee-ml run`.

`report("lstm epoch 3/50 ...")` appends one line to the file named by `COFFEE_ML_PROGRESS`, which
the runner sets for the kernels of a run (a hidden file in the run folder) and tails while the
notebook executes, printing the latest line at most every ten seconds. Outside a run the variable
is unset and `report` does nothing: notebooks, their outputs and the reviewer reports never show
these lines. A kernel writes at most one line a second (the latest wins); a failure to write
is ignored, since progress must never break the work it reports on.
"""

from __future__ import annotations

import os
import threading
import time

PROGRESS_ENV = "COFFEE_ML_PROGRESS"
MIN_SECONDS = 1.0  # between two lines written by one process
MAX_CHARS = 200

_lock = threading.Lock()
_last: dict[str, float] = {}  # file -> when this process last wrote to it
_pending: dict[str, str] = {}  # file -> a line held back by the rate limit


def enabled() -> bool:
    """Is there a runner listening (a kernel of `coffee-ml run`)?"""
    return bool(os.environ.get(PROGRESS_ENV))


def report(message: str) -> None:
    """Tell the runner's console where a long loop is: one short line (whitespace collapsed,
    cut to 200 characters). No-op outside a run."""
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    line = " ".join(str(message).split())[:MAX_CHARS]
    now = time.monotonic()
    with _lock:
        if now - _last.get(path, float("-inf")) < MIN_SECONDS:
            _pending[path] = line
            return
        _last[path] = now
        _pending.pop(path, None)
    _write(path, line)


def flush() -> None:
    """Write a line the rate limit held back (the end of a loop: its last state is worth showing)."""
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    with _lock:
        line = _pending.pop(path, None)
        _last[path] = time.monotonic()
    if line is not None:
        _write(path, line)


def _write(path: str, line: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as f:  # O_APPEND: lines of several processes never mix
            f.write(line + "\n")
    except OSError:
        pass
