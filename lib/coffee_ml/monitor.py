"""Production monitoring: is the model serving a symbol still as good as when it was saved?

`monitor(symbol, interval)` replays the production model (`LoadedModel.predict_history`: the
forecasts `coffee-ml predict` would have made, bar by bar, without look-ahead) at every bar after
the last one its training and validation read, up to the newest stored bar whose horizon has been
realised, and scores them with the evaluation layer's scorers next to their baselines: MAE skill
vs the naive forecast with its Diebold-Mariano p-value, direction accuracy with its 95% CI vs the
majority sign, interval coverage vs the nominal levels, Brier skill vs the base rate. A rolling
frame shows the same over time, and a rule (see `monitor`) says when the model has degraded: the
signal to retrain. `coffee-ml models monitor` prints it and exits 3 when degraded, for cron jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coffee_ml import evaluation, registry
from coffee_ml.data.schema import interval_timedelta
from coffee_ml.forecast import Forecast, level_tag

DEFAULT_WINDOW = pd.Timedelta(days=30)
THRESHOLD = 0.02  # MAE skill points below the save-time skill (or below 0) the model may lose
COVERAGE_TOLERANCE = 0.05  # coverage points below nominal an interval may lose
ALPHA = 0.05  # family-wise: split over the rule's tests (Bonferroni)


def _names(levels: tuple[float, ...]) -> list[str]:
    return [
        "mae",
        "naive_mae",
        "skill",
        "dm_stat",
        "dm_pvalue",
        "dir_share",
        "dir_acc",
        "dir_acc_lo",
        "dir_acc_hi",
        "dir_base_called",
        "dir_vs_base_pvalue",
        "brier_skill",
        *(f"coverage_{level_tag(lv)}" for lv in levels),
        "origins",
    ]


@dataclass(frozen=True)
class MonitorReport:
    """What `monitor` found. `summary`: the evaluation scores of every realised forecast since
    training; `latest`: the same over the last `window` of them (what the rule judges);
    `reference`: the version's save-time scores on `reference_split`; `rolling`: scores per
    window ending at each origin; `forecast`: the realised forecasts scored."""

    ref: registry.ModelRef
    trained_through: pd.Timestamp
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    window: int
    threshold: float
    floor: float
    coverage_tolerance: float
    status: str
    reasons: list[str]
    verdict: str
    summary: pd.Series
    latest: pd.Series
    reference: pd.Series
    reference_split: str
    rolling: pd.DataFrame
    forecast: Forecast

    @property
    def degraded(self) -> bool:
        return self.status == "degraded"

    def table(self) -> pd.DataFrame:
        """The overall scores next to their baselines (naive MAE, no skill, the majority sign, the
        nominal coverage), the latest window and the save-time scores."""
        names = [n for n in self.summary.index if n not in ("dm_stat", "naive_mae")]
        baseline = {
            "mae": self.summary["naive_mae"],
            "skill": 0.0,
            "dir_acc": self.summary["dir_base_called"],
            "brier_skill": 0.0,
        } | {n: float(n.split("_")[1]) / 100 for n in names if n.startswith("coverage_")}
        return pd.DataFrame(
            {
                "since_training": self.summary[names],
                "baseline": pd.Series(baseline),
                "latest_window": self.latest[names],
                f"at_save_{self.reference_split}": self.reference.reindex(names),
            }
        ).loc[names]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the verdict, the period, the rule's settings and every score table."""

        def clean(series: pd.Series) -> dict[str, float | None]:
            return {k: (float(v) if np.isfinite(v) else None) for k, v in series.items()}

        def iso(t: pd.Timestamp | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "symbol": self.ref.symbol,
            "interval": self.ref.interval,
            "model": self.ref.model,
            "version": self.ref.version,
            "status": self.status,
            "degraded": self.degraded,
            "verdict": self.verdict,
            "reasons": self.reasons,
            "trained_through": iso(self.trained_through),
            "start": iso(self.start),
            "end": iso(self.end),
            "window": self.window,
            "threshold": self.threshold,
            "floor": self.floor,
            "coverage_tolerance": self.coverage_tolerance,
            "summary": clean(self.summary),
            "latest": clean(self.latest),
            "reference": {"split": self.reference_split, **clean(self.reference)},
        }


def per_origin(f: Forecast) -> pd.DataFrame:
    """Per-origin sums the rolling scores are ratios of (one row per origin, steps summed), so a
    window's ratio equals the evaluation scorer on that window's forecasts."""
    called = f.returns != 0
    hit = (np.sign(f.returns) == np.sign(f.actual)) & called
    cols = {
        "abs_err": np.abs(f.prices - f.actual_prices).sum(axis=1),
        "naive_abs_err": np.abs(f.last_close[:, None] - f.actual_prices).sum(axis=1),
        "called": called.sum(axis=1),
        "hit": hit.sum(axis=1),
        "base_hit": ((np.sign(f.actual) == f.majority_sign) & called).sum(axis=1),
        "brier": np.where(called, (f.confidence - hit) ** 2, 0).sum(axis=1),
        "brier_ref": np.where(called, (f.base_rate - hit) ** 2, 0).sum(axis=1),
        "steps": np.full(f.n, f.horizon),
    }
    for level in f.levels:
        lo, hi = f.bounds(level)
        cols[f"inside_{level_tag(level)}"] = ((f.actual >= lo) & (f.actual <= hi)).sum(axis=1)
    return pd.DataFrame(cols, index=pd.DatetimeIndex(f.origins, name="origin"), dtype=float)


def rolling_scores(f: Forecast, window: int) -> pd.DataFrame:
    """Skill vs naive, direction accuracy next to the majority sign, Brier skill and coverage
    over the `window` origins ending at each origin (rows from the first full window on)."""
    s = per_origin(f).rolling(window).sum().iloc[window - 1 :]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "skill": 1 - s["abs_err"] / s["naive_abs_err"],
            "dir_acc": s["hit"] / s["called"],
            "dir_base": s["base_hit"] / s["called"],
            "brier_skill": 1 - s["brier"] / s["brier_ref"],
        }
        out |= {f"coverage_{level_tag(lv)}": s[f"inside_{level_tag(lv)}"] / s["steps"] for lv in f.levels}
    return pd.DataFrame(out)


def _one_sided(stat: float, p_two: float) -> float:
    """P-value of "greater than" from a symmetric two-sided test's (statistic, p-value)."""
    return p_two / 2 if stat > 0 else 1 - p_two / 2


def _direction(scores: pd.Series) -> str:
    if not scores["dir_share"] > 0:
        return "no direction calls"
    return f"direction {scores['dir_acc']:.1%} vs majority {scores['dir_base_called']:.1%}"


def _reference(meta: dict[str, Any]) -> tuple[str, pd.Series]:
    """The save-time scores the floor is anchored on: validation's, the last split before the
    monitored origins (those begin right after validation, so they hold the test split: anchoring
    on test would compare the model with itself)."""
    metrics = meta.get("metrics") or {}
    split = "val" if metrics.get("val") else "test"
    return split, pd.Series(metrics.get(split) or {}, dtype=float)


def _watch(latest: pd.Series, floor: float, levels: tuple[float, ...], tolerance: float) -> list[str]:
    """Limits the latest window's point estimates break without the evidence to call it degraded."""
    notes = [f"skill {latest['skill']:+.3f} under the floor {floor:+.3f}"] if latest["skill"] < floor else []
    notes += [
        f"{level_tag(lv)}% coverage {latest[f'coverage_{level_tag(lv)}']:.1%} under {lv - tolerance:.0%}"
        for lv in levels
        if latest[f"coverage_{level_tag(lv)}"] < lv - tolerance
    ]
    return notes


def degradation(
    f: Forecast, window: int, floor: float, coverage_tolerance: float = COVERAGE_TOLERANCE, alpha: float = ALPHA
) -> tuple[pd.Series, list[str]]:
    """The latest window's scores and the rule's findings (empty: not degraded); see `monitor`."""
    last = f.select(slice(-window, None))
    latest = pd.Series(evaluation.score(last, _names(f.levels)))
    each = alpha / (2 + len(f.levels))  # Bonferroni over the point, direction and coverage tests
    reasons = []
    s = per_origin(last)
    stat, p = evaluation.diebold_mariano(
        s["abs_err"] / f.horizon, (1 - floor) * s["naive_abs_err"] / f.horizon, f.horizon
    )
    if np.isfinite(p) and _one_sided(stat, p) < each:
        reasons.append(
            f"MAE skill vs naive {latest['skill']:+.3f} is below the floor {floor:+.3f} (p={_one_sided(stat, p):.2g})"
        )
    p_dir = latest["dir_vs_base_pvalue"] / 2  # one-sided, for an accuracy below the baseline's
    if latest["dir_acc"] < latest["dir_base_called"] and p_dir < each:
        reasons.append(
            f"direction accuracy {latest['dir_acc']:.1%} is below the majority sign's "
            f"{latest['dir_base_called']:.1%} (p={p_dir:.2g})"
        )
    for level in f.levels:
        tag = level_tag(level)
        inside = s[f"inside_{tag}"] / f.horizon
        stat, p = evaluation.diebold_mariano(np.full(window, level - coverage_tolerance), inside, f.horizon)
        if np.isfinite(p) and _one_sided(stat, p) < each:
            reasons.append(
                f"{tag}% interval coverage {latest[f'coverage_{tag}']:.1%} is below {level:.0%} - "
                f"{coverage_tolerance * 100:g} pp (p={_one_sided(stat, p):.2g})"
            )
    return latest, reasons


def monitor(
    symbol: str,
    interval: str,
    *,
    model: str | None = None,
    version: str = "production",
    window: int | None = None,
    threshold: float = THRESHOLD,
    coverage_tolerance: float = COVERAGE_TOLERANCE,
    alpha: float = ALPHA,
    backend: str = "auto",
    end: str | pd.Timestamp | None = None,
    root: Path | None = None,
) -> MonitorReport:
    """Score the production model (or `model` at `version`) on every forecast it could have made
    since the data it was fitted on, and say whether it has degraded.

    Origins: every bar after the version's `trained_through` bar (its last validation window plus
    the horizon: from there on its forecasts are out of sample) whose next H bars are stored
    (before `end`, exclusive). `window`: origins per rolling window (default 30 days of bars).

    The rule, applied to the latest `window` origins: degraded if any of
      1. point: the MAE skill vs naive is significantly below the floor max(s, 0) - `threshold`,
         s the version's save-time validation skill (see `_reference`): a one-sided Diebold-Mariano test
         (HAC lag H-1, HLN) of the model's absolute errors against (1 - floor) x naive's;
      2. direction: accuracy is significantly below the majority sign's on the same calls (the
         evaluation layer's paired test, one-sided);
      3. intervals: per level L, the coverage is significantly below L - `coverage_tolerance`
         (too narrow; too wide is only costly): the same HAC test on the per-origin share of
         outcomes inside the interval.
    Each test runs at `alpha` / (2 + levels), so that checking several things at once does not
    turn noise into a retrain signal. Why both a margin and a test: a monitor that fires on point
    estimates fires on every unlucky month (a 30-day window of 24-step forecasts holds only ~30
    independent outcomes), while one that only tests "worse than before" fires on differences too
    small to be worth a retrain; the margin says what loss matters, the test that it is real. The
    floor is anchored at max(s, 0) so a model saved with negative skill is still held to
    naive - threshold. Fewer than `window` realised forecasts: status "insufficient data", never
    degraded.

    Raises registry.RegistryError without a production model, ValueError when the store holds no
    candle after the version's training data (the message gives both dates).
    """
    from coffee_ml.data import open_store
    from coffee_ml.models.persistence import load_model

    ref = (
        registry.resolve(symbol, interval, model, version, root)
        if model
        else registry.production(symbol, interval, root)
    )
    loaded = load_model(ref.symbol, ref.interval, ref.model, ref.version, root=root)
    bar = interval_timedelta(interval)
    window = int(DEFAULT_WINDOW / bar) if window is None else int(window)
    horizon = int(loaded.model.horizon_)
    if window <= 2 * horizon:
        raise ValueError(
            f"window must be more than 2 x horizon = {2 * horizon} origins (the HAC tests need them), got {window}"
        )
    through = loaded.trained_through
    candles = open_store(backend).load_candles(symbol, interval, start=through - loaded.history_bars * bar, end=end)
    if candles.empty or candles.index[-1] <= through:
        newest = "none" if candles.empty else candles.index[-1]
        raise ValueError(
            f"no {symbol} {interval} candles after {through}, the last bar {ref.model} {ref.version} "
            f"was trained on (newest stored{f' before {end}' if end is not None else ''}: {newest}): "
            "nothing to monitor"
        )
    history = loaded.predict_history(candles, start=through + bar)
    f = history.select(np.isfinite(history.actual).all(axis=1))
    reference_split, reference = _reference(loaded.metadata)
    saved = reference.get("skill", np.nan)
    floor = (max(saved, 0.0) if np.isfinite(saved) else 0.0) - threshold
    summary = pd.Series(evaluation.score(f, _names(f.levels)))
    period = (f.origins[0], f.origins[-1]) if f.n else (None, None)
    name = f"{ref.model} {ref.version}"
    if f.n < window:
        latest, reasons, status = pd.Series(np.nan, index=summary.index), [], "insufficient data"
        verdict = (
            f"INSUFFICIENT DATA: {name} has {f.n} realised forecasts since {through} (need {window}, one "
            "rolling window); no verdict yet"
        )
    else:
        latest, reasons = degradation(f, window, floor, coverage_tolerance, alpha)
        status = "degraded" if reasons else "ok"
        head = (
            f"{name} over the last {window} origins to {period[1]}: skill vs naive {latest['skill']:+.3f} "
            f"(floor {floor:+.3f}), "
            + _direction(latest)
            + ", "
            + ", ".join(f"coverage {level_tag(lv)}% {latest[f'coverage_{level_tag(lv)}']:.1%}" for lv in f.levels)
        )
        watch = [] if reasons else _watch(latest, floor, f.levels, coverage_tolerance)
        verdict = (
            f"DEGRADED: retrain {name} — {'; '.join(reasons)}"
            if reasons
            else f"OK, WATCH ({'; '.join(watch)}, not significant yet): {head}"
            if watch
            else f"OK: {head}"
        )
    return MonitorReport(
        ref=ref,
        trained_through=through,
        start=period[0],
        end=period[1],
        window=window,
        threshold=threshold,
        floor=floor,
        coverage_tolerance=coverage_tolerance,
        status=status,
        reasons=reasons,
        verdict=verdict,
        summary=summary,
        latest=latest,
        reference=reference,
        reference_split=reference_split,
        rolling=rolling_scores(f, window),
        forecast=f,
    )
