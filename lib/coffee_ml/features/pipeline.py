"""From candles to a model-ready dataset in one call: `build_dataset`.

Order of operations, each step chosen so that nothing from the future leaks into training:
features (causal) -> drop warm-up rows -> forward-return targets (never across a gap) ->
gap-free window ends -> chronological split with embargo -> scaler fitted on train rows only.
Every row or window lost on the way is counted in `DatasetReport`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from coffee_ml.features.gaps import count_gaps, run_bounds
from coffee_ml.features.indicators import CandleInputError, FeatureSelection, compute_selected, select_features
from coffee_ml.features.scaling import FeatureScaler
from coffee_ml.features.targets import forward_log_returns, returns_to_prices
from coffee_ml.features.volatility import DEFAULT_HALFLIFE, causal_volatility
from coffee_ml.features.windows import SPLIT_NAMES, assign_splits, split_bounds, valid_window_ends

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

    from coffee_ml.features.torch_data import WindowDataset


@dataclass(frozen=True)
class DatasetReport:
    """Loss accounting from candles to samples.

    candidate_windows = windows_dropped_gap + windows_dropped_embargo + sum(windows.values()).
    `gap_context` bars before each window must also be gap-free so that no indicator in the
    window reads across a missing bar; `split_rows` are each part's rows [start, stop) in the
    kept (post-warm-up) rows, after the embargo.
    """

    rows_in: int
    warmup_rows: int
    rows: int
    gaps: int
    gap_context: int
    embargo: int
    candidate_windows: int
    windows_dropped_gap: int
    windows_dropped_embargo: int
    windows: dict[str, int]
    split_rows: dict[str, tuple[int, int]]
    skipped_features: dict[str, str]

    def summary(self) -> str:
        """A few human-readable lines for logs and notebooks."""
        lines = [
            f"rows: {self.rows_in} in, {self.warmup_rows} warm-up dropped, {self.rows} kept ({self.gaps} gaps)",
            f"windows: {self.candidate_windows} candidates, {self.windows_dropped_gap} dropped for gaps "
            f"(context {self.gap_context}), {self.windows_dropped_embargo} dropped at split cuts "
            f"(embargo {self.embargo})",
            "splits: " + ", ".join(f"{k} {v} windows rows {self.split_rows[k]}" for k, v in self.windows.items()),
        ]
        if self.skipped_features:
            lines.append("skipped: " + ", ".join(f"{k} ({v})" for k, v in self.skipped_features.items()))
        return "\n".join(lines)


@dataclass(frozen=True)
class FeatureDataset:
    """Result of `build_dataset`. Row positions refer to `features` (warm-up already dropped).

    features: unscaled feature frame; X: the same scaled, C-ordered float64 (rows, features);
    targets: forward log returns fwd_logret_1..H (NaN where unavailable); close: close per row;
    volatility: causal EWMA volatility per row (`features.volatility`), the scale of adaptive
    intervals; splits: window end rows per part ("train", "val", "test"); scaler: fitted on train
    rows only.
    """

    features: pd.DataFrame
    X: np.ndarray
    targets: pd.DataFrame
    close: pd.Series
    volatility: pd.Series
    splits: dict[str, np.ndarray]
    scaler: FeatureScaler
    window: int
    horizon: int
    interval: str
    report: DatasetReport
    vol_halflife: float = DEFAULT_HALFLIFE

    @property
    def feature_names(self) -> list[str]:
        return list(self.features.columns)

    @property
    def y(self) -> np.ndarray:
        return self.targets.to_numpy()

    def scaled_frame(self) -> pd.DataFrame:
        """`X` as a DataFrame with the feature names and bar times (a view, no copy)."""
        return pd.DataFrame(self.X, index=self.features.index, columns=self.features.columns, copy=False)

    def end_times(self, split: str) -> pd.DatetimeIndex:
        """Open time of the last bar of each window of a split (the forecast origin)."""
        return self.features.index[self.splits[split]]

    def torch_dataset(self, split: str, dtype: torch.dtype | None = None) -> WindowDataset:
        """Windows of one split as a PyTorch Dataset (views on `X`, nothing materialised);
        inputs and targets come as `dtype` (default float32)."""
        from coffee_ml.features.torch_data import WindowDataset

        return WindowDataset(self.X, self.y, self.splits[split], self.window, dtype)

    def loader(
        self,
        split: str,
        batch_size: int = 256,
        shuffle: bool | None = None,
        seed: int | None = 0,
        drop_last: bool = False,
        dtype: torch.dtype | None = None,
    ) -> DataLoader:
        """Batched DataLoader of one split; shuffled (reproducibly by `seed`) for "train" only
        unless `shuffle` says otherwise."""
        from coffee_ml.features.torch_data import make_loader

        shuffle = split == "train" if shuffle is None else shuffle
        return make_loader(self.torch_dataset(split, dtype), batch_size, shuffle, drop_last, seed)

    def price_path(self, end_row: int, log_returns: np.ndarray, cumulative: bool = True) -> pd.Series:
        """Prices implied by predicted log returns for the window ending at row `end_row`."""
        return returns_to_prices(
            log_returns, float(self.close.iloc[end_row]), self.features.index[end_row], self.interval, cumulative
        )


def _check_lengths(window: int, horizon: int) -> None:
    if window < 1 or horizon < 1:
        raise ValueError(f"window and horizon must be >= 1, got window={window}, horizon={horizon}")


def rows_needed(warmup: int, window: int, horizon: int, embargo: int, split: Sequence[float]) -> int:
    """Fewest gap-free rows giving every non-empty split at least one window."""
    per_part = [math.ceil((window + horizon + (embargo if i else 0)) / f) for i, f in enumerate(split) if f > 0]
    return warmup + max(per_part) + 1  # +1 absorbs rounding of the cut rows


@dataclass(frozen=True)
class FeaturePanel:
    """Everything up to the split: features (warm-up dropped), targets, closes and the rows that
    may end a gap-free window. Features are causal, so one panel over the whole history serves
    every fold of a walk-forward test; only the scaler must be refitted per fold."""

    features: pd.DataFrame
    targets: pd.DataFrame
    close: pd.Series
    volatility: pd.Series
    ends: np.ndarray
    window: int
    horizon: int
    interval: str
    warmup: int
    rows_in: int
    gap_context: int
    skipped: dict[str, str]
    vol_halflife: float = DEFAULT_HALFLIFE

    def dataset(
        self,
        splits: dict[str, np.ndarray],
        fit_rows: tuple[int, int],
        embargo: int,
        split_rows: dict[str, tuple[int, int]],
        scaler: str | FeatureScaler = "standard",
    ) -> FeatureDataset:
        """A dataset with the given window ends per part and a scaler fitted on rows `fit_rows` only."""
        lo, hi = fit_rows
        fitted = (FeatureScaler(scaler) if isinstance(scaler, str) else scaler.clone()).fit(self.features.iloc[lo:hi])
        candidates = max(0, len(self.features) - self.window - self.horizon + 1)
        first, last = min(r[0] for r in split_rows.values()), max(r[1] for r in split_rows.values())
        covered = int(((self.ends >= first) & (self.ends < last)).sum())
        report = DatasetReport(
            rows_in=self.rows_in,
            warmup_rows=self.warmup,
            rows=len(self.features),
            gaps=count_gaps(self.features.index, self.interval),
            gap_context=self.gap_context,
            embargo=embargo,
            candidate_windows=candidates,
            windows_dropped_gap=candidates - len(self.ends),
            windows_dropped_embargo=covered - sum(len(v) for v in splits.values()),
            windows={k: len(v) for k, v in splits.items()},
            split_rows=dict(split_rows),
            skipped_features=dict(self.skipped),
        )
        return FeatureDataset(
            features=self.features,
            X=fitted.transform(self.features),
            targets=self.targets,
            close=self.close,
            volatility=self.volatility,
            splits=splits,
            scaler=fitted,
            window=self.window,
            horizon=self.horizon,
            interval=self.interval,
            report=report,
            vol_halflife=self.vol_halflife,
        )


def feature_panel(
    candles: pd.DataFrame,
    interval: str,
    features: Iterable[str] | None = None,
    groups: Iterable[str] | None = None,
    window: int = 60,
    horizon: int = 1,
    gap_context: int | None = None,
    selection: FeatureSelection | None = None,
    vol_halflife: float = DEFAULT_HALFLIFE,
) -> FeaturePanel:
    """Features, forward-return targets and valid window ends for `candles` (see `build_dataset`).
    `selection`, when already resolved, replaces `features`/`groups`."""
    _check_lengths(window, horizon)
    selection = selection or select_features(candles, features, groups)
    warmup = selection.warmup
    context = warmup if gap_context is None else gap_context
    run_start, run_end = run_bounds(candles.index, interval)
    full = compute_selected(candles, selection)
    feats = full.iloc[warmup:]
    bad = (~np.isfinite(feats.to_numpy())).sum(axis=0)
    if bad.any():
        detail = ", ".join(f"{name}: {int(k)}" for name, k in zip(feats.columns, bad) if k)
        raise CandleInputError(f"non-finite feature values after warm-up ({detail})")
    targets = forward_log_returns(candles["close"], horizon, interval).iloc[warmup:]
    ends = valid_window_ends(run_start, run_end, window, horizon, context, first_row=warmup) - warmup
    volatility = causal_volatility(candles["close"], interval, vol_halflife).iloc[warmup:]
    return FeaturePanel(
        features=feats,
        targets=targets,
        close=candles["close"].iloc[warmup:],
        volatility=volatility,
        ends=ends,
        window=window,
        horizon=horizon,
        interval=interval,
        warmup=warmup,
        rows_in=len(candles),
        gap_context=context,
        skipped=dict(selection.skipped),
        vol_halflife=vol_halflife,
    )


def build_dataset(
    candles: pd.DataFrame,
    interval: str,
    features: Iterable[str] | None = None,
    groups: Iterable[str] | None = None,
    window: int = 60,
    horizon: int = 1,
    scaler: str | FeatureScaler = "standard",
    split: Sequence[float] = (0.7, 0.15, 0.15),
    embargo: int | None = None,
    gap_context: int | None = None,
    vol_halflife: float = DEFAULT_HALFLIFE,
) -> FeatureDataset:
    """Features, targets, gap-free windows, a chronological split and a train-only scaler.

    candles: indexed by UTC `open_time`, columns open/high/low/close/volume (+ optional order
        flow columns); interval: bar length name ("1h", "1m", ...) used to find missing bars.
    features / groups: selection by name / group (see `FEATURES.select`); neither = all scale-free
        features computable from these candles.
    window (L): input bars per sample; horizon (H): targets fwd_logret_1..H.
    scaler: "standard", "minmax", "robust" or an unfitted FeatureScaler.
    split: train/val/test fractions of the kept rows, chronological.
    embargo: bars removed at the start of val and test; default max(L, H).
    gap_context: bars before each window that must also be gap-free; default the warm-up length,
        so no windowed indicator value reads across a missing bar.
    vol_halflife: halflife in bars of the causal volatility that scales adaptive intervals.

    Raises CandleInputError for bad inputs (NaN/inf named by column) or too few rows (with the
    number needed), ValueError when gaps leave a requested split without windows.
    """
    _check_lengths(window, horizon)
    split = tuple(float(f) for f in split)
    embargo = max(window, horizon) if embargo is None else embargo
    selection = select_features(candles, features, groups)
    needed = rows_needed(selection.warmup, window, horizon, embargo, split)
    if len(candles) < needed:
        raise CandleInputError(
            f"need at least {needed} rows (warm-up {selection.warmup} + window {window} + horizon {horizon} "
            f"+ embargo {embargo} spread over split {split}), got {len(candles)}"
        )
    panel = feature_panel(
        candles,
        interval,
        window=window,
        horizon=horizon,
        gap_context=gap_context,
        selection=selection,
        vol_halflife=vol_halflife,
    )
    bounds = split_bounds(len(panel.features), split, embargo)
    splits = assign_splits(panel.ends, bounds, window, horizon)
    for name, f in zip(SPLIT_NAMES, split):
        if f > 0 and len(splits[name]) == 0:
            raise ValueError(
                f"split {name!r} has no gap-free window of {window} bars + {horizon} target bars "
                f"(rows {bounds.rows[name]}); use more data, a shorter window or a different split"
            )
    return panel.dataset(splits, bounds.rows["train"], embargo, bounds.rows, scaler)
