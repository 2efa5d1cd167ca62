"""Figures for notebooks and reports; each returns a matplotlib Figure and never calls show()."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


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
        ax.bar(t, (candles["close"] - candles["open"]).abs(), bottom=candles[["open", "close"]].min(axis=1),
               width=width, color=colors)
    else:
        ax.fill_between(t, candles["low"], candles["high"], color="tab:blue", alpha=0.25, linewidth=0, label="high-low")
        ax.plot(t, candles["close"], color="tab:blue", linewidth=0.8, label="close")
        ax.legend(loc="upper left")
    # one LineCollection instead of thousands of Rectangle patches keeps long ranges fast
    axv.vlines(t, 0, candles["volume"], color=np.where(up, "tab:green", "tab:red"), alpha=0.7,
               linewidth=3 if len(t) <= max_bars else 0.5)
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
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curves(histories: dict[str, pd.DataFrame]) -> Figure:
    """Train and validation loss per epoch for each trained model; the best epoch is marked."""
    fig, ax = plt.subplots(figsize=(10, 4))
    for (name, h), color in zip(histories.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        ax.plot(h["epoch"], h["train_loss"], color=color, linestyle="--", label=f"{name} train")
        ax.plot(h["epoch"], h["val_loss"], color=color, label=f"{name} validation")
        best = h["val_loss"].idxmin()
        ax.scatter(h.loc[best, "epoch"], h.loc[best, "val_loss"], color=color, zorder=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss per target")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def forecast_band(frame: pd.DataFrame, step: int, title: str = "") -> Figure:
    """The `step`-bar-ahead forecast over time against the realised price, with the calibrated
    80% and 95% intervals as grey bands (the platform's prediction view)."""
    f = frame[frame["step"] == step]
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.fill_between(f["time"], f["lower_95"], f["upper_95"], color="0.85", label="95% interval", linewidth=0)
    ax.fill_between(f["time"], f["lower_80"], f["upper_80"], color="0.7", label="80% interval", linewidth=0)
    ax.plot(f["time"], f["actual"], color="k", linewidth=0.8, label="actual")
    ax.plot(f["time"], f["price"], color="tab:orange", linewidth=0.8, label=f"forecast {step} bar(s) ahead")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def folds_forecast(frame: pd.DataFrame, title: str = "") -> Figure:
    """Forecast vs actual over the test span, fold by fold (alternate shading marks the folds)."""
    fig, ax = plt.subplots(figsize=(12, 4))
    for fold, part in frame.groupby("fold"):
        if fold % 2:
            ax.axvspan(part["time"].iloc[0], part["time"].iloc[-1], color="0.93", linewidth=0)
    ax.fill_between(frame["time"], frame["lower_95"], frame["upper_95"], color="tab:orange", alpha=0.15,
                    linewidth=0, label="95% interval")
    ax.plot(frame["time"], frame["actual"], color="k", linewidth=0.7, label="actual")
    ax.plot(frame["time"], frame["price"], color="tab:orange", linewidth=0.7, label="forecast")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def error_distributions(errors: dict[str, np.ndarray], bins: int = 80, title: str = "") -> Figure:
    """Histograms of forecast errors (predicted - actual) per model on shared bins."""
    fig, ax = plt.subplots(figsize=(10, 4))
    allv = np.concatenate([e for e in errors.values()])
    edges = np.linspace(*np.nanpercentile(allv, [0.5, 99.5]), bins)
    for name, e in errors.items():
        ax.hist(np.clip(e, edges[0], edges[-1]), bins=edges, histtype="step", linewidth=1.2, label=name)
    ax.axvline(0, color="k", linewidth=0.8)
    ax.set_xlabel("forecast error (price)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
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
    fig.tight_layout()
    return fig
