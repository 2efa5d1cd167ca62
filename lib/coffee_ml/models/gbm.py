"""Gradient boosting (LightGBM) on tabular inputs: the last bar's features plus returns from the window.

Tabular boosting is what strong quant baselines use (Qlib's flagship model is LightGBM): it needs
no sequence model or epochs, fits on a couple of CPU cores, and can pick up non-linear
interactions between indicators.

Inputs at origin t come only from the window ending at t (the `contexts` every model uses), so
the model reads nothing past its origin and serving needs nothing new:

- the last bar's scaled features (F columns; trees ignore the scaling, but serving hands over
  scaled windows, so the model is fitted on the same values it will see);
- one-bar log returns of the last `lags` bars (win_ret_lag_1 is the bar ending at t);
- cumulative log returns over each of `spans` bars (momentum at several lengths);
- the standard deviation of the window's one-bar log returns (realised volatility, so splits on
  a return can be read relative to the current regime).

One booster per horizon step, not one shared model with the horizon as a feature: the h-step
target's scale grows like sqrt(h), so a shared tree would first spend its splits separating
horizons; each step gets its own early-stopping point (short horizons overfit at a different
speed than long ones: on the BTCUSDT sample the best rounds ranged from about 10 to over 100;
`best_iteration_` records each); and a shared model fits H times the rows per tree (1.2M rows
for 50k origins at H=24), while the H boosters here share one binned train matrix and only swap
labels.

The loss is L1 by default (`objective`, also the early-stopping metric on val): hourly returns
are heavy-tailed, and under L2 a few large moves drive both the fit and the stopping metric, so on
the bundled BTCUSDT validation split (2023-06..2024-09; chosen there, never on test) L2 boosters
stopped after 1-9 rounds near the training mean and called direction no better than the majority
sign, while L1 ones ran 10-110 rounds and lowered the validation MAE. The L1 minimiser, the
conditional median, is also what the verdict's MAE against naive rewards.

Fitting sees the train split only; early stopping watches the loss on the val split (as the
neural models do); the test split is never touched. Intervals and confidence come from the shared
out-of-sample calibration (`Forecaster.calibrate`, on val), like every other model.

Deterministic for a given `seed` and `n_jobs` (LightGBM's `deterministic`, `force_row_wise`,
bagging and feature sampling seeded). Saved without pickle: each booster is LightGBM's own text
model format (`Booster.model_to_string`, trees up to the best iteration, thresholds and leaf
values at full precision, so a reload predicts bit-identically), stored as strings in the JSON
fitted state the registry writes to `metadata.json` (about 1.6 MB for ~900 trees).

LightGBM is imported only when a gbm model is fitted or restored: importing it pulls in
scikit-learn and scipy (~0.7 s), which other models' serving should not pay for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from coffee_ml.features import FeatureDataset
from coffee_ml.models.base import Forecaster

if TYPE_CHECKING:
    import lightgbm as lgb

OBJECTIVES = ("l1", "l2")  # the loss fitted and the metric early stopping watches on val


class GBMForecaster(Forecaster):
    """LightGBM, one booster per horizon step, on last-bar features plus lagged window returns.

    Parameters map to LightGBM's: `n_estimators` is the cap on boosting rounds (early stopping
    after `early_stopping_rounds` rounds without a better val loss usually stops well before),
    `learning_rate`, `num_leaves`, `min_data_in_leaf`, `feature_fraction`, `bagging_fraction`
    (with bagging every round when < 1), `lambda_l2`, `objective` ("l1" or "l2": the loss and the
    early-stopping metric); `n_jobs` threads; `seed`.
    `window`, `lags` and `spans` say which bars the return inputs read.
    """

    model_type = "gbm"
    _fitted = (*Forecaster._fitted, "boosters_")

    def __init__(
        self,
        window: int = 24,
        lags: int = 6,
        spans: tuple[int, ...] = (3, 6, 12, 23),
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_data_in_leaf: int = 50,
        feature_fraction: float = 0.8,
        bagging_fraction: float = 1.0,
        lambda_l2: float = 0.0,
        objective: str = "l1",
        early_stopping_rounds: int = 20,
        n_jobs: int = 2,
        seed: int = 0,
    ) -> None:
        self.window = window
        self.lags = lags
        self.spans = spans
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.feature_fraction = feature_fraction
        self.bagging_fraction = bagging_fraction
        self.lambda_l2 = lambda_l2
        self.objective = objective
        self.early_stopping_rounds = early_stopping_rounds
        self.n_jobs = n_jobs
        self.seed = seed

    # ------------------------------------------------------------------ inputs
    def _check(self) -> None:
        """Return inputs must fit inside the window (a span of s bars reads s + 1 closes)."""
        if self.window < 2:
            raise ValueError(f"gbm needs window >= 2, got {self.window}")
        if not 0 <= self.lags <= self.window - 1:
            raise ValueError(f"gbm lags must be in [0, window - 1 = {self.window - 1}], got {self.lags}")
        bad = [s for s in self.spans if not 1 <= s <= self.window - 1]
        if bad:
            raise ValueError(f"gbm spans must be in [1, window - 1 = {self.window - 1}], got {bad}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"gbm objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.n_estimators < 1 or self.early_stopping_rounds < 1:
            raise ValueError(
                "gbm n_estimators and early_stopping_rounds must be >= 1, got "
                f"{self.n_estimators} and {self.early_stopping_rounds}"
            )

    def _input_names(self, feature_names: list[str]) -> list[str]:
        """Window inputs carry a `win_` prefix: the feature registry has its own `ret_3` etc."""
        return [
            *feature_names,
            *(f"win_ret_lag_{k}" for k in range(1, self.lags + 1)),
            *(f"win_ret_{s}" for s in self.spans),
            "win_ret_std",
        ]

    def _tabular(self, last: np.ndarray, log_close: np.ndarray) -> np.ndarray:
        """(n, F + lags + len(spans) + 1) inputs from the (n, F) last-bar features and (n, L) log
        closes of each window; only the last `window` closes are read."""
        lc = log_close[:, -self.window :]
        steps = np.diff(lc, axis=1)  # (n, window - 1) one-bar log returns, oldest first
        lagged = steps[:, ::-1][:, : self.lags]  # newest first: win_ret_lag_1 is the bar ending at t
        spans = (
            np.stack([lc[:, -1] - lc[:, -1 - s] for s in self.spans], axis=1) if self.spans else np.empty((len(lc), 0))
        )
        return np.ascontiguousarray(np.hstack([last, lagged, spans, steps.std(axis=1)[:, None]]))

    def _inputs_at(self, ds: FeatureDataset, rows: np.ndarray) -> np.ndarray:
        """The inputs of the windows ending at `rows`, equal to `_tabular` on `contexts` but without
        gathering whole feature windows (50k windows x 60 bars x 58 features would be 1.4 GB)."""
        rows = np.asarray(rows, dtype=np.int64)
        log_close = sliding_window_view(np.log(ds.close.to_numpy(dtype=np.float64)), ds.window)[rows - (ds.window - 1)]
        return self._tabular(ds.X[rows], log_close)

    def _lgb_params(self) -> dict[str, Any]:
        params = {
            "objective": self.objective,
            "metric": self.objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.n_jobs,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        if self.bagging_fraction < 1.0:
            params |= {"bagging_fraction": self.bagging_fraction, "bagging_freq": 1}
        return params

    # ------------------------------------------------------------------ fit / predict
    def _fit(self, ds: FeatureDataset) -> None:
        """One booster per step on train rows, each stopped early on val rows; test is never read."""
        import lightgbm as lgb

        self._check()
        train, val = ds.splits["train"], ds.splits["val"]
        if len(val) == 0:
            raise ValueError("gbm stops early on the validation split, which is empty")
        names = self._input_names(ds.feature_names)
        X_train, X_val = self._inputs_at(ds, train), self._inputs_at(ds, val)
        y_train, y_val = ds.y[train], ds.y[val]
        params = self._lgb_params()
        # The inputs are binned once; each step only swaps the labels.
        train_set = lgb.Dataset(
            X_train, label=y_train[:, 0], feature_name=names, params=params, free_raw_data=False
        ).construct()
        val_set = lgb.Dataset(X_val, label=y_val[:, 0], reference=train_set, free_raw_data=False).construct()
        boosters, best = [], []
        for h in range(ds.horizon):
            if not (np.isfinite(y_train[:, h]).all() and np.isfinite(y_val[:, h]).all()):
                raise ValueError(f"non-finite h={h + 1} targets in the train or val split")
            train_set.set_label(y_train[:, h])
            val_set.set_label(y_val[:, h])
            booster = lgb.train(
                params,
                train_set,
                num_boost_round=self.n_estimators,
                valid_sets=[val_set],
                valid_names=["val"],
                callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            )
            # keep only the trees up to the best round, so predict and the saved text agree
            best.append(int(booster.best_iteration) or booster.current_iteration())
            boosters.append(lgb.Booster(model_str=booster.model_to_string(num_iteration=best[-1])))
        self.boosters_: list[lgb.Booster] = boosters
        self.best_iteration_ = np.asarray(best, dtype=int)
        self.input_names_ = names

    def _returns_at(self, ds: FeatureDataset, rows: np.ndarray) -> np.ndarray:
        return self._predict_inputs(self._inputs_at(ds, rows))

    def _predict_inputs(self, inputs: np.ndarray) -> np.ndarray:
        return np.column_stack([b.predict(inputs, num_threads=self.n_jobs) for b in self.boosters_])

    def _predict_returns(self, X: np.ndarray, log_close: np.ndarray) -> np.ndarray:
        return self._predict_inputs(self._tabular(X[:, -1, :], log_close))

    # ------------------------------------------------------------------ state for the registry
    def fitted_state(self) -> dict[str, Any]:
        """LightGBM's text model per step (no pickle), inside the JSON fitted state."""
        return super().fitted_state() | {
            "boosters": [b.model_to_string() for b in self.boosters_],
            "best_iteration": self.best_iteration_.tolist(),
            "input_names": list(self.input_names_),
        }

    def restore(self, state: dict[str, Any], tensors: dict) -> "GBMForecaster":
        import lightgbm as lgb

        super().restore(state, tensors)
        self.boosters_ = [lgb.Booster(model_str=s) for s in state["boosters"]]
        self.best_iteration_ = np.asarray(state["best_iteration"], dtype=int)
        self.input_names_ = list(state["input_names"])
        return self
