"""LSTM and GRU forecasters: a recurrent encoder over the window and a linear head that predicts
the forward log returns of all horizons 1..H at once (direct multi-step, no error feedback)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from coffee_ml.features import FeatureDataset
from coffee_ml.models.base import FineTunable
from coffee_ml.training import TrainConfig, TrainResult, choose_device, seed_everything, train


class SequenceNet(nn.Module):
    """`cell` ("lstm" | "gru") over (batch, time, features); the last step's state -> H outputs.

    The head works in units of `output_scale` (a buffer: the training targets' standard deviation
    per horizon, saved with the weights), so a freshly initialised net already predicts moves of
    a plausible size instead of spending its first epochs shrinking outputs ~100x.
    """

    def __init__(self, cell: str, n_features: int, hidden: int, layers: int, dropout: float, horizon: int) -> None:
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(n_features, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, horizon)
        self.register_buffer("output_scale", torch.ones(horizon))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1]) * self.output_scale


class _Windowed(nn.Module):
    """Feeds the net only its last `window` bars of the dataset's longer windows."""

    def __init__(self, net: SequenceNet, window: int) -> None:
        super().__init__()
        self.net, self.window = net, window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, -self.window :])


class RNNForecaster(FineTunable):
    cell = "lstm"
    requires_torch = True

    def __init__(
        self,
        hidden: int = 128,
        layers: int = 2,
        dropout: float = 0.2,
        window: int = 60,
        lr: float = 1e-3,
        loss: str = "mse",
        batch_size: int = 256,
        max_epochs: int = 100,
        patience: int = 10,
        grad_clip: float | None = 1.0,
        seed: int = 0,
        device: str = "auto",
        progress: bool = True,
    ) -> None:
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.window = window
        self.lr = lr
        self.loss = loss
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.grad_clip = grad_clip
        self.seed = seed
        self.device = device
        self.progress = progress

    @property
    def model_type(self) -> str:  # type: ignore[override]
        return self.cell

    def _net(self, n_features: int, horizon: int) -> SequenceNet:
        return SequenceNet(self.cell, n_features, self.hidden, self.layers, self.dropout, horizon)

    def _train(self, ds: FeatureDataset, epochs: int, keep_initial: bool = False) -> None:
        config = TrainConfig(
            lr=self.lr,
            loss=self.loss,
            max_epochs=epochs,
            patience=self.patience,
            grad_clip=self.grad_clip,
            seed=self.seed,
            device=self.device,
            progress=self.progress,
            keep_initial=keep_initial,
        )
        seed_everything(self.seed)
        self.training_: TrainResult = train(
            _Windowed(self.net_, self.window),
            ds.loader("train", batch_size=self.batch_size, seed=self.seed),
            ds.loader("val", batch_size=4 * self.batch_size),
            config,
        )

    def _fit(self, ds: FeatureDataset) -> None:
        seed_everything(self.seed)
        self.net_ = self._net(ds.X.shape[1], ds.horizon)
        scale = ds.y[ds.splits["train"]].std(axis=0)  # training targets only
        self.net_.output_scale.copy_(torch.as_tensor(np.where(scale > 0, scale, 1.0), dtype=torch.float32))
        self._train(ds, self.max_epochs)

    def warm_start(self, ds: FeatureDataset, epochs: int) -> "RNNForecaster":
        """Fine-tune the current weights on a new dataset for a few epochs (kept only where they
        improve the new validation loss), then recalibrate."""
        self._describe(ds)
        self._train(ds, epochs, keep_initial=True)
        self.calibrate(ds, "val")
        return self

    @torch.no_grad()
    def _predict_returns(self, X: np.ndarray, log_close: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        self.net_.eval()
        device = next(self.net_.parameters()).device
        out = np.empty((len(X), self.horizon_))
        for i in range(0, len(X), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(X[i : i + batch_size, -self.window :], dtype=np.float32))
            out[i : i + batch_size] = self.net_(xb.to(device)).double().cpu().numpy()
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.net_.state_dict())

    def fitted_state(self) -> dict[str, Any]:
        history = self.training_.history if hasattr(self, "training_") else None
        return super().fitted_state() | {
            "training": None
            if history is None
            else {
                "history": history.to_dict(orient="list"),
                "best_epoch": self.training_.best_epoch,
                "device": self.training_.device,
                "seconds": self.training_.seconds,
            }
        }

    def restore(self, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "RNNForecaster":
        super().restore(state, tensors)
        self.net_ = self._net(self.n_features_in_, self.horizon_)
        self.net_.load_state_dict(tensors)
        self.net_.to(choose_device(self.device))
        return self


class LSTMForecaster(RNNForecaster):
    cell = "lstm"


class GRUForecaster(RNNForecaster):
    cell = "gru"
