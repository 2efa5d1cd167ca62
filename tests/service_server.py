"""`coffee-ml serve` in its own process on a free port, for the tests that call it over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

START_TIMEOUT_S = 120.0  # a loaded 2-core machine may take long to import torch and open the store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(outputs: Path, *, workers: int = 1, env: dict[str, str] | None = None):
    """`coffee-ml serve` on a free port with its own outputs folder; yields (base URL, process)."""
    port = _free_port()
    full = {
        **os.environ,
        "COFFEE_ML_OUTPUTS": str(outputs),
        "COFFEE_ML_STORE": str(outputs / "store"),
        "CLICKHOUSE_HOST": "",
        **(env or {}),
    }
    log_path = Path(tempfile.mkdtemp(prefix="coffee-ml-serve-")) / "serve.log"  # never in the outputs folder
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "coffee_ml.cli", "serve", "--port", str(port), "--workers", str(workers)],
        env=full,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # wait on the condition (the server answers), not on a fixed time
            try:
                if httpx.get(f"{url}/health", timeout=30).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
