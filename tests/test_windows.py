"""Windows, gaps, targets, splits and the build_dataset pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from coffee_ml.data.sample import load_sample
from coffee_ml.features import (
    CandleInputError,
    WindowDataset,
    assign_splits,
    build_dataset,
    compute_features,
    forward_log_returns,
    horizon_timestamps,
    make_loader,
    returns_to_prices,
    run_bounds,
    sliding_windows,
    split_bounds,
    valid_window_ends,
)


def hourly_index(n: int, missing: tuple[int, ...] = ()) -> pd.DatetimeIndex:
    """n bars of an hourly grid with the listed grid positions left out (gaps)."""
    keep = np.setdiff1d(np.arange(n + len(missing)), missing)
    return pd.DatetimeIndex(pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(keep, unit="h"))


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return load_sample().iloc[3000:9000]  # five gaps


def test_sliding_windows_are_views() -> None:
    X = np.arange(200.0).reshape(50, 4)
    view = sliding_windows(X, 7)
    assert view.shape == (44, 7, 4) and np.shares_memory(view, X) and view.base is not None
    np.testing.assert_array_equal(view[10], X[10:17])
    batch = view[[3, 40, 0]]
    assert batch.flags.c_contiguous
    np.testing.assert_array_equal(batch[1], X[40:47])


def test_valid_window_ends_never_bridge_a_gap() -> None:
    index = hourly_index(100, missing=(40, 41))  # bars 39 and 40 of the series are 3 hours apart
    run_start, run_end = run_bounds(index, "1h")
    L, H, ctx = 8, 3, 2
    ends = valid_window_ends(run_start, run_end, L, H, ctx)
    hours = index.as_unit("s").asi8 // 3600
    brute = [
        e
        for e in range(len(index))
        if e - L + 1 - ctx >= 0 and e + H < len(index) and (np.diff(hours[e - L + 1 - ctx : e + H + 1]) == 1).all()
    ]
    np.testing.assert_array_equal(ends, brute)
    assert 36 in ends and 37 not in ends  # row 39 is the last before the gap: 37 + H would cross it
    assert 40 + L + ctx - 2 not in ends and 40 + L + ctx - 1 in ends  # window + context start at row 40


def test_forward_returns_exact_and_nan_across_gaps() -> None:
    index = hourly_index(6, missing=(3,))
    close = pd.Series([100.0, 110.0, 121.0, 50.0, 55.0, 60.5], index=index)
    y = forward_log_returns(close, 2, "1h")
    assert list(y.columns) == ["fwd_logret_1", "fwd_logret_2"]
    expected = np.array(
        [
            [np.log(1.1), np.log(1.21)],
            [np.log(1.1), np.nan],
            [np.nan, np.nan],
            [np.log(1.1), np.log(1.21)],
            [np.log(1.1), np.nan],
            [np.nan, np.nan],
        ]
    )
    np.testing.assert_allclose(y.to_numpy(), expected, equal_nan=True)
    bridged = forward_log_returns(close, 2)  # without an interval nothing is known about gaps
    assert np.isfinite(bridged.to_numpy()[:4]).all()


def test_returns_to_prices_and_timestamps() -> None:
    last = pd.Timestamp("2024-03-01 23:00", tz="UTC")
    path = returns_to_prices(np.log([1.01, 1.02, 0.99]), 200.0, last, "1h")
    np.testing.assert_allclose(path.to_numpy(), [202.0, 204.0, 198.0])
    assert list(path.index) == list(horizon_timestamps(last, 3, "1h"))
    assert path.index[0] == pd.Timestamp("2024-03-02 00:00", tz="UTC") and path.index.freq is None
    steps = returns_to_prices(np.log([1.01, 1.01]), 100.0, last, "15m", cumulative=False)
    np.testing.assert_allclose(steps.to_numpy(), [101.0, 102.01])
    assert steps.index[-1] - last == pd.Timedelta("30min")


def test_split_bounds_and_embargo() -> None:
    bounds = split_bounds(1000, (0.7, 0.15, 0.15), embargo=20)
    assert bounds.rows == {"train": (0, 700), "val": (720, 850), "test": (870, 1000)}
    parts = assign_splits(np.arange(9, 995), bounds, window=10, horizon=5)
    assert parts["train"].max() == 694 and parts["val"].min() == 729 and parts["test"].max() == 994
    with pytest.raises(ValueError, match="three non-negative fractions"):
        split_bounds(1000, (0.8, 0.3, -0.1), 0)


def test_window_dataset_batches_match_items() -> None:
    X = np.random.default_rng(0).normal(size=(300, 5))
    y = np.random.default_rng(1).normal(size=(300, 2))
    ds = WindowDataset(X, y, np.arange(19, 290, 3), window=20)
    xb, yb = ds[[0, 5, 7]]
    assert xb.shape == (3, 20, 5) and xb.dtype == torch.float32 and yb.shape == (3, 2)
    x5, y5 = ds[5]
    np.testing.assert_array_equal(xb[1].numpy(), x5.numpy())
    np.testing.assert_allclose(x5.numpy(), X[19 + 15 - 19 : 19 + 15 + 1], rtol=1e-6)
    np.testing.assert_allclose(y5.numpy(), y[34], rtol=1e-6)
    seen = torch.cat([b[1] for b in make_loader(ds, batch_size=16, shuffle=True, seed=3)])
    assert seen.shape == (len(ds), 2)
    np.testing.assert_allclose(np.sort(seen[:, 0].numpy()), np.sort(y[ds.ends, 0].astype(np.float32)))
    with pytest.raises(ValueError, match="out of range"):
        WindowDataset(X, y, np.array([5]), window=20)


def test_build_dataset_accounting_and_api(sample: pd.DataFrame) -> None:
    """Every count in the report and every split is recomputed by brute force from the timestamps
    and the documented rules (warm-up = rows until every feature has a value; a window of L bars,
    `gap_context` = warm-up bars before it and its H target bars must all be consecutive; split
    fractions of the kept rows; embargo max(L, H) rows at the start of val and test)."""
    L, H = 60, 12
    ds = build_dataset(sample, "1h", window=L, horizon=H)
    r = ds.report
    defined = np.isfinite(compute_features(sample.iloc[:100], features=ds.feature_names).to_numpy()).all(axis=1)
    warmup = int(np.argmax(defined))  # first bar where every feature has a value
    assert warmup == 60 and defined[warmup:].all()
    n = len(sample) - warmup
    assert r.rows_in == len(sample) and r.warmup_rows == warmup and r.rows == n == len(ds.features)
    assert ds.features.index.equals(sample.index[warmup:]) and ds.targets.index.equals(ds.features.index)
    hours = sample.index.as_unit("s").asi8 // 3600
    assert r.gaps == int((np.diff(hours[warmup:]) != 1).sum()) == 5

    candidates, gap_free = 0, []
    for e in range(L - 1, n - H):  # e: window end in kept rows; o: the same bar in `sample`
        candidates += 1
        o = e + warmup
        if (np.diff(hours[o - L + 1 - warmup : o + H + 1]) == 1).all():
            gap_free.append(e)
    b1, b2, E = round(0.7 * n), round(0.85 * n), max(L, H)
    parts = {"train": (0, b1), "val": (b1 + E, b2), "test": (b2 + E, n)}
    expected = {k: [e for e in gap_free if lo <= e - L + 1 and e + H < hi] for k, (lo, hi) in parts.items()}
    assert r.split_rows == parts == {"train": (0, 4158), "val": (4218, 5049), "test": (5109, 5940)}
    for k, ends in expected.items():
        np.testing.assert_array_equal(ds.splits[k], ends, err_msg=k)
    kept = sum(len(v) for v in expected.values())
    assert (r.candidate_windows, r.windows_dropped_gap, r.windows_dropped_embargo) == (
        candidates,
        candidates - len(gap_free),
        len(gap_free) - kept,
    )
    assert r.windows_dropped_gap > 0 and r.windows_dropped_embargo > 0
    assert r.windows == {k: len(v) for k, v in expected.items()}

    assert ds.X.shape == ds.features.shape and ds.X.flags.c_contiguous
    assert "atr_14" not in ds.feature_names and ds.targets.shape == (n, H)
    assert np.isfinite(ds.y[np.concatenate(list(ds.splits.values()))]).all()
    x, y = next(iter(ds.loader("val", batch_size=32)))
    assert x.shape == (32, L, len(ds.feature_names)) and y.shape == (32, H)
    first = int(ds.splits["val"][0])
    np.testing.assert_allclose(x[0].numpy(), ds.X[first - L + 1 : first + 1], rtol=1e-6)
    np.testing.assert_allclose(y[0].numpy(), ds.y[first], rtol=1e-6)
    train_x = ds.X[:b1]  # standard scaler fitted on the train rows only
    np.testing.assert_allclose(train_x.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(train_x.std(axis=0), 1.0, rtol=1e-9)
    assert np.abs(ds.X.mean(axis=0)).max() > 1e-3  # fitted on all rows, every column would have mean 0
    origin = ds.end_times("test")[0]
    path = ds.price_path(int(ds.splits["test"][0]), ds.y[ds.splits["test"][0]])
    assert path.index[0] == origin + pd.Timedelta("1h")
    actual = sample["close"].loc[path.index]
    np.testing.assert_allclose(path.to_numpy(), actual.to_numpy(), rtol=1e-12)


def test_build_dataset_errors(sample: pd.DataFrame) -> None:
    with pytest.raises(CandleInputError, match=r"need at least \d+ rows .* got 500"):
        build_dataset(sample.iloc[:500], "1h", window=60, horizon=24)
    with pytest.raises(ValueError, match="not a multiple of 1d"):
        build_dataset(sample, "1d")
    holey = sample.iloc[:3000].drop(sample.index[2200:2700:40])  # bars missing every 40 h in val
    with pytest.raises(ValueError, match="split 'val' has no gap-free window"):
        build_dataset(holey, "1h", window=60, horizon=1)
