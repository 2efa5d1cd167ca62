"""Two regime detectors behind one interface: `fit(candles)` on the past, `predict(candles)` per bar.

`predict` returns one row per candle: `regime` (BULL, SIDEWAYS, BEAR, or None while the trailing
window is still filling) and `confidence` in [0, 1]. The value at bar t reads bars up to t only:
the rule-based detector uses trailing indicators, the HMM the *filtered* state probability
P(state_t | bars <= t) from the forward recursion. Smoothed probabilities (forward-backward,
Viterbi, hmmlearn's `predict`/`predict_proba`) condition on later bars and are never used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coffee_ml.estimator import ParamsMixin, require_fitted
from coffee_ml.features.volatility import DEFAULT_HALFLIFE, causal_volatility

BULL, SIDEWAYS, BEAR = "BULL", "SIDEWAYS", "BEAR"
REGIMES = (BULL, SIDEWAYS, BEAR)


def trend_strength(candles: pd.DataFrame, window: int, interval: str, halflife: float = DEFAULT_HALFLIFE) -> pd.Series:
    """The log-price change over the last `window` bars in units of its random-walk spread
    (causal volatility x sqrt(window)): about N(0, 1) without a trend, whatever the asset's
    volatility, so one threshold serves calm and wild markets alike."""
    log_close = np.log(candles["close"].astype("float64"))
    vol = causal_volatility(candles["close"], interval, halflife)
    return ((log_close - log_close.shift(window)) / (vol * np.sqrt(window))).rename("trend_z")


def _margin_confidence(margin: np.ndarray) -> np.ndarray:
    """0.5 exactly at a threshold, rising toward 1 the further the bar sits past it."""
    return 0.5 + 0.5 * np.tanh(2.0 * np.clip(margin, 0.0, None))


class RegimeDetector(ParamsMixin):
    """Common interface; `interval` is the bar length of the candles (for volatility runs)."""

    def fit(self, candles: pd.DataFrame) -> "RegimeDetector":
        raise NotImplementedError

    def predict(self, candles: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError


class RuleRegimes(RegimeDetector):
    """BULL when the trend over `window` bars is up by more than `trend_z` random-walk spreads and
    ADX (trend strength regardless of sign, TA-Lib, `adx_window` bars) is above `adx_min`; BEAR
    the same downward; SIDEWAYS otherwise.

    Confidence is how far the bar sits past the thresholds: for a trend, the smaller of the two
    relative margins (|z| / trend_z - 1, ADX / adx_min - 1); for SIDEWAYS, the larger of the
    margins below them. Nothing is fitted: thresholds are parameters, and `fit` only checks them.
    """

    def __init__(
        self, window: int = 168, trend_z: float = 1.0, adx_window: int = 14, adx_min: float = 25.0, interval: str = "1h"
    ) -> None:
        self.window = window
        self.trend_z = trend_z
        self.adx_window = adx_window
        self.adx_min = adx_min
        self.interval = interval

    def fit(self, candles: pd.DataFrame | None = None) -> "RuleRegimes":
        for name in ("window", "adx_window"):
            if int(getattr(self, name)) < 2:
                raise ValueError(f"{name} must be >= 2 bars, got {getattr(self, name)}")
        for name in ("trend_z", "adx_min"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        self.fitted_ = True
        return self

    def indicators(self, candles: pd.DataFrame) -> pd.DataFrame:
        """The two trailing indicators the rules read: trend_z and adx."""
        import talib

        adx = talib.ADX(
            *(candles[c].to_numpy(np.float64) for c in ("high", "low", "close")), timeperiod=self.adx_window
        )
        return pd.DataFrame(
            {"trend_z": trend_strength(candles, self.window, self.interval), "adx": adx}, index=candles.index
        )

    def predict(self, candles: pd.DataFrame) -> pd.DataFrame:
        require_fitted(self, ("fitted_",))
        ind = self.indicators(candles)
        z, adx = ind["trend_z"].to_numpy(), ind["adx"].to_numpy()
        z_margin = np.abs(z) / self.trend_z - 1.0
        adx_margin = adx / self.adx_min - 1.0
        trending = (z_margin > 0) & (adx_margin > 0)
        regime = np.where(trending, np.where(z > 0, BULL, BEAR), SIDEWAYS).astype(object)
        margin = np.where(trending, np.minimum(z_margin, adx_margin), np.maximum(-z_margin, -adx_margin))
        confidence = _margin_confidence(margin)
        unknown = np.isnan(z) | np.isnan(adx)
        regime[unknown], confidence[unknown] = None, np.nan
        return pd.DataFrame({"regime": regime, "confidence": confidence}, index=candles.index)


def forward_filter(log_emission: np.ndarray, start: np.ndarray, transition: np.ndarray) -> np.ndarray:
    """Filtered state probabilities P(s_t | x_1..x_t) of an HMM, row by row.

    The forward recursion alpha_t = (alpha_{t-1} A) * b_t, normalised every step (so it never
    underflows); each row uses emissions up to t only. The loop over time is the recursion
    itself; each step is a K x K product.
    """
    n, k = log_emission.shape
    out = np.empty((n, k))
    emission = np.exp(log_emission - log_emission.max(axis=1, keepdims=True))
    alpha = start * emission[0]
    out[0] = alpha / alpha.sum()
    for t in range(1, n):
        alpha = (out[t - 1] @ transition) * emission[t]
        total = alpha.sum()
        out[t] = alpha / total if total > 0 else out[t - 1] @ transition
    return out


class HMMRegimes(RegimeDetector):
    """A 3-state Gaussian HMM (hmmlearn, full covariances, fitted by EM on the past) on two
    causal features per bar: the trend over the last `window` bars in random-walk units
    (`trend_strength`, as the rules use) and the log of the causal volatility, both standardised
    with the fitting span's mean and spread.

    EM starts from k-means centres and sticky transitions (0.97 on the diagonal): from
    hmmlearn's default start it stalls on hourly data in a solution whose states share one
    distribution and switch every bar. States are named deterministically after each fit: the
    highest mean trend is BULL, the lowest BEAR, the middle one SIDEWAYS, so a refit cannot swap
    their meaning. On BTCUSDT hours this gives an up-trending state of ordinary volatility, a
    calm trendless one and a down-trending volatile one, as the platform describes its regimes.
    Labels come from the forward filter (`forward_filter`) over the candles given; confidence is
    the filtered probability of the labelled state.
    """

    def __init__(
        self,
        window: int = 72,
        n_iter: int = 100,
        seed: int = 0,
        interval: str = "1h",
        vol_halflife: float = DEFAULT_HALFLIFE,
    ) -> None:
        self.window = window
        self.n_iter = n_iter
        self.seed = seed
        self.interval = interval
        self.vol_halflife = vol_halflife

    def features(self, candles: pd.DataFrame) -> pd.DataFrame:
        trend = trend_strength(candles, self.window, self.interval, self.vol_halflife)
        vol = np.log(causal_volatility(candles["close"], self.interval, self.vol_halflife))
        return pd.DataFrame({"trend_z": trend, "log_vol": vol}, index=candles.index)

    def fit(self, candles: pd.DataFrame) -> "HMMRegimes":
        from hmmlearn.hmm import GaussianHMM
        from sklearn.cluster import KMeans

        k = len(REGIMES)
        feats = self.features(candles).dropna()
        if len(feats) < 100 * k:
            raise ValueError(
                f"HMM regimes need at least {100 * k} bars past the {self.window}-bar window to fit, got {len(feats)}"
            )
        self.mean_, self.scale_ = feats.mean().to_numpy(), feats.std().to_numpy()
        x = (feats.to_numpy() - self.mean_) / self.scale_
        centres = KMeans(k, n_init=4, random_state=self.seed).fit(x[::10]).cluster_centers_
        model = GaussianHMM(
            n_components=k,
            covariance_type="full",
            n_iter=self.n_iter,
            random_state=self.seed,
            tol=1e-3,
            init_params="c",
            params="stmc",
        )
        model.means_, model.startprob_ = centres, np.full(k, 1.0 / k)
        model.transmat_ = np.full((k, k), 0.03 / (k - 1)) + np.eye(k) * (0.97 - 0.03 / (k - 1))
        model.fit(x)
        order = np.argsort(-model.means_[:, 0])  # states by mean trend, highest first
        self.startprob_ = model.startprob_[order]
        self.transmat_ = model.transmat_[np.ix_(order, order)]
        self.means_ = model.means_[order]
        self.covars_ = model.covars_[order]
        self.converged_ = bool(model.monitor_.converged)
        return self

    def log_emission(self, x: np.ndarray) -> np.ndarray:
        """log N(x | mean_k, cov_k) for every row and state."""
        out = np.empty((len(x), len(REGIMES)))
        for k in range(len(REGIMES)):
            diff = x - self.means_[k]
            chol = np.linalg.cholesky(self.covars_[k])
            sol = np.linalg.solve(chol, diff.T)
            out[:, k] = (
                -0.5 * (sol * sol).sum(axis=0) - np.log(np.diag(chol)).sum() - 0.5 * x.shape[1] * np.log(2 * np.pi)
            )
        return out

    def predict_proba(self, candles: pd.DataFrame) -> pd.DataFrame:
        """Filtered P(state | bars <= t) per bar, columns BULL, SIDEWAYS, BEAR (NaN before the window)."""
        require_fitted(self, ("transmat_",))
        feats = self.features(candles)
        ok = feats.notna().all(axis=1).to_numpy()
        probs = np.full((len(feats), len(REGIMES)), np.nan)
        if ok.any():
            x = (feats.to_numpy()[ok] - self.mean_) / self.scale_
            probs[ok] = forward_filter(self.log_emission(x), self.startprob_, self.transmat_)
        return pd.DataFrame(probs, index=candles.index, columns=list(REGIMES))

    def predict_windows(self, log_close: np.ndarray) -> np.ndarray:
        """Filtered state probabilities at the last bar of each window of log closes (n, L),
        reading that window only: the features are computed inside it (the volatility's EWMA
        starts at its first return) and the filter runs over its bars, for all windows at once.

        What a model that sees only its input window (an ensemble's regime-adaptive weights, in
        backtests and in serving alike) can know of the regime; needs L > `window` + 1."""
        require_fitted(self, ("transmat_",))
        lc = np.asarray(log_close, dtype=np.float64)
        n, length = lc.shape
        if length <= self.window + 1:
            raise ValueError(f"regime windows need more than {self.window + 1} bars, got {length}")
        r2 = np.diff(lc, axis=1) ** 2  # (n, L-1)
        decay = 0.5 ** (1.0 / self.vol_halflife)
        lags = np.arange(r2.shape[1])
        weights = np.tril(decay ** (lags[:, None] - lags[None, :]))  # EWMA weights, adjust=True as pandas
        var = (r2 @ weights.T) / weights.sum(axis=1)
        sigma = np.sqrt(np.clip(var, 1e-12, None))  # sigma[:, j] belongs to bar j + 1
        t = np.arange(self.window, length)  # bars with a full trend window inside the window
        trend = (lc[:, t] - lc[:, t - self.window]) / (sigma[:, t - 1] * np.sqrt(self.window))
        x = np.stack([trend, np.log(sigma[:, t - 1])], axis=-1)  # (n, T, 2)
        x = (x - self.mean_) / self.scale_
        log_b = self.log_emission(x.reshape(-1, 2)).reshape(n, len(t), len(REGIMES))
        b = np.exp(log_b - log_b.max(axis=2, keepdims=True))
        alpha = self.startprob_ * b[:, 0]
        alpha /= alpha.sum(axis=1, keepdims=True)
        for k in range(1, len(t)):
            alpha = (alpha @ self.transmat_) * b[:, k]
            alpha /= alpha.sum(axis=1, keepdims=True)
        return alpha

    def predict(self, candles: pd.DataFrame) -> pd.DataFrame:
        probs = self.predict_proba(candles)
        p = probs.to_numpy()
        known = ~np.isnan(p).any(axis=1)
        regime = np.full(len(p), None, dtype=object)
        regime[known] = np.asarray(REGIMES, dtype=object)[p[known].argmax(axis=1)]
        confidence = np.where(known, np.nanmax(np.where(known[:, None], p, 0.0), axis=1), np.nan)
        return pd.concat([pd.DataFrame({"regime": regime, "confidence": confidence}, index=probs.index), probs], axis=1)


METHODS = {"rules": RuleRegimes, "hmm": HMMRegimes}


def make_detector(method: str, **params) -> RegimeDetector:
    """A detector by name ("rules" or "hmm") with its parameters; unknown names fail clearly."""
    if method not in METHODS:
        raise ValueError(f"regime method must be one of {', '.join(METHODS)}, got {method!r}")
    return METHODS[method]().set_params(**params)


__all__ = [
    "BEAR",
    "BULL",
    "HMMRegimes",
    "METHODS",
    "REGIMES",
    "RegimeDetector",
    "RuleRegimes",
    "SIDEWAYS",
    "forward_filter",
    "make_detector",
    "trend_strength",
]
