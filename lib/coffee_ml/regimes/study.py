"""One call for the regimes notebook: both methods labelled walk-forward, and what they are worth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from coffee_ml.data.store import like_index, to_utc
from coffee_ml.regimes.detectors import METHODS, make_detector
from coffee_ml.regimes.history import label_history
from coffee_ml.regimes.stats import agreement, forward_test, regime_stats, transition_matrix


@dataclass(frozen=True)
class RegimeStudy:
    """`labels[method]` per bar from `start` on; statistics, transitions and forward tests of
    the main `method`; agreement between the two methods."""

    method: str
    labels: dict[str, pd.DataFrame]
    stats: pd.DataFrame
    transitions: pd.DataFrame
    tests: pd.DataFrame
    confusion: pd.DataFrame
    agreement: dict[str, float]
    horizons: tuple[int, ...]

    def stats_view(self) -> pd.DataFrame:
        """The statistics for people: shares in %, forward returns and volatility in basis points
        with their 95% intervals."""
        from coffee_ml.reports.format import percent

        s = self.stats
        out = pd.DataFrame(
            {
                "share of bars": s["share"].map(percent),
                "spells": s["spells"],
                "mean spell (bars)": s["mean_bars"].round(1),
            },
            index=s.index,
        )
        for h in self.horizons:
            for kind, label in (("ret", "return"), ("vol", "volatility")):
                out[f"next {h}: {label} (bp)"] = [
                    f"{m * 1e4:+.1f} [{lo * 1e4:+.1f}, {hi * 1e4:+.1f}]"
                    if kind == "ret"
                    else f"{m * 1e4:.1f} [{lo * 1e4:.1f}, {hi * 1e4:.1f}]"
                    for m, lo, hi in s[[f"{kind}_{h}", f"{kind}_{h}_lo", f"{kind}_{h}_hi"]].to_numpy()
                ]
        return out

    def tests_view(self) -> pd.DataFrame:
        """The forward tests with p-values written for people (the shift test's floor shown as <=)."""
        from coffee_ml.evaluation.verdict import pvalue_text

        t = self.tests
        floor = 1 / (t["shifts"] + 1)
        p_shift = [f"<= {f:.3g}" if p <= f else pvalue_text(p) for p, f in zip(t["p_shift"], floor)]
        return pd.DataFrame(
            {
                "outcome": t["outcome"],
                "Kruskal-Wallis H": t["kruskal_h"].round(1),
                "p (label shifts)": p_shift,
                "p (i.i.d., overstated)": t["p_iid"].map(pvalue_text),
                "bars": t["bars"],
            }
        ).set_index("outcome")


def study(
    candles: pd.DataFrame,
    start: Any,
    *,
    method: str = "hmm",
    interval: str = "1h",
    params: dict[str, dict[str, Any]] | None = None,
    horizons: tuple[int, ...] = (1, 24),
    refit_every: int = 4380,
    train_bars: int | None = None,
    n_shifts: int = 999,
) -> RegimeStudy:
    """Label the bars from `start` with both detectors, each refitted every `refit_every` bars
    on the bars before (all of them, or the last `train_bars`; the candles before `start` are
    the first fit's history), then judge the labels of `method` by what follows them.
    `params[method]` overrides detector defaults."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    when = to_utc(start, "start")
    first = int(candles.index.searchsorted(like_index(when, candles.index))) if when is not None else len(candles) // 2
    if first < 500:
        raise ValueError(f"regimes need history before start={start}: only {first} bars before it (need 500)")
    params = params or {}
    labels = {
        m: label_history(
            make_detector(m, interval=interval, **params.get(m, {})),
            candles,
            min_train=first,
            refit_every=refit_every,
            scheme="rolling" if train_bars else "expanding",
            train_bars=train_bars,
        )
        for m in METHODS
    }
    main = labels[method]["regime"]
    tests = pd.concat([forward_test(main, candles["close"], h, n_shifts=n_shifts) for h in horizons], ignore_index=True)
    confusion, agree = agreement(labels["rules"]["regime"].rename("rules"), labels["hmm"]["regime"].rename("hmm"))
    return RegimeStudy(
        method,
        labels,
        regime_stats(main, candles["close"], horizons),
        transition_matrix(main),
        tests,
        confusion,
        agree,
        tuple(horizons),
    )
