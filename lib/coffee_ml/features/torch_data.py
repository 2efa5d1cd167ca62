"""PyTorch access to windows: a Dataset over window views and a batch-at-once DataLoader.

Kept apart from `windows` so that computing features or splits does not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from coffee_ml.features.windows import sliding_windows


class WindowDataset(Dataset):
    """Windows of a (rows, features) matrix at given end rows, with their targets, for PyTorch.

    `dataset[i]` gives one (window, target) pair; `dataset[[i, j, ...]]` gathers a whole batch
    with one numpy fancy index on the window view (about 20x faster than torch indexing an
    unfold view), which is what `make_loader` uses. Inputs are cast to `dtype` per batch only, so
    the float64 matrix is never copied whole.
    """

    def __init__(
        self, X: np.ndarray, y: np.ndarray | None, ends: np.ndarray, window: int, dtype: torch.dtype | None = None
    ) -> None:
        self.windows = sliding_windows(X, window)
        self.y = y
        self.ends = np.asarray(ends, dtype=np.int64)
        self.window = window
        self._np_dtype = torch.empty((), dtype=dtype or torch.float32).numpy().dtype
        if len(self.ends) and (self.ends.min() < window - 1 or self.ends.max() >= len(X)):
            raise ValueError("window ends out of range for this matrix and window length")
        if y is not None and len(y) != len(X):
            raise ValueError(f"targets have {len(y)} rows, features {len(X)}")

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, index: int | Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        ends = self.ends[np.asarray(index)]
        x = torch.from_numpy(self.windows[ends - (self.window - 1)].astype(self._np_dtype, copy=False))
        if self.y is None:
            return x
        return x, torch.from_numpy(self.y[ends].astype(self._np_dtype, copy=False))


def make_loader(
    dataset: WindowDataset,
    batch_size: int = 256,
    shuffle: bool = False,
    drop_last: bool = False,
    seed: int | None = None,
    num_workers: int = 0,
) -> DataLoader:
    """DataLoader that asks the dataset for whole batches (a BatchSampler as sampler, automatic
    batching off), so each batch is one fancy index instead of `batch_size` item calls plus a
    collate. `seed` makes the shuffle order reproducible.
    """
    if shuffle:
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        base = RandomSampler(dataset, generator=generator)
    else:
        base = SequentialSampler(dataset)
    sampler = BatchSampler(base, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers)
