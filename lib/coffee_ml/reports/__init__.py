"""What a run tells a reviewer: headlines, numbers formatted for people, run records, reports.

    headlines.py  one call per notebook: `data_headline`, `features_headline`, `training_headline`,
                  `backtest_headline`, `regimes_headline`, `hpo_headline`,
                  `ensembles_headline`, `anomalies_headline`, `production_headline` (a `Headline`: `.text`, `.items`, rendered as HTML in notebooks)
    format.py     `table(df)`: numbers by scorer name (percentages, p-values, integers, prices),
                  coverage off nominal shaded, wide tables turned or scrolled
    records.py    `record(run_dir, "02_training", headline=..., leaderboard=...)` into metrics.json,
                  `read_records(run_dir)`
    export.py     executed notebook -> reviewer report (NN_stage.html) and full one (NN_stage.code.html)
    index.py      the run's index.html and outputs/index.html
    summary.py    the run's summary.html: headline, data coverage, leaderboard of every model, regime,
                  anomaly events, production model (written with the index)

Notebooks import this package; the renderers (export, index) are imported by the runner only.
"""

from __future__ import annotations

from coffee_ml.reports import format
from coffee_ml.reports.format import table
from coffee_ml.reports.headlines import (
    Headline,
    anomalies_headline,
    backtest_headline,
    data_headline,
    ensembles_headline,
    features_headline,
    hpo_headline,
    production_headline,
    regimes_headline,
    training_headline,
)
from coffee_ml.reports.records import data_range, display_path, model_ref, read_records, record

__all__ = [
    "Headline",
    "anomalies_headline",
    "backtest_headline",
    "data_headline",
    "data_range",
    "display_path",
    "ensembles_headline",
    "features_headline",
    "format",
    "hpo_headline",
    "model_ref",
    "production_headline",
    "read_records",
    "record",
    "regimes_headline",
    "table",
    "training_headline",
]
