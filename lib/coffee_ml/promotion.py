"""Choose the model or ensemble that serves a symbol, by validation score, and say why.

The candidates are the registry versions a run saved (`run_id`, which `coffee-ml run` gives its
kernels), or the newest version of every model outside a run. Each is judged by a scorer on its
own validation split, the bars its early stopping and calibration already saw, never its test
split: choosing on test would make the test score of the winner a biased estimate. Scale-free
scorers (`skill`: MAE skill against the naive forecast on the same origins) are the default,
because versions saved by different notebooks were validated on different periods. The test
score is shown next to it, for the reader, not for the choice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from coffee_ml import registry
from coffee_ml.config import RUN_ID_ENV
from coffee_ml.evaluation import get_scorer
from coffee_ml.reports.records import model_ref

_COLUMNS = [
    "ref",
    "model",
    "version",
    "run_id",
    "val_from",
    "val_to",
    "origins",
    "val_score",
    "val_dm_pvalue",
    "test_score",
]


@dataclass(frozen=True)
class Promotion:
    """The chosen version, the scorer and its validation value, the reason, and every candidate."""

    ref: registry.ModelRef
    metric: str
    score: float
    reason: str
    candidates: pd.DataFrame
    promoted: bool

    def to_record(self) -> dict[str, Any]:
        return {
            "ref": model_ref(self.ref),
            "model": self.ref.model,
            "version": self.ref.version,
            "metric": self.metric,
            "score": self.score,
            "reason": self.reason,
            "promoted": self.promoted,
        }


def candidates(
    symbol: str, interval: str, *, run_id: str | None = None, metric: str = "skill", root: Path | None = None
) -> pd.DataFrame:
    """One row per candidate version: its validation period and score, and its test score.

    `run_id`: the versions that run saved; None: the newest version of each model.
    """
    get_scorer(metric)  # an unknown name fails here with the list of scorers
    found = [
        (ref, meta)
        for ref, meta in registry.versions(symbol, interval, root)
        if run_id is None or meta.get("run_id") == run_id
    ]
    if run_id is None:  # the newest version of each model
        found = list({ref.model: (ref, meta) for ref, meta in found}.values())
    rows = []
    for ref, meta in found:
        val, test = (meta.get("metrics") or {}).get("val") or {}, (meta.get("metrics") or {}).get("test") or {}
        span = ((meta.get("data_range") or {}).get("splits") or {}).get("val") or [None, None]
        rows.append(
            {
                "ref": model_ref(ref),
                "model": ref.model,
                "version": ref.version,
                "run_id": meta.get("run_id"),
                "val_from": span[0],
                "val_to": span[-1],
                "origins": val.get("origins"),
                "val_score": val.get(metric),
                "val_dm_pvalue": val.get("dm_pvalue"),
                "test_score": test.get(metric),
            }
        )
    table = pd.DataFrame(rows, columns=_COLUMNS)
    for column in ("val_score", "val_dm_pvalue", "test_score"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def choose(table: pd.DataFrame, metric: str) -> tuple[int, str]:
    """The row with the best validation score and the reason, in words a reviewer can check."""
    scorer = get_scorer(metric)
    scored = table.dropna(subset=["val_score"])
    if scored.empty:
        raise ValueError(f"no candidate has a validation {metric}: nothing to choose from")
    loss = scored["val_score"].map(scorer.loss)
    order = loss.sort_values(kind="stable").index
    best = table.loc[order[0]]
    reason = (
        f"best validation {metric} of {len(scored)} candidate(s): {best['val_score']:.4g} on "
        f"{str(best['val_from'])[:10]}..{str(best['val_to'])[:10]}"
    )
    if len(order) > 1:
        second = table.loc[order[1]]
        reason += f"; runner-up {second['model']} {second['version']} {second['val_score']:.4g}"
    if metric == "skill" and best["val_score"] <= 0:
        reason += "; no candidate beat the naive forecast on validation, so this is the least bad, not a good model"
    elif pd.notna(best["val_dm_pvalue"]) and best["val_dm_pvalue"] >= 0.05:
        reason += f"; its edge over naive on validation is not significant (DM p = {best['val_dm_pvalue']:.2g})"
    if scored["val_from"].nunique() > 1:
        reason += "; candidates were validated on different periods"
    return int(order[0]), reason


def promote_best(
    symbol: str,
    interval: str,
    *,
    metric: str = "skill",
    run_id: str | None = None,
    promote: bool = True,
    root: Path | None = None,
) -> Promotion:
    """Choose among `candidates` by validation `metric` and promote the winner (when `promote`).

    Under `coffee-ml run`, `run_id` defaults to the run's own id, so a pipeline promotes only what
    it trained itself.
    """
    run_id = run_id or os.environ.get(RUN_ID_ENV)
    table = candidates(symbol, interval, run_id=run_id, metric=metric, root=root)
    if table.empty:
        scope = f"saved by run {run_id}" if run_id else "saved"
        raise ValueError(
            f"no {symbol} {interval} model versions {scope} in {root or registry.models_dir()}: "
            "train and save models first (02_training)"
        )
    row, reason = choose(table, metric)
    best = table.loc[row]
    ref = registry.resolve(symbol, interval, best["model"], best["version"], root)
    if promote:
        registry.promote(ref, reason=reason)
    table = table.assign(chosen=table.index == row)
    return Promotion(ref, metric, float(best["val_score"]), reason, table, promote)
