"""Training loop: reproducible, early stopping restores the best weights, clear device errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from coffee_ml import training
from coffee_ml.data import load_sample
from coffee_ml.features import build_dataset
from coffee_ml.models import LSTMForecaster
from coffee_ml.training import TrainConfig, train


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
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def test_early_stopping_restores_the_best_epoch():
    """Validation targets are the negation of training targets: the better the fit, the worse
    the validation loss, so the best epoch is early and training stops `patience` epochs later."""
    torch.manual_seed(0)
    x = torch.randn(512, 4)
    y = x.sum(dim=1, keepdim=True)
    train_b, val_b = _batches(x, y), _batches(x, -y)
    module = nn.Linear(4, 1)
    result = train(
        module, train_b, val_b, TrainConfig(lr=0.05, max_epochs=50, patience=3, progress=False, device="cpu")
    )  # compared with CPU tensors below
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
    torch.manual_seed(2)
    x = torch.randn(200, 2)
    y = 3.0 * x[:, :1] + torch.randn(200, 1)  # residuals on both sides of delta
    module = nn.Linear(2, 1)
    with torch.no_grad():
        r = (module(x) - y).abs()
    delta = 0.7
    huber = torch.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta)).mean().item()
    assert (r <= delta).any() and (r > delta).any()
    result = train(
        module,
        _batches(x, y),
        _batches(x, y),  # lr 0: the weights stay where they are
        TrainConfig(loss="huber", huber_delta=delta, lr=0.0, max_epochs=2, progress=False),
    )
    assert result.history["train_loss"].tolist() == pytest.approx([huber, huber], rel=1e-5)
    assert result.history["val_loss"].tolist() == pytest.approx([huber, huber], rel=1e-5)
    assert huber < (r**2).mean().item() / 2  # not the MSE
    with pytest.raises(FloatingPointError, match="diverged at epoch 1"):
        train(
            nn.Linear(2, 1),
            _batches(x * 1e30, x[:, :1] * 1e30),
            _batches(x, x[:, :1]),
            TrainConfig(lr=1e6, grad_clip=None, max_epochs=2, progress=False),
        )


def _tiny_lstm(**kw) -> LSTMForecaster:
    return LSTMForecaster(**(dict(window=20, hidden=4, layers=1, max_epochs=1, batch_size=512, progress=False) | kw))


def test_explicit_cpu_is_honoured_even_when_cuda_is_available(ds, monkeypatch):
    """A model fitted with device="cpu" trains (and calibrates, i.e. predicts) on the CPU. CUDA is
    reported available so that code ignoring the explicit choice would pick it (and fail here on a
    CPU-only machine)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model = _tiny_lstm(device="cpu").fit(ds)
    assert model.training_.device == "cpu"
    tensors = list(model.net_.parameters()) + list(model.net_.buffers())
    assert tensors and all(t.device.type == "cpu" for t in tensors)


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_requested_without_cuda_fails_before_training(ds, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    epochs = []
    monkeypatch.setattr(training, "_epoch", lambda *a, **k: epochs.append(1) or 0.0)
    model = _tiny_lstm(device=device)
    with pytest.raises(ValueError, match=f"device '{device}' requested but CUDA is not available"):
        model.fit(ds)
    assert not epochs and not hasattr(model, "training_")
    auto = _tiny_lstm(device="auto", max_epochs=2).fit(ds)  # "auto" falls back to the CPU
    assert auto.training_.device == "cpu" and len(epochs) == 2 * 2  # train + val pass per epoch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_matches_cpu_predictions(ds):
    params = dict(window=20, hidden=16, layers=2, max_epochs=1, progress=False, seed=3)
    cpu = LSTMForecaster(device="cpu", **params).fit(ds)
    gpu = LSTMForecaster(device="cuda", **params).fit(ds)
    assert gpu.training_.device.startswith("cuda")
    on_gpu, on_cpu = gpu.predict(ds, "test"), cpu.predict(ds, "test")
    np.testing.assert_allclose(on_gpu.returns, on_cpu.returns, atol=2e-3)
    # intervals are calibrated on each device's own validation predictions: conformal order
    # statistics move by more than the predictions do, so compare widths, not bounds
    for level in on_cpu.levels:
        (g_lo, g_hi), (c_lo, c_hi) = on_gpu.bounds(level), on_cpu.bounds(level)
        assert np.isfinite(g_lo).all() and (g_lo < on_gpu.returns).all() and (on_gpu.returns < g_hi).all()
        assert np.mean(g_hi - g_lo) == pytest.approx(np.mean(c_hi - c_lo), rel=0.1)
    assert ((on_gpu.confidence > 0) & (on_gpu.confidence < 1)).all()


def test_fine_tuning_keeps_the_starting_weights_when_they_validate_better():
    torch.manual_seed(1)
    x = torch.randn(512, 4)
    y = x.sum(dim=1, keepdim=True)
    module = nn.Linear(4, 1)
    with torch.no_grad():  # start at the validation optimum (val targets are -y)
        module.weight.fill_(-1.0)
        module.bias.zero_()
    start = [p.detach().clone() for p in module.parameters()]
    result = train(
        module,
        _batches(x, y),
        _batches(x, -y),
        TrainConfig(lr=0.05, max_epochs=3, patience=5, keep_initial=True, progress=False, device="cpu"),
    )
    assert result.best_epoch == 0 and result.best_val_loss == pytest.approx(0.0, abs=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(start, module.parameters()))
