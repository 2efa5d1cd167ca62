"""Training loop: reproducible, early stopping restores the best weights, clear device errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from coffee_ml.data import load_sample
from coffee_ml.features import build_dataset
from coffee_ml.models import LSTMForecaster
from coffee_ml.training import TrainConfig, choose_device, train


@pytest.fixture(scope="module")
def ds():
    return build_dataset(load_sample().loc["2025-07-01":"2025-10-01"], "1h", groups=["price"], window=20, horizon=3)


def _weights(model: LSTMForecaster) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.net_.parameters()]


def test_same_seed_same_weights_other_seed_other_weights(ds):
    params = dict(window=20, hidden=8, layers=2, max_epochs=2, progress=False)
    a = _weights(LSTMForecaster(seed=7, **params).fit(ds))
    b = _weights(LSTMForecaster(seed=7, **params).fit(ds))
    c = _weights(LSTMForecaster(seed=8, **params).fit(ds))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def _batches(x: torch.Tensor, y: torch.Tensor, size: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def test_early_stopping_restores_the_best_epoch():
    """Validation targets are the negation of training targets: the better the fit, the worse
    the validation loss, so the best epoch is early and training stops `patience` epochs later."""
    torch.manual_seed(0)
    x = torch.randn(512, 4)
    y = x.sum(dim=1, keepdim=True)
    train_b, val_b = _batches(x, y), _batches(x, -y)
    module = nn.Linear(4, 1)
    result = train(module, train_b, val_b, TrainConfig(lr=0.05, max_epochs=50, patience=3, progress=False))
    h = result.history
    assert result.stopped_early and len(h) == result.best_epoch + 3
    assert result.best_val_loss == h["val_loss"].min() < h["val_loss"].iloc[-1]
    with torch.no_grad():
        restored = sum(float(((module(xb) - yb) ** 2).sum()) for xb, yb in val_b) / len(x)
    assert restored == pytest.approx(result.best_val_loss, rel=1e-5)
    assert list(h.columns) == ["epoch", "train_loss", "val_loss", "seconds"]


def test_loss_choices_and_divergence():
    with pytest.raises(ValueError, match="loss must be 'mse' or 'huber'"):
        TrainConfig(loss="mae").loss_fn()
    x = torch.randn(64, 2)
    huber = train(nn.Linear(2, 1), _batches(x, x[:, :1]), _batches(x, x[:, :1]),
                  TrainConfig(loss="huber", max_epochs=2, progress=False))
    assert len(huber.history) == 2
    with pytest.raises(FloatingPointError, match="diverged at epoch 1"):
        train(nn.Linear(2, 1), _batches(x * 1e30, x[:, :1] * 1e30), _batches(x, x[:, :1]),
              TrainConfig(lr=1e6, grad_clip=None, max_epochs=2, progress=False))


def test_device_choice():
    assert choose_device("cpu").type == "cpu"
    assert choose_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            choose_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_matches_cpu_predictions(ds):
    params = dict(window=20, hidden=16, layers=2, max_epochs=1, progress=False, seed=3)
    cpu = LSTMForecaster(device="cpu", **params).fit(ds)
    gpu = LSTMForecaster(device="cuda", **params).fit(ds)
    assert gpu.training_.device.startswith("cuda")
    rows = ds.splits["test"]
    np.testing.assert_allclose(gpu.predict_rows(ds, rows), cpu.predict_rows(ds, rows), atol=2e-3)


def test_fine_tuning_keeps_the_starting_weights_when_they_validate_better():
    torch.manual_seed(1)
    x = torch.randn(512, 4)
    y = x.sum(dim=1, keepdim=True)
    module = nn.Linear(4, 1)
    with torch.no_grad():  # start at the validation optimum (val targets are -y)
        module.weight.fill_(-1.0)
        module.bias.zero_()
    start = [p.detach().clone() for p in module.parameters()]
    result = train(module, _batches(x, y), _batches(x, -y),
                   TrainConfig(lr=0.05, max_epochs=3, patience=5, keep_initial=True, progress=False))
    assert result.best_epoch == 0 and result.best_val_loss == pytest.approx(0.0, abs=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(start, module.parameters()))
