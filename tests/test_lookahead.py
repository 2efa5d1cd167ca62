"""Proof of no look-ahead: features, targets, scaler fitting and split boundaries.

Features: for every registered feature, computing on candles truncated after bar t gives the
same values up to t as computing on the full series with the same start (TA-Lib EMA-type
indicators depend on their seed at the series start, so only the end is truncated; that is
exactly the "never reads the future" property). A deliberately leaky feature shows the check
can fail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import torch

from coffee_ml.data.sample import load_sample
from coffee_ml.features import FEATURES, build_dataset, compute_features, forward_log_returns

CUTS = (70, 99, 250, 353, 354, 355, 500, 1189, 1190, 1500, 2222, 2999)  # incl. bars next to gaps


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return load_sample().iloc[3000:6000]  # contains two gaps (rows 353 and 1189 of the slice)


def truncation_mismatches(
    compute: Callable[[pd.DataFrame], pd.DataFrame], candles: pd.DataFrame, cuts: tuple[int, ...]
) -> dict[str, list[int]]:
    """Columns (and cut rows) where values up to bar t differ between a computation on
    candles[:t+1] and one on all candles."""
    full = compute(candles)
    bad: dict[str, list[int]] = {}
    for t in cuts:
        part = compute(candles.iloc[: t + 1])
        for name in full.columns:
            a, b = full[name].to_numpy()[: t + 1], part[name].to_numpy()
            if not np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True):
                bad.setdefault(name, []).append(t)
    return bad


def test_every_registered_feature_is_causal(candles: pd.DataFrame) -> None:
    names = FEATURES.names()
    assert len(names) == len(FEATURES)
    bad = truncation_mismatches(lambda c: compute_features(c, features=names), candles, CUTS)
    assert not bad


def test_truncation_check_catches_a_leaky_feature(candles: pd.DataFrame) -> None:
    def leaky(c: pd.DataFrame) -> pd.DataFrame:
        out = compute_features(c, features=["rsi_14"])
        out["centred_mean"] = c["close"].rolling(5, center=True, min_periods=1).mean() / c["close"]
        return out

    assert set(truncation_mismatches(leaky, candles, CUTS)) == {"centred_mean"}


def test_target_reads_only_the_next_h_bars(candles: pd.DataFrame) -> None:
    close, t, h = candles["close"], 1000, 6
    base = forward_log_returns(close, h, "1h").iloc[t].to_numpy()
    assert np.isfinite(base).all()
    after = close.copy()
    after.iloc[t + h + 1 :] *= 3.0  # beyond the horizon: target at t must not move
    np.testing.assert_array_equal(forward_log_returns(after, h, "1h").iloc[t].to_numpy(), base)
    before = close.copy()
    before.iloc[:t] *= 3.0  # the past: target at t must not move either
    np.testing.assert_array_equal(forward_log_returns(before, h, "1h").iloc[t].to_numpy(), base)
    inside = close.copy()
    inside.iloc[t + h] *= 3.0  # the last bar of the horizon moves exactly the h-step target
    changed = forward_log_returns(inside, h, "1h").iloc[t].to_numpy() != base
    assert changed.tolist() == [False] * (h - 1) + [True]


@pytest.fixture(scope="module")
def clean(candles: pd.DataFrame):
    return build_dataset(candles, "1h", window=30, horizon=5)


def test_scaler_never_sees_validation_or_test_rows(candles: pd.DataFrame, clean) -> None:
    first_val_row = clean.report.warmup_rows + clean.report.split_rows["train"][1]  # row in `candles`
    poisoned = candles.copy()
    rng = np.random.default_rng(1)
    factor = 10.0 ** rng.uniform(2, 6, len(candles) - first_val_row)
    for col in ("open", "high", "low", "close"):
        poisoned.iloc[first_val_row:, poisoned.columns.get_loc(col)] *= factor
    poisoned.iloc[first_val_row:, poisoned.columns.get_loc("volume")] *= 1e6
    dirty = build_dataset(poisoned, "1h", window=30, horizon=5)

    assert (
        np.abs(
            dirty.features.iloc[first_val_row - clean.report.warmup_rows :].to_numpy()
            - clean.features.iloc[first_val_row - clean.report.warmup_rows :].to_numpy()
        )
        > 1
    ).any()
    np.testing.assert_array_equal(dirty.scaler.center_, clean.scaler.center_)
    np.testing.assert_array_equal(dirty.scaler.scale_, clean.scaler.scale_)
    everything = type(dirty.scaler)(dirty.scaler.method).fit(dirty.features)
    assert not np.allclose(everything.scale_, clean.scaler.scale_)  # poison would have shown


def bars_read_by_loader(ds, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets): for every sample the loader yields, the row of each input bar and the
    row of the bar each target reaches. X and y are replaced by their own row numbers (input row b
    holds b; target column h-1 of row j holds j+h, the bar fwd_logret_h reads), so whatever the
    loader gathers shows which bars it read."""
    n, n_feat = ds.X.shape
    rows = np.arange(n, dtype=np.float64)
    marked = dataclasses.replace(
        ds,
        X=np.ascontiguousarray(np.repeat(rows[:, None], n_feat, axis=1)),
        targets=pd.DataFrame(rows[:, None] + np.arange(1, ds.horizon + 1), index=ds.targets.index),
    )
    batches = list(marked.loader(split, batch_size=512))
    x = torch.cat([b[0] for b in batches]).numpy().astype(np.int64)
    y = torch.cat([b[1] for b in batches]).numpy().astype(np.int64)
    assert (x == x[:, :, :1]).all()  # all features of an input bar come from the same row
    return x[:, :, 0], y


@pytest.mark.parametrize("embargo", [None, 0, 45])
def test_no_sample_reads_a_bar_of_a_later_split(candles: pd.DataFrame, clean, embargo) -> None:
    """Through the loaders models train on: each sample reads L consecutive bars then its H
    target bars right after them; no train sample reads a bar any val or test sample reads, and
    at least `embargo` bars (by timestamps; default max(L, H)) lie between the last bar train
    samples read and the first bar val samples read, and likewise between val and test."""
    L, H = 30, 5
    ds = clean if embargo is None else build_dataset(candles, "1h", window=L, horizon=H, embargo=embargo)
    gap = max(L, H) if embargo is None else embargo
    times = ds.features.index
    assert times.equals(candles.index[len(candles) - len(times) :])
    seconds = times.as_unit("s").asi8
    read = {}
    for split in ("train", "val", "test"):
        x, y = bars_read_by_loader(ds, split)
        assert len(x) > 0
        np.testing.assert_array_equal(np.sort(x[:, -1]), ds.splits[split])  # each window once
        np.testing.assert_array_equal(x, x[:, -1:] + np.arange(-(L - 1), 1))  # L consecutive rows
        np.testing.assert_array_equal(y, x[:, -1:] + np.arange(1, H + 1))  # then the next H rows
        span = np.concatenate([x, y], axis=1)  # every bar the sample reads, in bar time: one hour apart
        assert (np.diff(seconds[span], axis=1) == 3600).all()
        read[split] = span
    for early, late in (("train", "val"), ("val", "test")):
        last, first = read[early].max(), read[late].min()
        assert not np.isin(read[early], read[late]).any()
        between = (times[first] - times[last]) // pd.Timedelta("1h") - 1  # bars strictly between
        assert between >= gap, (early, late, between)
    # real targets: the target of a sample is the log return from its last input bar to the bar read
    ends = np.concatenate(list(ds.splits.values()))
    close = candles["close"]
    for h in (1, H):
        expected = np.log(close.reindex(times[ends] + pd.Timedelta(hours=h)).to_numpy() / close[times[ends]].to_numpy())
        np.testing.assert_allclose(ds.y[ends, h - 1], expected, rtol=1e-9, atol=1e-12)
