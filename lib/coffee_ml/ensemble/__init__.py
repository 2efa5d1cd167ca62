"""Ensembles: average, weighted, voting, regime-adaptive and stacked combinations of member models.

forecaster.py  `EnsembleForecaster`: a Forecaster like any other (fit, predict, calibrate,
               walk-forward, registry, serving); out-of-fold member predictions for the combiners
registered.py  saved registry versions as members, refused where they would look ahead
comparison.py  `compare(...)`: members and every strategy on identical walk-forward folds, the
               members fitted once per fold and shared by all strategies
"""

import coffee_ml.models  # noqa: F401  first: its specs list the ensemble, whose module reads models.base
from coffee_ml.ensemble.forecaster import STRATEGIES, EnsembleForecaster, OutOfFold


def __getattr__(name: str):
    """comparison.py reads the backtest engine, which reads the model specs, which hold the
    ensemble: it is loaded on first use, not with the package."""
    if name in ("Comparison", "compare", "gains", "regime_weights", "run_comparison"):
        from coffee_ml.ensemble import comparison as module

        return getattr(module, name)
    raise AttributeError(name)


__all__ = [
    "STRATEGIES",
    "Comparison",
    "EnsembleForecaster",
    "OutOfFold",
    "compare",
    "gains",
    "regime_weights",
    "run_comparison",
]
