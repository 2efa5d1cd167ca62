"""Training and prediction benchmarks: loop overhead vs a bare PyTorch loop, seconds per epoch for
50k windows at the full LSTM/GRU configuration, forecast latency from a loaded model (warm and in
a fresh process), and, where CUDA exists, GPU vs CPU speed and agreement."""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from common import timed
from torch import nn

from coffee_ml.data import load_sample
from coffee_ml.features import build_dataset
from coffee_ml.models import GRUForecaster, LSTMForecaster
from coffee_ml.models.neural import SequenceNet
from coffee_ml.models.persistence import load_model, save_model
from coffee_ml.training import TrainConfig, train


def _bare_epoch(net: nn.Module, batches, opt: torch.optim.Optimizer, loss_fn: nn.Module) -> None:
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()


def bench_overhead(ds) -> list[dict]:
    """Same net (the full LSTM: 128 hidden, 2 layers, 60 bars), data, batches and optimiser; the
    library loop vs the textbook loop (train part)."""
    batches = list(ds.loader("train", batch_size=256))[:20]
    epochs = 3
    torch.manual_seed(0)
    net = SequenceNet("lstm", ds.X.shape[1], 128, 2, 0.2, ds.horizon)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    _bare_epoch(net, batches, opt, nn.MSELoss())  # warm-up
    bare = statistics.median(timed(lambda: _bare_epoch(net, batches, opt, nn.MSELoss()), epochs))
    torch.manual_seed(0)
    net2 = SequenceNet("lstm", ds.X.shape[1], 128, 2, 0.2, ds.horizon)
    result = train(net2, batches, [], TrainConfig(max_epochs=epochs + 1, patience=100, progress=False, device="cpu"))
    ours = float(result.history["seconds"].iloc[1:].median())
    return [
        {
            "benchmark": "training loop overhead vs bare PyTorch loop (full LSTM 128x2, 20 batches of 256)",
            "measured": 100 * (ours / bare - 1),
            "unit": "%",
            "target": "<= 10 %",
        }
    ]


def _samples_per_s(
    ds,
    cell: str,
    batch: int,
    threads: int | None = None,
    bf16: bool = False,
    n_batches: int = 8,
    compile: bool = False,
    mkldnn: bool = True,
) -> float:
    """Training samples per second of the full net (forward, backward, step) on the CPU; the
    first step (warm-up, and compilation with `compile`) is not timed."""
    batches = list(itertools.islice(iter(ds.loader("train", batch_size=batch)), n_batches + 1))
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        net = SequenceNet(cell, ds.X.shape[1], 128, 2, 0.2, ds.horizon).train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        forward = torch.compile(net) if compile else net

        def step(x, y) -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), torch.backends.mkldnn.flags(enabled=mkldnn):
                loss = nn.functional.mse_loss(forward(x).float(), y)
            loss.backward()
            opt.step()

        step(*batches[0])  # warm-up
        t0 = time.perf_counter()
        for x, y in batches[1:]:
            step(x, y)
        return n_batches * batch / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)


def bench_throughput(ds) -> list[dict]:
    """Samples/s of the full LSTM and GRU at batch 64 and 256, and what CPU options change: one
    thread instead of all, bf16 autocast, oneDNN off, torch.compile."""
    rows = []
    for cell in ("lstm", "gru"):
        for batch in (64, 256):
            rows.append(
                {
                    "benchmark": f"{cell.upper()} full (128x2, 60 bars) training, batch {batch}, "
                    f"{torch.get_num_threads()} threads fp32",
                    "measured": _samples_per_s(ds, cell, batch),
                    "unit": "samples/s",
                    "target": "(report)",
                }
            )
    rows.append(
        {
            "benchmark": "  LSTM batch 256, 1 thread fp32",
            "measured": _samples_per_s(ds, "lstm", 256, threads=1),
            "unit": "samples/s",
            "target": "(report)",
        }
    )
    rows.append(
        {
            "benchmark": "  LSTM batch 256, bf16 autocast",
            "measured": _samples_per_s(ds, "lstm", 256, bf16=True),
            "unit": "samples/s",
            "target": "(report)",
        }
    )
    rows.append(
        {
            "benchmark": "  LSTM batch 256, oneDNN (mkldnn) off",
            "measured": _samples_per_s(ds, "lstm", 256, mkldnn=False),
            "unit": "samples/s",
            "target": "(report)",
        }
    )
    try:
        compiled = _samples_per_s(ds, "lstm", 256, compile=True)
    except Exception as exc:  # inductor needs a C++ toolchain; report why it could not run
        print(f"torch.compile failed: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
        compiled = float("nan")
    rows.append(
        {
            "benchmark": "  LSTM batch 256, torch.compile (inductor)",
            "measured": compiled,
            "unit": "samples/s",
            "target": "(report)",
        }
    )
    return rows


def bench_epochs(candles) -> list[dict]:
    rows = []
    ds = build_dataset(candles, "1h", window=60, horizon=24, split=(0.8, 0.1, 0.1))  # > 50k train windows
    n = min(50_000, len(ds.splits["train"]))
    sub = type(ds)(**{**ds.__dict__, "splits": {**ds.splits, "train": ds.splits["train"][:n]}})
    for cls in (LSTMForecaster, GRUForecaster):
        model = cls(max_epochs=1, progress=False, device="cpu")  # full config: 128 hidden, 2 layers, L=60
        model.fit(sub)
        rows.append(
            {
                "benchmark": f"{cls.__name__} full config, one epoch over {n:,} windows (+ validation), CPU",
                "measured": float(model.training_.history["seconds"].iloc[0]),
                "unit": "s",
                "target": "(report)",
            }
        )
    return rows


def bench_predict(ds, candles) -> list[dict]:
    root = Path(tempfile.mkdtemp())
    small = type(ds)(**{**ds.__dict__, "splits": {k: v[:2000] for k, v in ds.splits.items()}})
    model = LSTMForecaster(max_epochs=1, progress=False, device="cpu").fit(small)
    save_model(model, small, symbol="BTCUSDT", name="lstm", root=root)
    loaded = load_model("BTCUSDT", "1h", "lstm", root=root)
    recent = candles.iloc[-loaded.history_bars :]  # what `serving.predict` reads from the store
    loaded.predict(recent)
    warm = statistics.median(timed(lambda: loaded.predict(recent), 20))
    script = textwrap.dedent(f"""
        import time; t0 = time.perf_counter()
        from pathlib import Path
        from coffee_ml.data import load_sample
        from coffee_ml.models.persistence import load_model
        m = load_model("BTCUSDT", "1h", "lstm", root=Path({str(root)!r}))
        f = m.predict(load_sample().iloc[-m.history_bars:])
        assert f.n == 1 and f.horizon == {ds.horizon}
        print(time.perf_counter() - t0)""")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    return [
        {
            "benchmark": f"forecast {ds.horizon} steps from a loaded full LSTM (features + forward + intervals), warm",
            "measured": warm,
            "unit": "s",
            "target": "< 0.05 s",
        },
        {
            "benchmark": "fresh process: import, load, forecast (wall, interpreter start included)",
            "measured": wall,
            "unit": "s",
            "target": "< 5 s",
        },
        {
            "benchmark": "  of which inside Python after start",
            "measured": float(out.stdout.split()[-1]),
            "unit": "s",
            "target": "(info)",
        },
    ]


def bench_cuda(ds) -> list[dict]:
    """Full LSTM for a few epochs on CUDA and on CPU from the same seed: speed-up and agreement."""
    if not torch.cuda.is_available():
        return [
            {
                "benchmark": "CUDA full LSTM (skipped: no CUDA device here)",
                "measured": float("nan"),
                "unit": "x",
                "target": "(report)",
            }
        ]
    n = min(50_000, len(ds.splits["train"]))
    sub = type(ds)(**{**ds.__dict__, "splits": {**ds.splits, "train": ds.splits["train"][:n]}})
    fitted = {
        dev: LSTMForecaster(max_epochs=3, patience=100, progress=False, device=dev, seed=1).fit(sub)
        for dev in ("cpu", "cuda")
    }
    per_epoch = {dev: float(m.training_.history["seconds"].median()) for dev, m in fitted.items()}
    diff = np.abs(fitted["cuda"].predict(ds, "test").returns - fitted["cpu"].predict(ds, "test").returns).max()
    return [
        {
            "benchmark": f"CUDA ({torch.cuda.get_device_name()}) vs CPU seconds per epoch, full LSTM",
            "measured": per_epoch["cpu"] / per_epoch["cuda"],
            "unit": "x",
            "target": "(report)",
        },
        {
            "benchmark": "max |prediction CUDA - CPU| after 3 epochs (log return)",
            "measured": float(diff),
            "unit": "",
            "target": "< 0.002",
        },
    ]


def run() -> Iterator[dict]:
    """Rows as each group is measured (the epoch benchmarks take minutes)."""
    candles = load_sample()
    ds = build_dataset(candles, "1h", window=60, horizon=24)
    for bench in (
        bench_overhead,
        bench_throughput,
        lambda _: bench_epochs(candles),
        lambda d: bench_predict(d, candles),
        bench_cuda,
        lambda _: bench_gbm(candles),
    ):
        yield from bench(ds)


def bench_gbm(candles) -> list[dict]:
    """`gbm` with its spec defaults (<= 200 rounds, 15 leaves, 2 threads): one fit over ~50k
    training windows x all features x 24 horizons, early stopping on val and calibration included."""
    from coffee_ml.models import make_model

    ds = build_dataset(candles, "1h", window=60, horizon=24, split=(0.8, 0.1, 0.1))  # > 50k train windows
    n = min(50_000, len(ds.splits["train"]))
    sub = type(ds)(**{**ds.__dict__, "splits": {**ds.splits, "train": ds.splits["train"][:n]}})
    model = make_model("gbm")
    seconds = timed(lambda: model.fit(sub), 1)[0]
    return [
        {
            "benchmark": f"gbm fit on {n:,} rows x {ds.X.shape[1]} features x {ds.horizon} horizons "
            f"(n_jobs={model.n_jobs}, early stopping + calibration), CPU",
            "measured": seconds,
            "unit": "s",
            "target": "< 30 s",
        },
        {
            "benchmark": "  gbm boosting rounds kept per horizon (mean of best iterations)",
            "measured": float(model.best_iteration_.mean()),
            "unit": "",
            "target": "(info)",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
