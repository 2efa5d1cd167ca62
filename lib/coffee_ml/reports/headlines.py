"""Headlines: what each notebook found, readable in ten seconds, from one library call.

The reviewer report puts the cell that displays a headline at the top (the cell is tagged
`headline`), and the run records store it (`record(run_dir, stage, headline=...)`), so the list
of runs can compare headlines over time. Model verdicts come from the evaluation layer's scorers
and `beats_naive` only; nothing here recomputes a metric. What needs attention (coverage more
than 3 pp from nominal overall or in a volatility tercile, features skipped) is listed as a flag.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from coffee_ml import evaluation
from coffee_ml.data.schema import interval_seconds
from coffee_ml.data.store import to_utc
from coffee_ml.evaluation.intervals import TERCILES
from coffee_ml.evaluation.verdict import ALPHA, p_clause
from coffee_ml.forecast import Forecast, level_tag
from coffee_ml.reports import format as fmt
from coffee_ml.reports.records import model_ref as records_model_ref

if TYPE_CHECKING:
    from coffee_ml.backtest import BacktestReport
    from coffee_ml.features import FeatureDataset

_WHERE = {"": "overall", **{t: f"in {t[:-3]} volatility" for t in TERCILES}}  # "in high volatility"
_STYLE = "border-left: 4px solid #0969da; background: #f6f8fa; padding: .5em .9em; margin: .3em 0 .8em"


@dataclass(frozen=True)
class Headline:
    """`title`, one line per finding, `flags` for what needs attention, `items` the numbers
    behind them (recorded in metrics.json). With a `table` (formatted text, one row per model)
    the HTML shows the table in place of the lines, which say the same in words."""

    title: str
    lines: tuple[str, ...]
    items: dict[str, Any]
    flags: tuple[str, ...] = ()
    table: pd.DataFrame | None = field(default=None, compare=False)

    @property
    def text(self) -> str:
        """Plain text, one finding per line (the run index and the console show this)."""
        return "\n".join([self.title, *self.lines, *(f"check: {f}" for f in self.flags)])

    def to_record(self) -> dict[str, Any]:
        return {"text": self.text, "items": self.items}

    def __str__(self) -> str:
        return self.text

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text)

    def _repr_html_(self) -> str:
        e = html.escape
        parts = [f'<div class="coffee-ml-headline" style="{_STYLE}">', f"<div><b>{e(self.title)}</b></div>"]
        if self.table is not None:
            parts.append(self.table.to_html(border=0, escape=True))
        lines = () if self.table is not None else self.lines
        bullets = [f"<li>{e(line)}</li>" for line in lines] + [
            f'<li style="color: #9a3412">&#9888; {e(flag)}</li>' for flag in self.flags
        ]
        if bullets:
            parts.append(f'<ul style="margin: .3em 0 .1em 1.2em; padding: 0">{"".join(bullets)}</ul>')
        return "".join(parts) + "</div>"


def _day(t: pd.Timestamp) -> str:
    return f"{t:%Y-%m-%d}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def data_headline(
    candles: pd.DataFrame,
    gaps: pd.DataFrame,
    *,
    symbol: str,
    interval: str,
    start: Any = None,
    end: Any = None,
    gap_interval: str | None = None,
) -> Headline:
    """00: how much of [start, end) the store covers, and where candles are missing.

    `gaps` is `store.gaps(...)` over the same range, in `gap_interval` bars (the stored interval
    when candles are resampled from it; default `interval`). Coverage counts the `interval`
    slots between the bounds (the first and last candle where no bound is given)."""
    if candles.empty:
        raise ValueError(f"no {symbol} {interval} candles to summarise")
    step = pd.Timedelta(seconds=interval_seconds(interval))
    lo, hi = to_utc(start), to_utc(end)
    lo = candles.index[0] if lo is None else lo.ceil(step)
    hi = candles.index[-1] if hi is None else (hi - pd.Timedelta(1, "ms")).floor(step)  # `end` is exclusive
    expected = max(int((hi - lo) // step) + 1, len(candles))
    bars, missing = len(candles), int(gaps["missing_bars"].sum()) if len(gaps) else 0
    unit = gap_interval or interval
    lines = [
        f"{bars:,} of {expected:,} {interval} bars ({fmt.percent(bars / expected)} coverage), "
        f"{_day(candles.index[0])} to {_day(candles.index[-1])}"
    ]
    items: dict[str, Any] = {
        "symbol": symbol,
        "interval": interval,
        "first": candles.index[0],
        "last": candles.index[-1],
        "bars": bars,
        "expected_bars": expected,
        "coverage": bars / expected,
        "gaps": len(gaps),
        "missing_bars": missing,
    }
    if len(gaps):
        longest = gaps.loc[gaps["missing_bars"].idxmax()]
        lines.append(
            f"{_plural(len(gaps), 'gap')}, {missing:,} missing {unit} bars; longest "
            f"{_plural(int(longest['missing_bars']), 'bar')} from {longest['gap_start']:%Y-%m-%d %H:%M}"
        )
        items |= {"longest_gap_bars": int(longest["missing_bars"]), "longest_gap_start": longest["gap_start"]}
    else:
        lines.append("no gaps: every bar in the range is stored")
    return Headline(f"{symbol} {interval}: coverage and gaps", tuple(lines), items)


def features_headline(ds: "FeatureDataset") -> Headline:
    """01: features kept and skipped, and the rows and windows lost on the way to samples."""
    r = ds.report
    used = sum(r.windows.values())
    lines = [
        f"rows: {r.rows_in:,} in, {r.warmup_rows:,} warm-up dropped, {r.rows:,} kept ({_plural(r.gaps, 'gap')})",
        f"windows: {r.candidate_windows:,} candidates, {used:,} used; {r.windows_dropped_gap:,} lost to gaps, "
        f"{r.windows_dropped_embargo:,} at split cuts (embargo {r.embargo} bars)",
        "splits: "
        + ", ".join(f"{k} {v:,}" for k, v in r.windows.items())
        + f" windows; {ds.scaler.method} scaler fitted on training rows only",
    ]
    flags = tuple(f"feature {name} skipped: {why}" for name, why in r.skipped_features.items())
    items = {
        "features": len(ds.feature_names),
        "feature_names": ds.feature_names,
        "skipped_features": dict(r.skipped_features),
        "rows_in": r.rows_in,
        "warmup_rows": r.warmup_rows,
        "rows": r.rows,
        "gaps": r.gaps,
        "windows_candidates": r.candidate_windows,
        "windows_used": used,
        "windows_dropped_gap": r.windows_dropped_gap,
        "windows_dropped_embargo": r.windows_dropped_embargo,
        "windows": dict(r.windows),
    }
    skipped = f", {len(r.skipped_features)} skipped" if r.skipped_features else ""
    return Headline(f"{len(ds.feature_names)} features kept{skipped}; {used:,} windows", tuple(lines), items, flags)


def _verdict(s: Mapping[str, float]) -> tuple[bool, str]:
    """beats naive yes/no with the numbers behind it (`evaluation.beats_naive` decides)."""
    yes = evaluation.beats_naive(s)
    skill = fmt.number("skill", s["skill"])
    if s["dm_pvalue"] != s["dm_pvalue"]:  # NaN: identical losses or too few origins
        return yes, f"does not beat naive (cannot test: identical losses or too few origins, skill {skill})"
    worse = ", significantly worse" if s["dm_pvalue"] < ALPHA and s["dm_stat"] > 0 else ""
    return yes, f"{'beats' if yes else 'does not beat'} naive (skill {skill}, DM {p_clause(s['dm_pvalue'])}{worse})"


def _direction(s: Mapping[str, float]) -> str:
    if not s["dir_share"]:
        return fmt.NO_CALL
    return (
        f"{fmt.number('dir_acc', s['dir_acc'])} vs majority sign {fmt.number('dir_base_called', s['dir_base_called'])} "
        f"({p_clause(s['dir_vs_base_pvalue'])})"
    )


def _coverage_flags(table: pd.DataFrame, levels: Sequence[float]) -> tuple[list[str], list[dict[str, Any]]]:
    """One flag per model off nominal by more than 3 pp: per level the pooled coverage and the
    worst volatility tercile, where off (the items keep every miss)."""
    flags, found = [], []
    for model, s in table.iterrows():
        misses = []
        for level in levels:
            tag, off = level_tag(level), {}
            for part in _WHERE:
                name = f"coverage_{tag}_{part}" if part else f"coverage_{tag}"
                v = s.get(name, float("nan"))
                if abs(v - level) > fmt.COVERAGE_TOLERANCE + 1e-12:  # False for NaN
                    off[part] = v
                    found.append({"model": model, "scorer": name, "coverage": v, "nominal": level})
            worst = max((p for p in off if p), key=lambda p: abs(off[p] - level), default=None)
            shown = [p for p in ("", worst) if p in off]
            if shown:
                misses.append(
                    f"{tag}% interval covered " + ", ".join(f"{fmt.percent(off[p])} {_WHERE[p]}" for p in shown)
                )
        if misses:
            flags.append(f"{model}: " + "; ".join(misses))
    return flags, found


def _models(
    table: pd.DataFrame, levels: Sequence[float], baseline: str, trading: bool
) -> tuple[list[str], pd.DataFrame, dict[str, Any], list[str]]:
    """Per-model lines, the headline's table, items and coverage flags from a summary table."""
    lines, rows, models = [], {}, {}
    covers = [f"coverage_{level_tag(lv)}" for lv in levels]
    for model, s in table.iterrows():
        yes, verdict = (None, "") if model == baseline else _verdict(s)  # yes is None: the baseline itself
        row = {
            "vs naive": "baseline" if yes is None else ("yes" if yes else "no"),
            "skill": fmt.number("skill", s["skill"]),
            "DM p": fmt.pvalue(s["dm_pvalue"]),
            "direction": _direction(s),
            "Brier skill": fmt.number("brier_skill", s["brier_skill"]),
        }
        row |= {f"{c.split('_')[1]}% covered": fmt.number(c, s[c]) for c in covers}
        keep = ["skill", "dm_pvalue", "dir_share", "dir_acc", "dir_base_called", "brier_skill", *covers]
        if trading:
            row |= {
                "Sharpe": fmt.number("sharpe", s["sharpe"]),
                "buy & hold": fmt.number("hold_sharpe", s["hold_sharpe"]),
            }
            keep += ["sharpe", "hold_sharpe", "total_return", "hold_return"]
        rows[model] = row
        models[model] = {"beats_naive": yes, **{k: s[k] for k in keep}}
        if yes is not None:
            line = f"{model}: {verdict}; direction {_direction(s)}"
            if trading:
                line += f"; Sharpe {row['Sharpe']} vs buy-and-hold {row['buy & hold']}"
            lines.append(line)
    flags, found = _coverage_flags(table, levels)
    contenders = table.drop(index=baseline, errors="ignore")["skill"].dropna()
    items = {"models": models, "coverage_flags": found, "best_skill": contenders.idxmax() if len(contenders) else None}
    shown = pd.DataFrame.from_dict(rows, orient="index")
    shown.index.name = "model"
    return lines, shown, items, flags


def _span(f: Forecast) -> str:
    return f"{f.n:,} origins × {f.horizon} steps, {_day(f.origins[0])} to {_day(f.origins[-1])}"


def training_headline(forecasts: dict[str, Forecast], baseline: str = "naive", split: str = "test") -> Headline:
    """02: one row per model on the `split` forecasts: beats naive (Diebold-Mariano at p < 0.05)
    with skill and p-value, direction against the majority sign, Brier skill, coverage."""
    ref = forecasts[baseline] if baseline in forecasts else next(iter(forecasts.values()))
    table = evaluation.summary_table(forecasts, evaluation.summary_names(ref.levels, trading=False), baseline=baseline)
    lines, shown, items, flags = _models(table, ref.levels, baseline, trading=False)
    items |= {
        "split": split,
        "origins": ref.n,
        "horizon": ref.horizon,
        "first_origin": ref.origins[0],
        "last_origin": ref.origins[-1],
    }
    return Headline(
        f"{split.capitalize()} split: {_span(ref)}; verdicts vs naive (the price stays), "
        f"Diebold-Mariano at p < {ALPHA:g}",
        tuple(lines),
        items,
        tuple(flags),
        shown,
    )


def backtest_headline(report: "BacktestReport", baseline: str = "naive") -> Headline:
    """03: per model the verdict against naive with skill and DM p-value, direction, and the
    strategy's Sharpe next to buy-and-hold over the same bars, under the request's costs."""
    table = report.summary()
    forecasts = report.forecasts
    ref = forecasts[baseline] if baseline in forecasts else next(iter(forecasts.values()))
    request = report.request
    lines, shown, items, flags = _models(table, ref.levels, baseline, trading=True)
    costs = request.fee_bps + request.slippage_bps
    items |= {
        "method": request.method,
        "folds": len(report.folds),
        "origins": ref.n,
        "horizon": ref.horizon,
        "first_origin": ref.origins[0],
        "last_origin": ref.origins[-1],
        "bps_per_trade": costs,
    }
    title = (
        f"{request.method.replace('_', '-').capitalize()} backtest, {_plural(len(report.folds), 'fold')}: "
        f"{_span(ref)}; trading at {costs:g} bps per trade"
    )
    return Headline(title, tuple(lines), items, tuple(flags), shown)


def _bp(v: float) -> str:
    return f"{v * 1e4:+.1f} bp"


def regimes_headline(
    labels: pd.DataFrame,
    stats: pd.DataFrame,
    tests: pd.DataFrame,
    *,
    symbol: str,
    interval: str,
    method: str,
    agreement: Mapping[str, float] | None = None,
) -> Headline:
    """04: the regime now (with confidence and since when), the time share of each, and whether
    the regimes differ in what follows them: the forward test on returns and on volatility.

    `labels` is the walk-forward label history (`regimes.label_history`), `stats` its
    `regime_stats`, `tests` the `forward_test` rows of every horizon (p from label shifts)."""
    from coffee_ml.regimes import spell_start

    lab = labels.dropna(subset=["regime"])
    if lab.empty:
        raise ValueError(f"no {symbol} {interval} bars labelled: nothing to summarise")
    now, conf, since = lab["regime"].iloc[-1], float(lab["confidence"].iloc[-1]), spell_start(lab["regime"])
    title = f"{symbol} {interval} regimes ({method}): {now} now, {conf:.0%} confidence, since {since:%Y-%m-%d %H:%M}"
    shares = ", ".join(
        f"{r} {fmt.percent(stats.loc[r, 'share'])} (spells of {stats.loc[r, 'mean_bars']:.0f} bars)"
        for r in stats.index
    )
    lines = [f"share of bars: {shares}"]
    items: dict[str, Any] = {
        "symbol": symbol,
        "interval": interval,
        "method": method,
        "regime": now,
        "confidence": conf,
        "since": since,
        "bars": len(lab),
        **{f"share_{r.lower()}": float(stats.loc[r, "share"]) for r in stats.index},
    }
    flags = []
    for row in tests.itertuples():
        kind = "ret" if "return" in row.outcome else "vol"
        h = int(row.h)
        by = ", ".join(
            f"{r} {_bp(stats.loc[r, f'{kind}_{h}'])}"
            if kind == "ret"
            else f"{r} {stats.loc[r, f'{kind}_{h}'] * 1e4:.0f} bp"
            for r in stats.index
        )
        differs = row.p_shift < ALPHA
        floor = 1 / (row.shifts + 1)  # the smallest p a shift test of this size can give
        p_text = f"p <= {floor:.3g}" if row.p_shift <= floor else p_clause(row.p_shift)
        lines.append(
            f"{row.outcome} {'differs' if differs else 'does not differ beyond chance'} across regimes "
            f"({p_text}, label-shift test): {by}"
        )
        items[f"p_{kind}_{h}"] = float(row.p_shift)
    returns = tests[tests["outcome"].str.contains("return")]
    if len(returns) and (returns["p_shift"] >= ALPHA).all():
        flags.append(
            "the regimes do not tell what returns follow (every forward-return test p >= 0.05): "
            "use them for risk and sizing, not for direction"
        )
    if agreement is not None:
        lines.append(
            f"rule-based and HMM labels agree on {fmt.percent(agreement['agree'])} of bars "
            f"(Cohen's kappa {agreement['kappa']:.2f})"
        )
        items |= {"agreement": float(agreement["agree"]), "kappa": float(agreement["kappa"])}
    return Headline(title, tuple(lines), items, tuple(flags))


def hpo_headline(result: Any) -> Headline:
    """05: the best parameters, the search's best validation score beside the test score of that
    one model (scored once), each next to the naive forecast's, and where the model was saved."""
    from optuna.trial import TrialState

    c, metric = result.config, result.config.metric
    states = result.trials["state"].value_counts() if len(result.trials) else pd.Series(dtype=int)
    n_done, n_pruned = int(states.get(TrialState.COMPLETE.name, 0)), int(states.get(TrialState.PRUNED.name, 0))
    val, test = result.val_scores[metric], result.test_scores[metric]
    nv, nt = result.naive_scores["val"][metric], result.naive_scores["test"][metric]
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.best_params.items())
    title = f"{c.symbol} {c.interval} {c.model} · {c.method} search on {metric}: best {params}"
    lines = [
        f"{n_done + n_pruned} trials ({n_pruned} pruned), {c.validation} validation; best validation "
        f"{metric} {fmt.number(metric, val)} (naive {fmt.number(metric, nv)})",
        f"test, scored once for the best trial: {metric} {fmt.number(metric, test)} (naive {fmt.number(metric, nt)})",
    ]
    items: dict[str, Any] = {
        "symbol": c.symbol,
        "interval": c.interval,
        "model": c.model,
        "method": c.method,
        "metric": metric,
        "best_params": result.best_params,
        "val": val,
        "test": test,
        "naive_val": nv,
        "naive_test": nt,
        "trials": n_done + n_pruned,
        "pruned": n_pruned,
        "study": c.study,
        "storage": result.storage,
    }
    flags = []
    loss = evaluation.get_scorer(metric).loss  # lower is better, whatever the metric
    if loss(test) > loss(nt):
        flags.append(f"the best trial is worse than the naive forecast on test ({metric})")
    if min(loss(val), loss(nv), loss(test), loss(nt)) > 0:  # error-like metrics: compare to naive's
        rv, rt = loss(val) / loss(nv) - 1, loss(test) / loss(nt) - 1
        lines.append(
            f"against naive: {fmt.percent(rv, signed=True)} on validation, "
            f"{fmt.percent(rt, signed=True)} on test ({metric}, lower is better)"
        )
        items |= {"vs_naive_val": rv, "vs_naive_test": rt}
        if rt > rv + 0.01:
            flags.append(
                "the edge over naive found on validation shrinks on test by more than 1 pp: "
                "the search may have fitted validation noise"
            )
    if result.model_ref is not None:
        lines.append(f"saved as {records_model_ref(result.model_ref)}")
        items["model_ref"] = result.model_ref
    return Headline(title, tuple(lines), items, tuple(flags))


def ensembles_headline(
    gains: pd.DataFrame, *, symbol: str, interval: str, members: Sequence[str], claim: tuple[float, float] = (5.0, 15.0)
) -> Headline:
    """06: does ensembling pay? The best strategy's direction accuracy and MAE against the best
    member's at each step, with DM p-values, and the platform's "+5-15% accuracy" claim checked."""
    lo, hi = claim
    best = gains["dir_acc change %"].groupby(level="step").idxmax()
    lines, items, flags = [], {"symbol": symbol, "interval": interval, "members": list(members)}, []
    holds = []
    for step, (strategy, _) in best.items():
        g = gains.loc[(strategy, step)]
        lines.append(
            f"{step}-bar direction: best strategy {strategy} {fmt.percent(g['dir_acc'])} vs best member "
            f"{g['best member']} {fmt.percent(g['member dir_acc'])} ({g['dir_acc change %']:+.1f}%, "
            f"{p_clause(g['p (direction)'])}); its MAE {g['mae change %']:+.1f}% vs {g['best member (mae)']} "
            f"({p_clause(g['p (mae)'])})"
        )
        items |= {
            f"best_strategy_{step}": strategy,
            f"dir_change_pct_{step}": float(g["dir_acc change %"]),
            f"dir_p_{step}": float(g["p (direction)"]),
            f"mae_change_pct_{step}": float(g["mae change %"]),
            f"mae_p_{step}": float(g["p (mae)"]),
        }
        holds.append(g["dir_acc change %"] >= lo and g["p (direction)"] < ALPHA)
    verdict = "holds" if all(holds) else "does not hold"
    title = (
        f"{symbol} {interval} ensembles of {', '.join(members)}: the platform's +{lo:g}-{hi:g}% accuracy from "
        f"ensembling {verdict} here"
    )
    worse = gains[(gains["mae change %"] > 0) & (gains["p (mae)"] < ALPHA)]
    for (strategy, step), _ in worse.iterrows():
        flags.append(f"{strategy} is significantly worse than the best member on {step}-bar MAE")
    items["claim_holds"] = all(holds)
    return Headline(title, tuple(lines), items, tuple(flags))


def anomalies_headline(
    events: pd.DataFrame,
    crash_table: pd.DataFrame,
    *,
    symbol: str,
    interval: str,
    start: Any,
    end: Any,
    sources: Sequence[str] = (),
) -> Headline:
    """07: how many events of each type and severity, the strongest ones, and whether the
    flash-crash score foresees drawdowns better than trailing volatility does."""
    title = (
        f"{symbol} {interval} anomalies {_day(pd.Timestamp(start))} to {_day(pd.Timestamp(end))}: "
        f"{_plural(len(events), 'event')}"
    )
    counts = events.groupby(["type", "severity"]).size() if len(events) else pd.Series(dtype=int)
    lines = []
    items: dict[str, Any] = {"symbol": symbol, "interval": interval, "events": len(events)}
    for kind in ("pump_dump", "flash_crash", "statistical"):
        if kind in counts.index.get_level_values(0):
            c = counts[kind]
            lines.append(
                f"{kind}: "
                + ", ".join(f"{int(c[s])} {s}" for s in ("CRITICAL", "HIGH", "MEDIUM", "LOW") if s in c.index)
            )
            items[f"{kind}_events"] = int(c.sum())
    if len(events):
        top = events.loc[events["score"].idxmax()]
        lines.append(
            f"strongest: {top['type']} at {top['start']:%Y-%m-%d %H:%M}, score {top['score']:.0f} "
            f"({top['severity']}{'' if top['final'] else ', provisional'})"
        )
    flags = []
    if len(crash_table):
        row = crash_table.iloc[-1]
        lines.append(
            f"flash-crash score >= {crash_table.index[-1]:g}: precision {fmt.percent(row['precision'])} "
            f"vs {fmt.percent(row['vol_precision'])} for the same share of highest-volatility bars "
            f"(base rate {fmt.percent(row['base_rate'])})"
        )
        items |= {
            "crash_precision": float(row["precision"]),
            "vol_precision": float(row["vol_precision"]),
            "crash_base_rate": float(row["base_rate"]),
        }
        if not row["precision"] > row["vol_precision"]:
            flags.append("the flash-crash score does not foresee drawdowns better than trailing volatility")
    if sources:
        items["sources"] = list(sources)
    return Headline(title, tuple(lines), items, tuple(flags))


def production_headline(choice: Any, answer: Any, monitor: Any = None) -> Headline:
    """08: which version serves the symbol and why, what it forecasts now, and whether it has
    held up since training (the monitor's verdict: the signal to retrain)."""
    ref = choice.ref
    last = answer.path.iloc[-1]
    title = f"{answer.symbol} {answer.interval} production: {answer.model} {answer.version}"
    lines = [
        f"{'promoted' if choice.promoted else f'would promote {ref.model} {ref.version}'}: {choice.reason}",
        f"forecast {int(last['step'])} bars ahead: {last['price']:,.2f} "
        f"({last['price'] / answer.last_close - 1:+.2%}), {answer.level:.0%} interval {last['lower']:,.2f}.."
        f"{last['upper']:,.2f}, confidence {last['confidence']:.1f}%",
        f"regime {answer.regime['regime']} ({answer.regime['confidence']:.1f}% confidence)",
    ]
    items: dict[str, Any] = {
        "model": ref.model,
        "version": ref.version,
        "metric": choice.metric,
        "val_score": choice.score,
        "price": float(last["price"]),
        "regime": answer.regime["regime"],
    }
    flags = []
    if choice.metric == "skill" and not choice.score > 0:
        flags.append("no candidate beat the naive forecast on validation")
    if monitor is not None:
        lines.append(f"since training: {monitor.verdict}")
        items["degraded"] = bool(monitor.degraded)
        if monitor.degraded:
            flags.append("the production model has degraded since training: retrain")
    return Headline(title, tuple(lines), items, tuple(flags))
