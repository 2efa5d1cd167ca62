"""Features, targets, scaling, windows and the dataset pipeline.

Typical use::

    from coffee_ml.features import build_dataset
    ds = build_dataset(candles, "1h", groups=["price", "trend"], window=60, horizon=24)
    for x, y in ds.loader("train"):  # x: (256, 60, n_features) float32, y: (256, 24)
        ...

`FEATURES.describe()` lists every feature with its group, description and look-back.
"""

from coffee_ml.features.gaps import count_gaps, run_bounds
from coffee_ml.features.indicators import (
    CandleInputError,
    FeatureSelection,
    check_candles,
    compute_features,
    compute_selected,
    select_features,
)
from coffee_ml.features.pipeline import (
    DatasetReport,
    FeatureDataset,
    FeaturePanel,
    build_dataset,
    feature_panel,
    rows_needed,
)
from coffee_ml.features.registry import GROUPS, FeatureRegistry, FeatureSpec
from coffee_ml.features.registry import REGISTRY as FEATURES
from coffee_ml.features.scaling import FeatureScaler
from coffee_ml.features.targets import (
    forward_log_returns,
    horizon_timestamps,
    returns_to_prices,
    target_names,
)
from coffee_ml.features.windows import (
    SPLIT_NAMES,
    SplitBounds,
    assign_splits,
    sliding_windows,
    split_bounds,
    valid_window_ends,
)

__all__ = [
    "FEATURES",
    "GROUPS",
    "SPLIT_NAMES",
    "CandleInputError",
    "DatasetReport",
    "FeatureDataset",
    "FeatureRegistry",
    "FeatureScaler",
    "FeaturePanel",
    "FeatureSelection",
    "FeatureSpec",
    "SplitBounds",
    "WindowDataset",
    "assign_splits",
    "build_dataset",
    "check_candles",
    "compute_features",
    "feature_panel",
    "compute_selected",
    "count_gaps",
    "forward_log_returns",
    "horizon_timestamps",
    "make_loader",
    "returns_to_prices",
    "rows_needed",
    "run_bounds",
    "select_features",
    "sliding_windows",
    "split_bounds",
    "target_names",
    "valid_window_ends",
]


def __getattr__(name: str) -> object:
    """Load the torch-dependent names on first use, so feature work does not import torch."""
    if name in ("WindowDataset", "make_loader"):
        from coffee_ml.features import torch_data

        return getattr(torch_data, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
