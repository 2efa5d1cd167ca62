"""Figures for notebooks and reports; each returns a matplotlib Figure and never calls show().

Forecast figures take a `coffee_ml.forecast.Forecast` (or a frame from its `to_frame` or
`step_frame`); figures that judge forecasts get their numbers from `coffee_ml.evaluation`.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from coffee_ml import evaluation
from coffee_ml.forecast import Forecast

if TYPE_CHECKING:
    from coffee_ml.monitor import MonitorReport


def candles_volume(candles: pd.DataFrame, title: str = "", max_bars: int = 400) -> Figure:
    """OHLC candles over volume. Beyond `max_bars` the close is drawn as a line with the
    high-low range shaded, since individual candle bodies become unreadable."""
    fig, (ax, axv) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    t = candles.index
    up = (candles["close"] >= candles["open"]).to_numpy()
    if len(candles) <= max_bars:
        width = (t[1] - t[0]) * 0.7 if len(t) > 1 else pd.Timedelta(hours=1)
        colors = np.where(up, "tab:green", "tab:red")
        ax.vlines(t, candles["low"], candles["high"], color=colors, linewidth=0.8)
        ax.bar(
            t,
            (candles["close"] - candles["open"]).abs(),
            bottom=candles[["open", "close"]].min(axis=1),
            width=width,
            color=colors,
        )
    else:
        ax.fill_between(t, candles["low"], candles["high"], color="tab:blue", alpha=0.25, linewidth=0, label="high-low")
        ax.plot(t, candles["close"], color="tab:blue", linewidth=0.8, label="close")
        ax.legend(loc="upper left")
    # one LineCollection instead of thousands of Rectangle patches keeps long ranges fast
    axv.vlines(
        t,
        0,
        candles["volume"],
        color=np.where(up, "tab:green", "tab:red"),
        alpha=0.7,
        linewidth=3 if len(t) <= max_bars else 0.5,
    )
    ax.set_ylabel("price")
    axv.set_ylabel("volume")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def return_distribution(log_returns: pd.Series, bins: int = 100, title: str = "") -> Figure:
    """Histogram of log returns against a normal with the same mean and std (fat tails show)."""
    r = log_returns.dropna()
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.hist(r, bins=bins, density=True, alpha=0.6, label="log returns")
    x = np.linspace(r.min(), r.max(), 400)
    mu, sd = r.mean(), r.std()
    ax.plot(x, np.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), color="k", label="normal fit")
    ax.set_yscale("log")
    ax.set_xlabel("log return per bar")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def correlation_heatmap(features: pd.DataFrame, title: str = "feature correlation (Spearman)") -> Figure:
    """Rank correlations between features: blocks of near-duplicates show which ones are redundant."""
    corr = features.corr(method="spearman")
    n = len(corr)
    fig, ax = plt.subplots(figsize=(0.22 * n + 3, 0.22 * n + 2))
    im = ax.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(n), corr.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(n), corr.index, fontsize=7)
    fig.colorbar(im, ax=ax, shrink=0.6)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def feature_distributions(X: pd.DataFrame, columns: int = 6, bins: int = 60, title: str = "") -> Figure:
    """One small histogram per feature (tails clipped at the 0.5/99.5 percentiles for display)."""
    names = list(X.columns)
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 1.6 * rows), squeeze=False)
    lo, hi = X.quantile(0.005), X.quantile(0.995)
    for ax, name in zip(axes.ravel(), names):
        ax.hist(X[name].clip(lo[name], hi[name]), bins=bins, color="tab:blue", alpha=0.8)
        ax.set_title(name, fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curves(histories: Mapping[str, Any]) -> Figure:
    """Train and validation loss per epoch for each trained model; the best epoch is marked.

    Takes fitted models (those without a training history, such as naive or drift, are left
    out; the legend says which epoch was best, how long it took and where) or history frames
    (columns epoch, train_loss, val_loss)."""
    fig, ax = plt.subplots(figsize=(10, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = 0
    for name, item in histories.items():
        result = getattr(item, "training_", None)
        h = result.history if result is not None else item
        if not isinstance(h, pd.DataFrame):
            continue
        color = colors[drawn % len(colors)]
        drawn += 1
        best = h["val_loss"].idxmin()
        note = (
            f" (best epoch {result.best_epoch} of {len(h)}, {result.seconds:.1f} s on {result.device})"
            if result is not None
            else ""
        )
        ax.plot(h["epoch"], h["train_loss"], color=color, linestyle="--", label=f"{name} train")
        ax.plot(h["epoch"], h["val_loss"], color=color, label=f"{name} validation{note}")
        ax.scatter(h.loc[best, "epoch"], h.loc[best, "val_loss"], color=color, zorder=3)
    if drawn:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        fig.set_size_inches(10, 1)
        ax.text(
            0.5,
            0.5,
            "no model with a training history (no neural model)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.axis("off")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss per target")
    ax.set_title("training and validation loss (dot: best epoch, the weights kept)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


_LOWER = re.compile(r"^lower_(\d+(?:\.\d+)?)$")


def _band_levels(frame: pd.DataFrame) -> list[str]:
    """Interval level tags present in a forecast frame ("80", "95", ...), widest first."""
    tags = [m.group(1) for c in frame.columns if (m := _LOWER.match(str(c))) and f"upper_{m.group(1)}" in frame]
    return sorted(tags, key=float, reverse=True)


def _step_frames(forecast: Forecast | pd.DataFrame, steps: int | Sequence[int] | None) -> dict[int, pd.DataFrame]:
    """{step: frame over origins} from a Forecast, its `to_frame()` or a `step_frame(step)`;
    `steps` default to the first and the last step."""
    if isinstance(forecast, Forecast):
        available = [int(s) for s in forecast.steps]
    else:
        available = sorted(int(s) for s in forecast["step"].unique())
    if steps is None:
        steps = sorted({available[0], available[-1]})
    elif isinstance(steps, (int, np.integer)):
        steps = [int(steps)]
    missing = [s for s in steps if s not in available]
    if missing:
        raise ValueError(f"steps {missing} not in this forecast (steps {available[0]}..{available[-1]})")
    if isinstance(forecast, Forecast):
        return {s: forecast.step_frame(s) for s in steps}
    return {s: forecast[forecast["step"] == s] for s in steps}


def _date_axis(ax) -> None:
    """Short, non-overlapping date labels on a time axis."""
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _band_colors(n: int) -> list[str]:
    """Grey shades for nested interval bands, widest (lightest) first."""
    return [str(round(0.88 - 0.16 * k, 2)) for k in range(n)]


def forecast_band(
    forecast: Forecast | pd.DataFrame, steps: int | Sequence[int] | None = None, title: str = ""
) -> Figure:
    """The forecast `steps` bars ahead (default: 1 and H, one panel each) over time against the
    realised price, with the calibrated intervals (every level in the forecast) as grey bands
    (the platform's prediction view). Takes a `Forecast` or a frame from `to_frame`/`step_frame`;
    the x axis is the time of the forecast bar."""
    frames = _step_frames(forecast, steps)
    fig, axes = plt.subplots(len(frames), 1, figsize=(12, 3.4 * len(frames)), squeeze=False, sharex=True)
    for ax, (step, f) in zip(axes[:, 0], frames.items()):
        tags = _band_levels(f)
        for tag, color in zip(tags, _band_colors(len(tags))):
            ax.fill_between(
                f["time"], f[f"lower_{tag}"], f[f"upper_{tag}"], color=color, linewidth=0, label=f"{tag}% interval"
            )
        if "actual" in f:
            ax.plot(f["time"], f["actual"], color="k", linewidth=0.8, label="actual")
        ax.plot(f["time"], f["price"], color="tab:orange", linewidth=0.8, label="forecast")
        ax.set_title(f"{step} bar{'s' if step != 1 else ''} ahead", fontsize=10)
        ax.set_ylabel("price")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        ax.grid(alpha=0.3)
        _date_axis(ax)
    axes[-1, 0].set_xlabel("time of the forecast bar")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def folds_forecast(forecast: Forecast | pd.DataFrame, step: int = 1, title: str = "") -> Figure:
    """Forecast `step` bars ahead vs actual over the test span, fold by fold (alternate shading
    and labels mark the walk-forward folds), with the widest calibrated interval. Takes a
    walk-forward `Forecast` or its `step_frame(step)`."""
    frame = _step_frames(forecast, step)[step]
    if "fold" not in frame:
        raise ValueError("folds_forecast needs a walk-forward forecast (one with folds)")
    fig, ax = plt.subplots(figsize=(12, 4))
    for fold, part in frame.groupby("fold"):
        t0, t1 = part["time"].iloc[0], part["time"].iloc[-1]
        if fold % 2:
            ax.axvspan(t0, t1, color="0.93", linewidth=0)
        ax.text(
            t0 + (t1 - t0) / 2,
            0.98,
            f"fold {fold}",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=8,
            color="0.4",
        )
    tags = _band_levels(frame)
    if tags:
        ax.fill_between(
            frame["time"],
            frame[f"lower_{tags[0]}"],
            frame[f"upper_{tags[0]}"],
            color="tab:orange",
            alpha=0.15,
            linewidth=0,
            label=f"{tags[0]}% interval",
        )
    if "actual" in frame:
        ax.plot(frame["time"], frame["actual"], color="k", linewidth=0.7, label="actual")
    ax.plot(
        frame["time"],
        frame["price"],
        color="tab:orange",
        linewidth=0.7,
        label=f"forecast {step} bar{'s' if step != 1 else ''} ahead",
    )
    ax.set_xlabel("time of the forecast bar")
    ax.set_ylabel("price")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.grid(alpha=0.3)
    _date_axis(ax)
    fig.tight_layout()
    return fig


def error_distributions(
    errors: Mapping[str, Forecast | np.ndarray], step: int | None = None, bins: int = 80, title: str = ""
) -> Figure:
    """Histograms of price errors (forecast - actual) per model on shared bins. Takes forecasts
    (errors `step` bars ahead, default the last step) or arrays of errors."""
    values = {}
    for name, e in errors.items():
        if isinstance(e, Forecast):
            f = e.at_steps([step or e.horizon])
            e = f.prices - f.actual_prices
        values[name] = np.ravel(e)
    fig, ax = plt.subplots(figsize=(10, 4))
    allv = np.concatenate(list(values.values()))
    edges = np.linspace(*np.nanpercentile(allv, [0.5, 99.5]), bins)
    for name, e in values.items():
        ax.hist(np.clip(e, edges[0], edges[-1]), bins=edges, histtype="step", linewidth=1.2, label=name)
    ax.axvline(0, color="k", linewidth=0.8)
    ax.set_xlabel("forecast error (price): forecast - actual")
    ax.set_ylabel("forecasts")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def reliability_diagram(forecasts: Mapping[str, Forecast], bins: int = 10) -> Figure:
    """Is the direction confidence a probability? Per model that takes sides, one panel: the
    observed hit rate against the mean confidence in bins holding equal numbers of calls, with
    the 95% Wilson interval on effective counts (`evaluation.reliability`) and the diagonal a
    calibrated model follows. The axes zoom to where the points are (a model without direction
    skill keeps its confidence in a narrow band around the base rate, invisible on [0, 1]). The
    title gives the Brier skill against quoting the base rate. Models that never take a side are
    named, not drawn."""
    tables, skills, silent = {}, {}, []
    for name, f in forecasts.items():
        table = evaluation.reliability(f, bins)
        if table.empty:
            silent.append(name)
            continue
        tables[name] = table
        skills[name] = evaluation.score(f, ["brier_skill"])["brier_skill"]
    note = f"no direction calls (flat forecast): {', '.join(silent)}" if silent else ""
    if not tables:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, note or "no forecasts", ha="center", va="center", transform=ax.transAxes)
        ax.axis("off")
        return fig
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables) + 0.6, 4.6), squeeze=False)
    for ax, (name, t) in zip(axes[0], tables.items()):
        lo = min(t["hit_lo"].min(), t["confidence"].min())
        hi = max(t["hit_hi"].max(), t["confidence"].max())
        pad = max(0.02, 0.1 * (hi - lo))
        lims = (max(0.0, min(lo - pad, 0.4)), min(1.0, max(hi + pad, 0.6)))
        ax.plot(lims, lims, color="0.5", linestyle="--", linewidth=0.8, label="calibrated")
        ax.errorbar(
            t["confidence"],
            t["hit_rate"],
            yerr=[t["hit_rate"] - t["hit_lo"], t["hit_hi"] - t["hit_rate"]],
            fmt="o",
            color="tab:blue",
            ecolor="tab:blue",
            elinewidth=1.2,
            capsize=3,
            label=f"hit rate, 95% CI ({len(t)} bins of ~{t['n_eff'].mean():.0f} effective outcomes)",
        )
        ax.set_xlim(*lims)
        ax.set_ylim(*lims)
        ax.set_aspect("equal")
        ax.set_title(f"{name}: Brier skill {skills[name]:+.4f}", fontsize=10)
        ax.set_xlabel("confidence (predicted P[direction right])")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
    axes[0, 0].set_ylabel("observed hit rate")
    fig.suptitle(
        "reliability of the direction confidence (Brier skill vs quoting the base rate)"
        + (f"\n{note}" if note else ""),
        fontsize=11,
    )
    fig.tight_layout()
    return fig


_TERCILE_LABELS = {"lowvol": "low vol", "midvol": "mid vol", "highvol": "high vol", "pooled": "pooled"}
_KIND_COLORS = {
    ("adaptive", 0): "#9ecae1",
    ("adaptive", 1): "#2171b5",
    ("constant", 0): "#fdae6b",
    ("constant", 1): "#d94801",
}


def coverage_by_tercile(table: pd.DataFrame, tolerance: float = 0.03) -> Figure:
    """Coverage per volatility tercile (and pooled) of the adaptive and the constant-width
    intervals, one panel per model, from `evaluation.coverage_by_tercile`: grouped bars per
    level and kind, the nominal levels as lines with a +-`tolerance` band around each."""
    cols = [str(c).split("% ", 1) for c in table.columns]
    tags = list(dict.fromkeys(tag for tag, _ in cols))
    groups = [g for g in ("lowvol", "midvol", "highvol", "pooled") if any(g == grp for _, grp in cols)]
    models = list(dict.fromkeys(table.index.get_level_values(0)))
    kinds = list(dict.fromkeys(table.index.get_level_values(1)))
    ncols = min(len(models), 2)
    nrows = -(-len(models) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(6.2 * ncols, 3.4 * nrows + 1.0), squeeze=False, sharey=True, layout="constrained"
    )
    lowest = np.nanmin(table.to_numpy(dtype=float))
    bottom = min(0.5, np.floor((lowest - 0.05) * 20) / 20)
    bars = [(kind, j, tag) for j, tag in enumerate(tags) for kind in kinds]
    width = 0.8 / len(bars)
    x = np.arange(len(groups))
    for ax, model in zip(axes.ravel(), models):
        for j, tag in enumerate(tags):
            nominal = float(tag) / 100
            ax.axhspan(
                nominal - tolerance,
                nominal + tolerance,
                color="0.9",
                zorder=0,
                label=f"nominal ±{tolerance * 100:g} pp" if j == 0 else None,
            )
            ax.axhline(
                nominal, color="k", linestyle="--", linewidth=0.8, zorder=1, label="nominal level" if j == 0 else None
            )
        for b, (kind, j, tag) in enumerate(bars):
            values = [table.loc[(model, kind), f"{tag}% {g}"] for g in groups]
            ax.bar(
                x + (b - (len(bars) - 1) / 2) * width,
                values,
                width=width * 0.95,
                zorder=2,
                color=_KIND_COLORS.get((kind, min(j, 1)), None),
                label=f"{kind} {tag}%",
            )
        ax.set_xticks(x, [_TERCILE_LABELS.get(g, g) for g in groups])
        ax.set_ylim(bottom, 1.0)
        ax.yaxis.set_major_formatter(PercentFormatter(1))
        ax.set_title(model, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.ravel()[len(models) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("coverage")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize=8)
    fig.suptitle("interval coverage by volatility tercile at the origin (adaptive vs constant width)", fontsize=11)
    return fig


def equity_curves(curves: dict[str, pd.DataFrame], title: str = "") -> Figure:
    """Strategy equity per model against buy-and-hold over the same bars (log scale)."""
    fig, ax = plt.subplots(figsize=(12, 4))
    hold = None
    for name, c in curves.items():
        ax.plot(c.index, c["strategy"], linewidth=0.9, label=name)
        hold = c["buy_and_hold"]
    if hold is not None:
        ax.plot(hold.index, hold, color="k", linewidth=1.2, label="buy and hold")
    ax.set_yscale("log")
    ax.set_ylabel("equity (start = 1)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _date_axis(ax)
    fig.tight_layout()
    return fig


REGIME_COLORS = {"BULL": "tab:green", "SIDEWAYS": "tab:gray", "BEAR": "tab:red"}


def regime_price(close: pd.Series, labels: pd.DataFrame, title: str = "") -> Figure:
    """Close price (log scale) on a background shaded by regime, over the regime's confidence.

    Shading uses one `fill_between` per regime (masks, not one patch per spell), so years of
    hourly bars draw quickly."""
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lab = labels.reindex(close.index)
    for name, color in REGIME_COLORS.items():
        mask = (lab["regime"] == name).to_numpy()
        ax.fill_between(
            close.index,
            0,
            1,
            where=mask,
            transform=ax.get_xaxis_transform(),
            color=color,
            alpha=0.25,
            linewidth=0,
            step="post",
            label=f"{name} ({mask.mean():.0%} of bars)",
        )
        axc.scatter(close.index[mask], lab["confidence"].to_numpy()[mask], s=1, color=color)
    ax.plot(close.index, close, color="k", linewidth=0.7)
    ax.set_yscale("log")
    ax.set_ylabel("close (log scale)")
    ax.legend(loc="upper left", markerscale=4)
    ax.set_title(title)
    axc.set_ylim(0, 1.02)
    axc.yaxis.set_major_formatter(PercentFormatter(1.0))
    axc.set_ylabel("confidence")
    for a in (ax, axc):
        a.grid(alpha=0.3)
    _date_axis(axc)
    fig.tight_layout()
    return fig


def regime_forward(stats: pd.DataFrame, horizons: Sequence[int], title: str = "") -> Figure:
    """Mean return and volatility of the next h bars per regime, with 95% intervals: do the
    regimes differ in what follows them?"""
    fig, axes = plt.subplots(1, 2 * len(horizons), figsize=(3.2 * 2 * len(horizons), 3.6))
    names = list(stats.index)
    colors = [REGIME_COLORS.get(n, "tab:blue") for n in names]
    for j, h in enumerate(horizons):
        for k, (what, scale, unit) in enumerate((("ret", 1e4, "bp"), ("vol", 1e4, "bp"))):
            ax = axes[2 * j + k]
            mid = stats[f"{what}_{h}"] * scale
            err = np.vstack([mid - stats[f"{what}_{h}_lo"] * scale, stats[f"{what}_{h}_hi"] * scale - mid])
            ax.bar(names, mid, yerr=err, color=colors, alpha=0.7, capsize=4)
            ax.axhline(0, color="k", linewidth=0.6)
            ax.set_title(f"next {h} bar{'s' if h > 1 else ''}: mean {'return' if what == 'ret' else 'volatility'}")
            ax.set_ylabel(unit)
            ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def hpo_figures(study: Any) -> dict[str, Figure]:
    """Optuna's matplotlib views of a study: optimisation history, parameter importances and a
    parallel-coordinate plot. A view that needs more than the study has (importances need two
    complete trials and a parameter that varied) is left out rather than drawn empty."""
    import warnings

    import optuna.visualization.matplotlib as ov
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = {k for t in complete for k in t.params if len({str(u.params.get(k)) for u in complete}) > 1}
    views = {"history": ov.plot_optimization_history}
    if len(complete) >= 2 and varied:
        views |= {"importances": ov.plot_param_importances, "parallel": ov.plot_parallel_coordinate}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib backend experimental
        for name, view in views.items():
            ax = view(study)
            fig = (ax[0] if isinstance(ax, np.ndarray) else ax).figure
            fig.set_size_inches(10, 4)
            fig.tight_layout()
            out[name] = fig
    return out


SEVERITY_COLORS = {"LOW": "#9ca3af", "MEDIUM": "#f59e0b", "HIGH": "#ea580c", "CRITICAL": "#b91c1c"}
_EVENT_MARKERS = {"pump_dump": "^", "flash_crash": "v", "statistical": "o"}


def anomaly_events(candles: pd.DataFrame, events: pd.DataFrame, title: str = "") -> Figure:
    """Close and volume with each event marked at its start: shape by type (pump ^, crash v,
    statistical o), colour by severity."""
    fig, (ax, axv) = plt.subplots(2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(candles.index, candles["close"], color="k", linewidth=0.7)
    axv.vlines(candles.index, 0, candles["volume"], color="tab:blue", alpha=0.5, linewidth=0.5)
    at = candles["close"].reindex(events["start"], method="nearest").to_numpy() if len(events) else []
    for kind, marker in _EVENT_MARKERS.items():
        for level, color in SEVERITY_COLORS.items():
            sel = ((events["type"] == kind) & (events["severity"] == level)).to_numpy() if len(events) else []
            if np.any(sel):
                ax.scatter(
                    events["start"][sel],
                    np.asarray(at)[sel],
                    marker=marker,
                    color=color,
                    s=36,
                    edgecolor="k",
                    linewidth=0.3,
                    label=f"{kind} {level}",
                    zorder=3,
                )
    if len(events):
        ax.legend(loc="upper left", fontsize=8, ncol=3)
    ax.set_ylabel("close")
    axv.set_ylabel("volume")
    ax.set_title(title)
    for a in (ax, axv):
        a.grid(alpha=0.3)
    _date_axis(axv)
    fig.tight_layout()
    return fig


def score_distributions(scores: Mapping[str, pd.Series], title: str = "") -> Figure:
    """Histogram of each detector's per-bar score (log counts: events are the thin tail)."""
    fig, axes = plt.subplots(1, len(scores), figsize=(4 * len(scores), 3.2))
    for ax, (name, s) in zip(np.atleast_1d(axes), scores.items()):
        ax.hist(s.dropna(), bins=50, color="tab:purple", alpha=0.7)
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("score")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def monitor_chart(report: "MonitorReport") -> Figure:
    """A production model since its training (`coffee_ml.monitor.monitor`), one rolling window
    per point: MAE skill vs naive with zero, the save-time skill and the degradation floor;
    direction accuracy next to the majority sign's; coverage per level against its nominal level
    and the tolerated shortfall. The verdict is the title."""
    fig, axes = plt.subplots(3, 1, figsize=(12, 8), sharex=True, layout="constrained")
    rolling = report.rolling
    ax_skill, ax_dir, ax_cov = axes
    ax_skill.axhline(0, color="k", linewidth=0.8, label="naive (0)")
    ax_skill.axhline(
        report.floor,
        color="tab:red",
        linestyle="--",
        linewidth=1,
        label=f"floor {report.floor:+.3f}: max(save-time skill, 0) - {report.threshold:g}; "
        "degraded when significantly below",
    )
    if np.isfinite(saved := report.reference.get("skill", np.nan)):
        ax_skill.axhline(
            saved,
            color="tab:green",
            linestyle=":",
            linewidth=1,
            label=f"at save ({report.reference_split}) {saved:+.3f}",
        )
    ax_skill.plot(rolling.index, rolling["skill"], color="tab:blue", linewidth=1.2, label="model")
    ax_skill.set_ylabel("MAE skill vs naive")
    ax_dir.axhline(0.5, color="k", linewidth=0.8)
    ax_dir.plot(rolling.index, rolling["dir_base"], color="0.5", linewidth=1, label="majority sign")
    ax_dir.plot(rolling.index, rolling["dir_acc"], color="tab:blue", linewidth=1.2, label="model")
    ax_dir.set_ylabel("direction accuracy")
    ax_dir.yaxis.set_major_formatter(PercentFormatter(1))
    coverage = [c for c in rolling.columns if c.startswith("coverage_")]
    for color, col in zip(("tab:blue", "tab:purple", "tab:orange"), coverage):
        nominal = float(col.split("_")[1]) / 100
        ax_cov.axhline(nominal, color=color, linestyle="--", linewidth=0.8)
        ax_cov.axhline(nominal - report.coverage_tolerance, color=color, linestyle=":", linewidth=0.8)
        ax_cov.plot(
            rolling.index,
            rolling[col],
            color=color,
            linewidth=1.2,
            label=f"{col.split('_')[1]}% (nominal dashed, -{report.coverage_tolerance * 100:g} pp dotted)",
        )
    ax_cov.set_ylabel("interval coverage")
    ax_cov.yaxis.set_major_formatter(PercentFormatter(1))
    if rolling.empty:
        ax_skill.text(
            0.5,
            0.5,
            "insufficient data: no full rolling window yet",
            transform=ax_skill.transAxes,
            ha="center",
            va="center",
        )
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    _date_axis(ax_cov)
    ref = report.ref
    fig.suptitle(
        f"{ref.symbol} {ref.interval} {ref.model} {ref.version}: rolling {report.window} origins since "
        f"{report.trained_through:%Y-%m-%d %H:%M}\n{textwrap.fill(report.verdict, 150)}",
        fontsize=10,
    )
    return fig


def sidebar_forecast(candles: pd.DataFrame, answer: Any, bars: int = 168) -> Figure:
    """The sidebar's forecast in context: the last `bars` closes, then the predicted path with its
    interval, the horizon's price marked (a `serving.Prediction`)."""
    path, close = answer.path, candles["close"].iloc[-bars:]
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.plot(close.index, close, color="k", linewidth=0.9, label="close")
    ax.fill_between(
        path["timestamp"],
        path["lower"],
        path["upper"],
        color="tab:orange",
        alpha=0.25,
        linewidth=0,
        label=f"{answer.level:.0%} interval",
    )
    ax.plot(path["timestamp"], path["price"], color="tab:orange", linewidth=1.2, label="forecast")
    last = path.iloc[-1]
    ax.scatter([last["timestamp"]], [last["price"]], color="tab:orange", zorder=3)
    ax.annotate(
        f"{last['price']:,.0f}  ({last['confidence']:.0f}% {'up' if last['up'] else 'down'})",
        (last["timestamp"], last["price"]),
        xytext=(6, 0),
        textcoords="offset points",
        va="center",
        fontsize=9,
    )
    ax.set_title(
        f"{answer.symbol} {answer.interval}: {answer.model} {answer.version}, regime "
        f"{answer.regime['regime']} ({answer.regime['confidence']:.0f}%)",
        fontsize=10,
    )
    ax.set_ylabel("price")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    _date_axis(ax)
    fig.tight_layout()
    return fig
