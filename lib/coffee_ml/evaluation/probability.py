"""Is the confidence a probability? Brier score, skill against the base rate, reliability.

The event is "the predicted direction is right", over forecasts that take a side. The reference
forecast is the base rate the calibrator knew at the origin (`Forecast.base_rate`): Brier skill
> 0 means the confidence's variation with the predicted move carried information out of
sample; < 0 means it was worse than quoting the base rate every time. The reliability table
bins forecasts by confidence and shows the hit rate in each bin with a Wilson interval on
effective counts: a calibrated model's points sit on the diagonal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coffee_ml.evaluation.significance import wilson_interval
from coffee_ml.forecast import Forecast


def _events(f: Forecast) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    called = f.returns != 0
    hit = (np.sign(f.returns) == np.sign(f.actual))[called].astype(float)
    return f.confidence[called], hit, f.base_rate[called]


def probability_scores(f: Forecast) -> dict[str, float]:
    conf, hit, base = _events(f)
    if len(hit) == 0:
        return {
            "brier": float("nan"),
            "brier_ref": float("nan"),
            "brier_skill": float("nan"),
            "confidence_mean": float("nan"),
            "hit_rate": float("nan"),
        }
    bs, ref = float(np.mean((conf - hit) ** 2)), float(np.mean((base - hit) ** 2))
    return {
        "brier": bs,
        "brier_ref": ref,
        "brier_skill": 1 - bs / ref if ref > 0 else float("nan"),
        "confidence_mean": float(conf.mean()),
        "hit_rate": float(hit.mean()),
    }


def reliability(f: Forecast, bins: int = 10, strategy: str = "quantile") -> pd.DataFrame:
    """Per confidence bin: mean confidence, observed hit rate with 95% Wilson CI, counts.

    "quantile" bins hold equal numbers of forecasts (confidences of a model without skill sit in
    a narrow band around the base rate, which equal-width bins over [0, 1] would lump into one or
    two points); "uniform" bins split [0, 1] evenly."""
    conf, hit, _ = _events(f)
    overlap = f.horizon * f.returns.shape[1]
    if strategy == "quantile":
        inner = np.quantile(conf, np.linspace(0, 1, bins + 1)[1:-1]) if len(conf) else []
        edges = np.unique(np.r_[0.0, inner, 1.0])
    elif strategy == "uniform":
        edges = np.linspace(0, 1, bins + 1)
    else:
        raise ValueError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    bins = len(edges) - 1
    b = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    count = np.bincount(b, minlength=bins)
    hits = np.bincount(b, weights=hit, minlength=bins)
    conf_sum = np.bincount(b, weights=conf, minlength=bins)
    used = count > 0
    ci = [wilson_interval(h / overlap, c / overlap) for h, c in zip(hits[used], count[used])]
    return pd.DataFrame(
        {
            "bin_lo": edges[:-1][used],
            "bin_hi": edges[1:][used],
            "confidence": conf_sum[used] / count[used],
            "hit_rate": hits[used] / count[used],
            "hit_lo": [c[0] for c in ci],
            "hit_hi": [c[1] for c in ci],
            "n": count[used],
            "n_eff": count[used] / overlap,
        }
    )
