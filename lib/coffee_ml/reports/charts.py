"""Charts for the static run pages (summary.html), from run records only.

Drawn with matplotlib's object API (`Figure`, never pyplot), so the runner's process never
selects a backend (its kernels draw inline), and embedded as PNG data URIs, so a page stays one
file that works offline, moved or archived.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

# leaderboard verdicts (summary._versus) and their colours
VERDICT_COLORS = {"beats naive": "#1a7f37", "no difference": "#8c959f", "worse": "#cf222e", "untested": "#d0d7de"}


def img(fig: Figure, alt: str) -> str:
    """The figure as an <img> with a PNG data URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width: 100%"></p>'


def leaderboard(rows: Sequence[tuple[str, str, Mapping[str, Any], str]]) -> Figure:
    """Skill vs naive (bars coloured by the Diebold-Mariano verdict) and direction accuracy with
    its 95% interval against the majority sign, one line per (stage, model, scores, verdict); the
    naive forecast is the zero line, so a bar to its right has the lower MAE on its stage's origins."""
    labels = [f"{model}  ({stage})" for stage, model, _, _ in rows]
    y = np.arange(len(rows))[::-1]
    fig = Figure(figsize=(11, 0.32 * len(rows) + 1.2))
    skill_ax, dir_ax = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    skill = np.array([np.nan if s.get("skill") is None else s["skill"] for _, _, s, _ in rows], dtype=float)
    skill_ax.barh(y, np.nan_to_num(skill), color=[VERDICT_COLORS.get(v, "#d0d7de") for *_, v in rows])
    skill_ax.axvline(0, color="k", linewidth=0.8)
    skill_ax.set_yticks(y, labels, fontsize=8)
    skill_ax.set_xlabel("MAE skill vs naive (0 = naive)")
    skill_ax.xaxis.set_major_formatter(lambda v, _: f"{v:+.0%}" if abs(v) >= 0.1 else f"{v:+.1%}")
    skill_ax.legend(
        handles=[Patch(color=color, label=verdict) for verdict, color in VERDICT_COLORS.items()],
        fontsize=7,
        loc="lower left",
        frameon=False,
    )
    called = [(yy, s) for yy, (_, _, s, _) in zip(y, rows) if s.get("dir_share") and s.get("dir_acc") is not None]
    if called:
        yy = np.array([c[0] for c in called])
        acc = np.array([c[1]["dir_acc"] for c in called], dtype=float)
        lo = np.array([c[1].get("dir_acc_lo", np.nan) for c in called], dtype=float)
        hi = np.array([c[1].get("dir_acc_hi", np.nan) for c in called], dtype=float)
        dir_ax.errorbar(
            acc,
            yy,
            xerr=np.nan_to_num(np.vstack([acc - lo, hi - acc])),
            fmt="o",
            color="#0969da",
            markersize=4,
            linewidth=1,
            label="direction (95% CI)",
        )
        base = np.array([c[1].get("dir_base_called", np.nan) for c in called], dtype=float)
        dir_ax.scatter(base, yy, marker="|", s=120, color="k", label="majority sign")
        dir_ax.legend(fontsize=7, loc="lower left", frameon=False)
    dir_ax.axvline(0.5, color="#8c959f", linewidth=0.6, linestyle=":")
    dir_ax.set_xlabel("direction accuracy (models that take a side)")
    dir_ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    for ax in (skill_ax, dir_ax):
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def forecast_path(predictions: Sequence[Mapping[str, Any]], title: str) -> Figure:
    """The production forecast as the sidebar shows it: the predicted price per bar and its interval."""
    frame = pd.DataFrame(list(predictions))
    times = pd.to_datetime(frame["timestamp"])
    fig = Figure(figsize=(11, 3.2))
    ax = fig.subplots()
    ax.fill_between(
        times, frame["lower"], frame["upper"], color="tab:orange", alpha=0.25, linewidth=0, label="interval"
    )
    ax.plot(times, frame["price"], color="tab:orange", marker=".", label="forecast")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("price")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
