"""Fold plans for walk-forward and simple backtests, in rows of a feature panel.

Each fold has a test block of consecutive rows. The model and scaler see only rows before
`block start - embargo`: the last part of those (after another embargo) is the validation set
used for early stopping and calibration, the rest is the fitting set (the scaler's rows).
With embargo >= max(window, horizon), no training window or target reaches the test block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coffee_ml.features.windows import SplitBounds, assign_splits


@dataclass(frozen=True)
class Fold:
    index: int
    fit_rows: tuple[int, int]
    val_rows: tuple[int, int]
    test_rows: tuple[int, int]

    def ends(self, ends: np.ndarray, window: int, horizon: int) -> dict[str, np.ndarray]:
        """Window ends per part. Training samples lie wholly inside their part (window and
        targets); a test origin may read any earlier bar, so only the origin must be in the block."""
        inside = assign_splits(ends, SplitBounds({"train": self.fit_rows, "val": self.val_rows}, 0), window, horizon)
        lo, hi = self.test_rows
        inside["test"] = ends[(ends >= lo) & (ends < hi)]
        return inside


def plan_folds(
    n_rows: int,
    test_start: int,
    retrain_every: int | None,
    embargo: int,
    scheme: str = "expanding",
    train_bars: int | None = None,
    val_fraction: float = 0.15,
) -> list[Fold]:
    """Test blocks of `retrain_every` rows from `test_start` to the end (one block if None).

    scheme "expanding" trains on all rows before each block; "rolling" on the last `train_bars`.
    """
    if scheme not in ("expanding", "rolling"):
        raise ValueError(f"scheme must be 'expanding' or 'rolling', got {scheme!r}")
    if scheme == "rolling" and not train_bars:
        raise ValueError("scheme 'rolling' needs train_bars (the length of the training window)")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not 0 < test_start < n_rows:
        raise ValueError(f"test span must start inside the data (row {test_start} of {n_rows})")
    step = retrain_every or (n_rows - test_start)
    if step < 1:
        raise ValueError(f"retrain_every must be >= 1 bar, got {retrain_every}")
    folds = []
    for k, b0 in enumerate(range(test_start, n_rows, step)):
        b1 = min(b0 + step, n_rows)
        hi = b0 - embargo
        lo = max(0, hi - train_bars) if scheme == "rolling" else 0
        cut = lo + int(round((hi - lo) * (1 - val_fraction)))
        if cut - lo <= embargo or hi - (cut + embargo) <= 0:
            raise ValueError(
                f"fold {k}: only {hi - lo} training rows before row {b0}; need more history, "
                f"a later test start or a shorter embargo ({embargo})"
            )
        folds.append(Fold(k, (lo, cut), (cut + embargo, hi), (b0, b1)))
    return folds
