"""Training loop for the sequence models: Adam, MSE or Huber, early stopping, clipping, seeding.

Kept to what the loop needs so that it costs little over a bare PyTorch loop (`make bench`
measures it): loss values are summed on the device and read once per epoch.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm  # text bar on stderr: updates in place in notebooks and terminals; reviewer

# reports drop stderr (a widget bar from tqdm.auto would be a stale output in them instead)
from coffee_ml import progress

EpochReporter = Callable[[int, float], None]
_REPORTER: contextvars.ContextVar[EpochReporter | None] = contextvars.ContextVar("epoch_reporter", default=None)


@contextlib.contextmanager
def epoch_reporter(report: EpochReporter) -> Iterator[None]:
    """Call `report(epoch, val_loss)` after every epoch of any training inside the block.

    How hyperparameter search prunes a neural trial by its learning curve (`report` raises
    optuna's TrialPruned) without the models knowing about Optuna."""
    token = _REPORTER.set(report)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def choose_device(device: str = "auto") -> torch.device:
    """CUDA when available for "auto", else CPU; an explicit "cuda"/"cpu"/"cuda:1" is honoured."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    return dev


def seed_everything(seed: int) -> None:
    """Same seed, same weights and same batch order on CPU."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


@dataclass
class TrainConfig:
    lr: float = 1e-3
    loss: str = "mse"  # "mse" or "huber"
    huber_delta: float = 1.0
    max_epochs: int = 100
    patience: int = 10
    grad_clip: float | None = 1.0
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    keep_initial: bool = False  # fine-tuning: the starting weights compete as "epoch 0"

    def loss_fn(self) -> nn.Module:
        if self.loss == "mse":
            return nn.MSELoss(reduction="sum")
        if self.loss == "huber":
            return nn.HuberLoss(reduction="sum", delta=self.huber_delta)
        raise ValueError(f"loss must be 'mse' or 'huber', got {self.loss!r}")


@dataclass
class TrainResult:
    history: pd.DataFrame  # epoch, train_loss, val_loss, seconds
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    device: str
    seconds: float


def _epoch(
    module: nn.Module,
    batches: Iterable,
    loss_fn: nn.Module,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None,
    grad_clip: float | None,
) -> float:
    total = torch.zeros((), device=device)
    count = 0
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if optimizer is None:
            loss = loss_fn(module(x), y)
        else:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(module(x), y)
            (loss / y.numel()).backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
            optimizer.step()
        total += loss.detach()
        count += y.numel()
    return float(total) / max(count, 1)


def train(module: nn.Module, train_batches: Iterable, val_batches: Iterable, config: TrainConfig) -> TrainResult:
    """Fit `module` in place; on return it holds the weights of the best validation epoch.

    Mean loss per target value is reported for both parts. Early stopping waits `patience`
    epochs without a better validation loss, then restores the best weights (with
    `keep_initial`, the weights it started from count as epoch 0 and may be the ones restored).
    """
    device = choose_device(config.device)
    module.to(device)
    loss_fn = config.loss_fn()
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best_loss, best_epoch, best_state, waited = float("inf"), 0, None, 0
    if config.keep_initial:  # fine-tuning must not end worse on validation than where it started
        module.eval()
        with torch.no_grad():
            best_loss = _epoch(module, val_batches, loss_fn, device, None, None)
        best_state = copy.deepcopy(module.state_dict())
    rows = []
    t_start = time.perf_counter()
    bar = tqdm(
        range(1, config.max_epochs + 1),
        desc=f"training on {device}",
        unit="epoch",
        disable=not config.progress,
        mininterval=0,
    )
    for epoch in bar:
        t0 = time.perf_counter()
        module.train()
        train_loss = _epoch(module, train_batches, loss_fn, device, optimizer, config.grad_clip)
        module.eval()
        with torch.no_grad():
            val_loss = _epoch(module, val_batches, loss_fn, device, None, None)
        rows.append((epoch, train_loss, val_loss, time.perf_counter() - t0))
        if not np.isfinite(train_loss):
            raise FloatingPointError(
                f"training diverged at epoch {epoch} (train loss {train_loss}); lower lr or enable gradient clipping"
            )
        if val_loss < best_loss:
            best_loss, best_epoch, waited = val_loss, epoch, 0
            best_state = copy.deepcopy(module.state_dict())
        else:
            waited += 1
        # shown by the bar's next update: one line per epoch, not two (each is a stream message)
        bar.set_postfix(train=f"{train_loss:.3g}", val=f"{val_loss:.3g}", best=best_epoch, refresh=False)
        progress.report(
            f"training epoch {epoch}/{config.max_epochs}: train loss {train_loss:.3g}, "
            f"val loss {val_loss:.3g}, best epoch {best_epoch}"
        )
        if (report := _REPORTER.get()) is not None:
            report(epoch, val_loss)
        if waited >= config.patience:
            break
    bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    history = pd.DataFrame(rows, columns=["epoch", "train_loss", "val_loss", "seconds"])
    return TrainResult(
        history,
        best_epoch,
        best_loss,
        stopped_early=len(rows) < config.max_epochs,
        device=str(device),
        seconds=time.perf_counter() - t_start,
    )
