"""An ensemble is a forecaster: it fits, predicts a `Forecast`, calibrates, backtests, saves and serves
like any model (as Darts' EnsembleModel), combining member models by one of five strategies:

- `average`: the mean of the members' predicted returns;
- `weighted`: fixed `weights` (the platform's default: equal) or `weights="inverse_error"`, each
  member weighted by 1 / its out-of-fold MAE;
- `voting`: the direction of the majority; the point forecast is the mean of the members on that
  side. The platform's rule raises confidence by 10 points when every member agrees; here that raw
  score (calibrated confidence + 0.10 when unanimous, capped at 0.98) is then mapped through an
  isotonic fit of hit rates on validation, so the shown confidence still means what it says;
- `regime`: weights per market regime (BULL / SIDEWAYS / BEAR from a 3-state HMM fitted on the
  training closes, filtered inside each input window, so the same in backtests and in serving),
  each member weighted within a regime by 1 / its out-of-fold MAE there (the platform's "LSTM for
  trends, Hybrid for sideways", learned instead of assumed);
- `stacking`: a ridge meta-model per horizon step on the members' out-of-fold predictions.

Out-of-fold predictions come from an inner walk-forward over the training split only: the later
half of it in `inner_folds` blocks, each predicted by members fitted on the windows before the
block (with an embargo of max(window, horizon) bars), never by a member trained on that bar. The
members used to forecast are then fitted on the whole training split, and the ensemble's
intervals and confidence are calibrated on validation, out of sample for members and combiner.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from coffee_ml.ensemble.registered import RegisteredMember, is_registered, parse
from coffee_ml.features import FeatureDataset
from coffee_ml.models.base import Forecaster, contexts
from coffee_ml.models.calibration import LEVELS

STRATEGIES = ("average", "weighted", "voting", "regime", "stacking")
NEEDS_OOF = ("regime", "stacking")  # and "weighted" with inverse-error weights
VOTE_BONUS, VOTE_CAP = 0.10, 0.98


@dataclass(frozen=True)
class OutOfFold:
    """Member predictions of training windows made by members that never trained on them.

    `rows` window ends, `preds` (members, rows, H), `y` realised returns (rows, H), `log_close`
    the rows' input windows (for regimes), `seen` per row: the last row whose target any member
    that predicted it had read (training or early-stopping windows), always < row."""

    rows: np.ndarray
    preds: np.ndarray
    y: np.ndarray
    log_close: np.ndarray
    seen: np.ndarray


def _isotonic_map(raw: np.ndarray, hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a monotone map raw score -> P(hit), from equal-count bins (shrunk toward the mean)."""
    from sklearn.isotonic import IsotonicRegression

    order = np.argsort(raw, kind="stable")
    bins = np.array_split(order, max(1, min(20, len(raw) // 200)))
    x = np.array([raw[b].mean() for b in bins])
    y = np.array([(hit[b].sum() + 25 * hit.mean()) / (len(b) + 25) for b in bins])
    fitted = IsotonicRegression(y_min=0.02, y_max=0.98, out_of_bounds="clip").fit(x, y).predict(x)
    return x, fitted


class EnsembleForecaster(Forecaster):
    """`members`: model names from the registry of specs (`member_params[name]` overrides their
    defaults; `max_epochs`, `seed`, `device` apply to the neural ones) or saved versions of
    `symbol`, "registry:<model>[@<version>]" (see registered.py: loaded, never refitted, and
    refused where they were trained on bars the ensemble validates or tests on). See the module doc for the
    strategies, `weights`, `inner_folds`, `ridge_alpha`, `regime_window` (bars of trend inside each
    input window) and `regime_bars` (the training bars the regime HMM is fitted on: the last year)."""

    model_type = "ensemble"
    _fitted = (*Forecaster._fitted, "members_")

    def __init__(
        self,
        members: tuple[str, ...] | list[str] = ("lstm_fast", "hybrid"),
        strategy: str = "average",
        weights: list[float] | str | None = None,
        member_params: dict[str, dict[str, Any]] | None = None,
        inner_folds: int = 2,
        ridge_alpha: float = 1.0,
        regime_window: int = 24,
        regime_bars: int = 8760,
        max_epochs: int | None = None,
        seed: int = 0,
        device: str = "auto",
        progress: bool = False,
        symbol: str | None = None,
    ) -> None:
        self.members = members
        self.strategy = strategy
        self.weights = weights
        self.member_params = member_params
        self.inner_folds = inner_folds
        self.ridge_alpha = ridge_alpha
        self.regime_window = regime_window
        self.regime_bars = regime_bars
        self.max_epochs = max_epochs
        self.seed = seed
        self.device = device
        self.progress = progress
        self.symbol = symbol

    # ------------------------------------------------------------------ members
    def _check(self) -> None:
        from coffee_ml.models.specs import get_spec

        if self.strategy not in STRATEGIES:
            raise ValueError(f"ensemble strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if len(self.members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {list(self.members)}")
        for name in self.members:
            if is_registered(name):
                parse(name)
                if not self.symbol:
                    raise ValueError(f"member {name!r} is a registry version: give the ensemble's symbol")
            elif get_spec(name).estimator is type(self):
                raise ValueError("an ensemble cannot be a member of an ensemble")
        unknown = set(self.member_params or {}) - set(self.members)
        if unknown:
            raise ValueError(f"member_params for {', '.join(sorted(unknown))}, which are not members")
        if isinstance(self.weights, str) and self.weights != "inverse_error":
            raise ValueError(f"weights must be a list, 'inverse_error' or None, got {self.weights!r}")
        if isinstance(self.weights, (list, tuple)):
            w = np.asarray(self.weights, dtype=float)
            if len(w) != len(self.members) or (w < 0).any() or w.sum() <= 0:
                raise ValueError(
                    f"weights must be {len(self.members)} non-negative numbers with a positive sum, got {self.weights}"
                )

    @property
    def window(self) -> int:  # type: ignore[override]
        from coffee_ml.models.specs import get_spec

        if hasattr(self, "members_"):
            return max(int(m.window) for m in self.members_)
        return max(
            (
                int(get_spec(m).build(**(self.member_params or {}).get(m, {})).window)
                for m in self.members
                if not is_registered(m)
            ),
            default=1,
        )  # a registered member checks its own window

    def _new_members(self) -> list[Forecaster]:
        from coffee_ml.models.specs import build_model

        return [
            RegisteredMember(m, self.symbol or "")
            if is_registered(m)
            else build_model(
                m,
                (self.member_params or {}).get(m),
                max_epochs=self.max_epochs,
                seed=self.seed,
                device=self.device,
                progress=self.progress,
            )
            for m in self.members
        ]

    @property
    def needs_oof(self) -> bool:
        return self.strategy in NEEDS_OOF or (self.strategy == "weighted" and self.weights == "inverse_error")

    def out_of_fold(self, ds: FeatureDataset) -> OutOfFold:
        """Inner walk-forward over the training split (see the module doc)."""
        train = np.sort(ds.splits["train"])
        embargo = max(ds.window, ds.horizon)
        half = len(train) // 2
        blocks = np.array_split(train[half:], self.inner_folds)
        parts = []
        for block in blocks:
            before = train[train < block[0] - embargo]
            cut = int(len(before) * 0.85)
            inner_train, inner_val = before[:cut], before[cut:]
            inner_val = inner_val[inner_val > inner_train[-1] + embargo] if len(inner_train) else inner_val
            if len(inner_train) < 100 or len(inner_val) < 20:
                raise ValueError(
                    f"too few training windows for {self.inner_folds} inner folds "
                    f"({len(inner_train)} train, {len(inner_val)} val before row {block[0]}): "
                    "use more history or fewer inner_folds"
                )
            inner = self._inner_dataset(ds, inner_train, inner_val, block)
            members = [m.fit(inner) for m in self._new_members()]
            preds = np.stack([m._returns_at(inner, block) for m in members])
            seen = max(inner_train[-1], inner_val[-1]) + ds.horizon
            parts.append((block, preds, np.full(len(block), seen)))
        rows = np.concatenate([p[0] for p in parts])
        return OutOfFold(
            rows,
            np.concatenate([p[1] for p in parts], axis=1),
            ds.y[rows],
            contexts(ds, rows)[1],
            np.concatenate([p[2] for p in parts]),
        )

    @staticmethod
    def _inner_dataset(ds: FeatureDataset, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> FeatureDataset:
        """The dataset with inner splits and a scaler refitted on the inner training rows only."""
        lo, hi = int(train[0]) - (ds.window - 1), int(train[-1]) + 1
        scaler = ds.scaler.clone().fit(ds.features.iloc[max(lo, 0) : hi])
        return replace(
            ds, X=scaler.transform(ds.features), scaler=scaler, splits={"train": train, "val": val, "test": test}
        )

    # ------------------------------------------------------------------ fit
    def _fit(self, ds: FeatureDataset) -> None:
        self._check()
        self.oof_ = self.out_of_fold(ds) if self.needs_oof else None
        self.members_ = [m.fit(ds) for m in self._new_members()]
        self._fit_strategy(ds)

    def _fit_strategy(self, ds: FeatureDataset) -> None:
        """The combiner from the out-of-fold predictions (members are already fitted)."""
        m = len(self.members)
        self.weights_ = np.full(m, 1.0 / m)
        if isinstance(self.weights, (list, tuple)):
            w = np.asarray(self.weights, dtype=float)
            self.weights_ = w / w.sum()
        elif self.needs_oof and self.strategy == "weighted":
            self.weights_ = self._inverse_error(self.oof_.preds, self.oof_.y)
        if self.strategy == "regime":
            from coffee_ml.regimes import REGIMES, HMMRegimes

            end = int(np.max(ds.splits["train"])) + 1  # the regime model reads the last year of training bars
            closes = ds.close.iloc[max(0, end - self.regime_bars) : end].to_frame()
            self.regimes_ = HMMRegimes(
                window=self.regime_window, interval=ds.interval, vol_halflife=ds.vol_halflife
            ).fit(closes)
            labels = self.regimes_.predict_windows(self.oof_.log_close).argmax(axis=1)
            self.regime_weights_ = np.stack(
                [
                    self._inverse_error(self.oof_.preds[:, labels == k], self.oof_.y[labels == k])
                    if (labels == k).sum() >= 50
                    else self._inverse_error(self.oof_.preds, self.oof_.y)
                    for k in range(len(REGIMES))
                ]
            )
            self.regime_counts_ = np.bincount(labels, minlength=len(REGIMES))
        if self.strategy == "stacking":
            from sklearn.linear_model import Ridge

            coefs, intercepts = [], []
            for h in range(ds.horizon):
                fit = Ridge(alpha=self.ridge_alpha).fit(
                    self.oof_.preds[:, :, h].T / self._scale(h), self.oof_.y[:, h] / self._scale(h)
                )
                coefs.append(fit.coef_)
                intercepts.append(fit.intercept_ * self._scale(h))
            self.stack_coef_, self.stack_intercept_ = np.asarray(coefs), np.asarray(intercepts)

    def calibrate(
        self, ds: FeatureDataset, split: str = "val", levels: tuple[float, ...] = LEVELS
    ) -> "EnsembleForecaster":
        """Intervals and confidence as any model's; a vote then maps its raw score (which starts
        from that confidence) to hit rates on the same split."""
        super().calibrate(ds, split, levels)
        if self.strategy == "voting":
            self.vote_map_ = self._fit_vote_map(ds, split)
        return self

    def _scale(self, h: int) -> float:
        """Ridge on returns in units of their out-of-fold spread, so one alpha fits every step."""
        return float(np.std(self.oof_.y[:, h])) or 1.0

    @staticmethod
    def _inverse_error(preds: np.ndarray, y: np.ndarray) -> np.ndarray:
        mae = np.abs(preds - y[None]).mean(axis=(1, 2))
        w = 1.0 / np.maximum(mae, 1e-12)
        return w / w.sum()

    # ------------------------------------------------------------------ predict
    def _member_returns(self, X: np.ndarray, log_close: np.ndarray) -> np.ndarray:
        """(members, n, H): each member on the last bars of the windows it uses."""
        return np.stack([m._predict_returns(X, log_close) for m in self.members_])

    def _combine(self, P: np.ndarray, log_close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(returns (n, H), unanimous (n, H)) from member returns (members, n, H)."""
        signs = np.sign(P)
        unanimous = np.abs(signs.sum(axis=0)) == len(P)
        if self.strategy in ("average", "weighted"):
            return np.tensordot(self.weights_, P, axes=1), unanimous
        if self.strategy == "voting":
            majority = np.sign(signs.sum(axis=0))
            side = signs == majority[None]
            total = np.where(side, P, 0.0).sum(axis=0)
            count = side.sum(axis=0)
            return np.where(count > 0, total / np.maximum(count, 1), 0.0), unanimous
        if self.strategy == "regime":
            labels = self.regimes_.predict_windows(log_close).argmax(axis=1)
            w = self.regime_weights_[labels]  # (n, members)
            return np.einsum("nm,mnh->nh", w, P), unanimous
        return np.einsum("hm,mnh->nh", self.stack_coef_, P) + self.stack_intercept_, unanimous

    def _predict_returns(self, X: np.ndarray, log_close: np.ndarray) -> np.ndarray:
        return self._combine(self._member_returns(X, log_close), log_close)[0]

    def _fit_vote_map(self, ds: FeatureDataset, split: str) -> tuple[np.ndarray, np.ndarray]:
        rows = ds.splits[split]
        X, lc = contexts(ds, rows)
        returns, unanimous = self._combine(self._member_returns(X, lc), lc)
        raw = self._raw_vote(returns, ds.volatility.to_numpy()[rows], unanimous)
        called = returns != 0  # a tied vote calls no direction: nothing to be right about
        hit = np.sign(returns) == np.sign(ds.y[rows])
        return _isotonic_map(raw[called], hit[called].astype(float))

    def _raw_vote(self, returns: np.ndarray, scale: np.ndarray, unanimous: np.ndarray) -> np.ndarray:
        """The platform's rule: calibrated confidence, +10 points when every member agrees, capped."""
        return np.minimum(self.calibration_.confidence(returns, scale) + VOTE_BONUS * unanimous, VOTE_CAP)

    def forecast_windows(self, X, log_close, origins, last_close, scale, interval, actual=None, name=None):
        P = self._member_returns(X, log_close)
        returns, unanimous = self._combine(P, log_close)
        f = self.forecast(returns, origins, last_close, scale, interval, actual=actual, name=name)
        if self.strategy != "voting":
            return f
        knots_x, knots_y = self.vote_map_
        raw = self._raw_vote(returns, np.asarray(scale, dtype=float), unanimous)
        return replace(f, confidence=np.where(returns != 0, np.interp(raw, knots_x, knots_y), f.confidence))

    # ------------------------------------------------------------------ state for the registry
    def tensors(self) -> dict:
        return {f"member{k}.{name}": t for k, m in enumerate(self.members_) for name, t in m.tensors().items()}

    def fitted_state(self) -> dict[str, Any]:
        state = super().fitted_state() | {
            "members": [
                {"class": type(m).__name__, "params": m.get_params(), "state": m.fitted_state()} for m in self.members_
            ],
            "weights": self.weights_.tolist(),
        }
        if self.strategy == "regime":
            r = self.regimes_
            state["regimes"] = {
                "params": r.get_params(),
                "mean": r.mean_.tolist(),
                "scale": r.scale_.tolist(),
                "startprob": r.startprob_.tolist(),
                "transmat": r.transmat_.tolist(),
                "means": r.means_.tolist(),
                "covars": r.covars_.tolist(),
                "weights": self.regime_weights_.tolist(),
                "counts": self.regime_counts_.tolist(),
            }
        if self.strategy == "stacking":
            state["stacking"] = {"coef": self.stack_coef_.tolist(), "intercept": self.stack_intercept_.tolist()}
        if self.strategy == "voting":
            state["vote_map"] = [self.vote_map_[0].tolist(), self.vote_map_[1].tolist()]
        return state

    def restore(self, state: dict[str, Any], tensors: dict) -> "EnsembleForecaster":
        from coffee_ml.models.specs import SPECS
        from coffee_ml.regimes import HMMRegimes

        super().restore(state, tensors)
        classes = {spec.estimator.__name__: spec.estimator for spec in SPECS.values()} | {
            RegisteredMember.__name__: RegisteredMember
        }
        self.members_ = []
        for k, entry in enumerate(state["members"]):
            prefix = f"member{k}."
            own = {name[len(prefix) :]: t for name, t in tensors.items() if name.startswith(prefix)}
            member = classes[entry["class"]](**entry["params"])
            if "device" in entry["params"]:
                member.device = self.device
            self.members_.append(member.restore(entry["state"], own))
        self.weights_ = np.asarray(state["weights"])
        if "regimes" in state:
            g = state["regimes"]
            r = HMMRegimes(**g["params"])
            r.mean_, r.scale_, r.startprob_, r.transmat_ = (
                np.asarray(g[k]) for k in ("mean", "scale", "startprob", "transmat")
            )
            r.means_, r.covars_ = np.asarray(g["means"]), np.asarray(g["covars"])
            self.regimes_, self.regime_weights_ = r, np.asarray(g["weights"])
            self.regime_counts_ = np.asarray(g["counts"])
        if "stacking" in state:
            self.stack_coef_ = np.asarray(state["stacking"]["coef"])
            self.stack_intercept_ = np.asarray(state["stacking"]["intercept"])
        if "vote_map" in state:
            self.vote_map_ = (np.asarray(state["vote_map"][0]), np.asarray(state["vote_map"][1]))
        return self
