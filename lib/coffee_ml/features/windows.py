"""Sliding windows as zero-copy views, gap-aware window selection and chronological splits with
an embargo (numpy only; the PyTorch side is in `torch_data`).

A sample is identified by its window *end* row e: inputs are rows e-L+1..e, targets are the
forward returns from bar e over bars e+1..e+H. Materialising every window of 72k rows x 45
features x L=60 would take ~1.5 GB; a `sliding_window_view` costs nothing and a batch gather
copies only the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


def sliding_windows(X: np.ndarray, window: int) -> np.ndarray:
    """Read-only view of shape (n - window + 1, window, n_features); view[s] = X[s:s+window].

    Built as a 2-D window over (rows, all features) so that a fancy index on the first axis
    returns C-contiguous (batch, window, features) arrays, the layout sequence models expect.
    """
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D (rows, features) array, got shape {X.shape}")
    if not 1 <= window <= len(X):
        raise ValueError(f"window must be between 1 and {len(X)} rows, got {window}")
    return sliding_window_view(X, (window, X.shape[1]))[:, 0]


def valid_window_ends(
    run_start: np.ndarray, run_end: np.ndarray, window: int, horizon: int, context: int = 0, first_row: int = 0
) -> np.ndarray:
    """Rows e whose window e-window+1..e, `context` bars before it and targets e+1..e+horizon are
    all consecutive bars (no missing bar bridged), with the window starting at or after
    `first_row`. `run_start`/`run_end` come from `gaps.run_bounds`.
    """
    e = np.arange(len(run_start))
    first = e - (window - 1)
    ok = (first - context >= run_start) & (e + horizon <= run_end) & (first >= first_row)
    return np.flatnonzero(ok)


@dataclass(frozen=True)
class SplitBounds:
    """Row ranges [start, stop) of each part after the embargo."""

    rows: dict[str, tuple[int, int]]
    embargo: int


def split_bounds(n_rows: int, fractions: Sequence[float], embargo: int) -> SplitBounds:
    """Cut rows 0..n_rows chronologically into train/val/test by `fractions`, then remove the
    first `embargo` rows of val and of test, so that anything a train sample touches (its last
    target bar included) lies at least `embargo` bars before anything a val sample touches.
    """
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split must be three non-negative fractions summing to 1 with train > 0, got {fractions}")
    if embargo < 0:
        raise ValueError(f"embargo must be >= 0, got {embargo}")
    b1 = int(round(n_rows * fractions[0]))
    b2 = int(round(n_rows * (fractions[0] + fractions[1])))
    rows = {"train": (0, b1), "val": (min(b1 + embargo, b2), b2), "test": (min(b2 + embargo, n_rows), n_rows)}
    return SplitBounds(rows, embargo)


def assign_splits(ends: np.ndarray, bounds: SplitBounds, window: int, horizon: int) -> dict[str, np.ndarray]:
    """Window ends per part: a sample belongs to a part only if its whole span (window rows and
    target rows) lies inside that part's rows; samples straddling a cut or the embargo are dropped.
    """
    first, last = ends - (window - 1), ends + horizon
    return {name: ends[(first >= lo) & (last < hi)] for name, (lo, hi) in bounds.rows.items()}
