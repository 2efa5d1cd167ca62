"""Market regimes: BULL / SIDEWAYS / BEAR per bar with a confidence, causal, judged by what follows.

detectors.py  `RuleRegimes` (trend in random-walk units + ADX) and `HMMRegimes` (3-state Gaussian
              HMM, filtered probabilities): `fit(candles)` on the past, `predict(candles)` per bar
history.py    `label_history` (refit per walk-forward fold), `current_regime` (the sidebar)
stats.py      time share, durations, transition matrix, forward returns and volatility per regime,
              the forward test (does what follows differ?), agreement between two methods
study.py      `study(candles, start, method=...)`: everything the regimes notebook shows
"""

from coffee_ml.regimes.detectors import (
    BEAR,
    BULL,
    METHODS,
    REGIMES,
    SIDEWAYS,
    HMMRegimes,
    RegimeDetector,
    RuleRegimes,
    forward_filter,
    make_detector,
)
from coffee_ml.regimes.history import current_regime, label_history, spell_start
from coffee_ml.regimes.stats import (
    agreement,
    forward_outcomes,
    forward_test,
    regime_stats,
    spells,
    transition_matrix,
)
from coffee_ml.regimes.study import RegimeStudy, study

__all__ = [
    "BEAR",
    "BULL",
    "HMMRegimes",
    "METHODS",
    "REGIMES",
    "RegimeDetector",
    "RegimeStudy",
    "RuleRegimes",
    "SIDEWAYS",
    "study",
    "agreement",
    "current_regime",
    "forward_filter",
    "forward_outcomes",
    "forward_test",
    "label_history",
    "make_detector",
    "regime_stats",
    "spell_start",
    "spells",
    "transition_matrix",
]
