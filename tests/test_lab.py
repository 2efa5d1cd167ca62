"""`make lab` starts JupyterLab on this environment's kernel with the caller's LAB_ARGS, also as root
(CI and containers run as root, where Jupyter refuses to start without --allow-root)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (ROOT / ".venv" / ".installed").exists(), reason="make lab needs the project's .venv")
def test_make_lab_serves_the_project_kernel_with_lab_args(tmp_path):
    port, token = _free_port(), "t0k3n"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    lab = subprocess.Popen(
        ["make", "-s", "lab", f"LAB_ARGS=--no-browser --ip 127.0.0.1 --port {port} --IdentityProvider.token={token}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline, answer = time.monotonic() + 120, None  # generous: a loaded machine starts Jupyter slowly
        while answer is None and time.monotonic() < deadline and lab.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernelspecs?token={token}", timeout=5) as r:
                    answer = json.load(r)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        assert answer is not None, f"JupyterLab did not answer (exit {lab.poll()})"
        assert "python3" in answer["kernelspecs"]
        with pytest.raises(urllib.error.HTTPError):  # the token from LAB_ARGS is the one required
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernelspecs?token=wrong", timeout=5)
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.communicate()
