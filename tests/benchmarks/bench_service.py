"""The ML service under load: 20 concurrent clients for 30 s against `GET /api/ml/predict/production`
(p50 and p99 latency, requests per second, errors), quiet and again while a backtest job runs.

The server is `coffee-ml serve` (one uvicorn worker) in its own process over a throw-away outputs
folder and store. The production model is the quickstart's: the newest version promoted in the
user's outputs (copied, read-only) when one exists, else a hybrid trained as the quickstart does.
The clients run in this process (asyncio + httpx, keep-alive), so they share the 2 cores with the
server as a co-located caller would.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from common import REPO

sys.path.insert(0, str(REPO / "tests"))
from service_server import serve  # noqa: E402

SYMBOL, INTERVAL = "BTCUSDT", "1h"
CLIENTS, SECONDS = 20, 30.0
TOKEN = "bench-token"
JOB = {
    "symbol": SYMBOL,
    "models": ["hybrid", "gbm"],
    "method": "walk_forward",
    "start": "2024-01-01",
    "retrain_every": 720,
}


def _production(outputs: Path) -> str:
    """Put the quickstart's production model into `outputs`; say which it is."""
    from coffee_ml import config, registry

    user = config.PROJECT_ROOT / "outputs" / "models"
    os.environ["COFFEE_ML_OUTPUTS"], os.environ["COFFEE_ML_STORE"] = str(outputs), str(outputs / "store")
    try:
        ref = registry.production(SYMBOL, INTERVAL, root=user)
    except registry.RegistryError:
        ref = None
    if ref is not None:
        target = outputs / "models" / SYMBOL / INTERVAL / ref.model / ref.version
        shutil.copytree(ref.path, target)
        registry.promote(registry.resolve(SYMBOL, INTERVAL, ref.model, ref.version))
        return f"{ref.model} {ref.version} from the last make run"
    from coffee_ml.data import load_sample
    from coffee_ml.features import build_dataset
    from coffee_ml.models import make_model
    from coffee_ml.models.persistence import save_model

    ds = build_dataset(load_sample(), INTERVAL, window=48, horizon=24)
    registry.promote(save_model(make_model("hybrid", window=48).fit(ds), ds, symbol=SYMBOL, name="hybrid"))
    return "hybrid trained on the sample"


async def _load(url: str) -> tuple[np.ndarray, int, float]:
    """(latencies in s, errors, wall seconds) of CLIENTS clients looping for SECONDS."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        stop = time.monotonic() + SECONDS

        async def one() -> None:
            nonlocal errors
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    r = await client.get("/api/ml/predict/production", params={"symbol": SYMBOL, "horizon": "24h"})
                    ok = r.status_code == 200 and len(r.json()["predictions"]) == 24
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        t0 = time.monotonic()
        await asyncio.gather(*(one() for _ in range(CLIENTS)))
        wall = time.monotonic() - t0
    return np.array(latencies), errors, wall


def _rows(label: str, latencies: np.ndarray, errors: int, wall: float) -> list[dict]:
    return [
        {
            "benchmark": f"service predict {label}: p50 latency, {CLIENTS} clients",
            "unit": "ms",
            "measured": 1000 * float(np.percentile(latencies, 50)),
            "target": "< 50 ms",
        },
        {
            "benchmark": f"service predict {label}: p99 latency, {CLIENTS} clients",
            "unit": "ms",
            "measured": 1000 * float(np.percentile(latencies, 99)),
            "target": "< 100 ms",
        },
        {
            "benchmark": f"service predict {label}: requests per second",
            "unit": "req/s",
            "measured": len(latencies) / wall,
            "target": "",
        },
        {
            "benchmark": f"service predict {label}: errors of {len(latencies)} requests",
            "unit": "",
            "measured": float(errors),
            "target": "<= 0",
        },
    ]


def _stop_job(folder: Path) -> None:
    """Jobs outlive the server by design (their own session): end this one before its folder goes."""
    import json
    import signal

    record = json.loads((folder / "job.json").read_text())
    pid = (record.get("owner") or {}).get("pid")
    if pid and record["status"] in ("queued", "running"):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(300):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        outputs = Path(tmp)
        which = _production(outputs)
        print(f"  production model: {which}", file=sys.stderr)
        with serve(outputs, env={"COFFEE_ML_API_TOKEN": TOKEN}) as (url, _):
            httpx.get(f"{url}/api/ml/predict/production", params={"symbol": SYMBOL}, timeout=60)  # warm
            rows += _rows("quiet", *asyncio.run(_load(url)))
            auth = {"Authorization": f"Bearer {TOKEN}"}
            job = httpx.post(f"{url}/api/ml/backtest", json=JOB, headers=auth, timeout=60).json()
            status = f"{url}{job['status_url']}"
            deadline = time.monotonic() + 60
            while httpx.get(status, timeout=30).json()["status"] == "queued" and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(5)  # past the kernel's start, into the models' fitting
            latencies, errors, wall = asyncio.run(_load(url))
            state = httpx.get(status, timeout=30).json()
            print(
                f"  backtest job {state['id']}: {state['status']} at the end of the load ({state.get('progress')})",
                file=sys.stderr,
            )
            rows += _rows(f"while a backtest job runs ({state['status']} after)", latencies, errors, wall)
            _stop_job(outputs / "jobs" / state["id"])
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
