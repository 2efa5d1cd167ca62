"""Direction, honestly: how often a model takes a side, how often it is then right, and whether
that beats the simplest direction forecaster, the majority sign of the training targets.

A model that abstains except on 20 right calls is "100%" on 0.1% of origins, and the report says
so; a model whose calls are right 51% of the time in a market that rose 51% of the time has no
direction skill, and the Pesaran-Timmermann test (independence of predicted and realised signs)
and the paired test against the majority sign say so. Counts are effective (overlapping h-step
outcomes count 1/h each). The naive forecast takes no side: "no call", never NaN-as-0.
"""

from __future__ import annotations

import numpy as np

from coffee_ml.evaluation.significance import diebold_mariano, pesaran_timmermann, wilson_interval
from coffee_ml.evaluation.verdict import p_clause
from coffee_ml.forecast import Forecast


def direction_scores(f: Forecast) -> dict[str, float]:
    y, p = f.actual, f.returns
    called = p != 0
    overlap = f.horizon * p.shape[1]  # entries per independent outcome
    n_called = int(called.sum())
    up = y > 0
    hit = np.sign(p) == np.sign(y)
    base_hit = np.sign(y) == f.majority_sign
    nan = float("nan")
    out = {
        "dir_share": n_called / p.size if p.size else nan,
        "up_share": float(up.mean()) if p.size else nan,
        "dir_base": float(base_hit.mean()) if p.size else nan,
        "dir_n_eff": n_called / overlap,
    }
    if n_called == 0:
        return out | {
            k: float("nan")
            for k in (
                "dir_acc",
                "dir_acc_lo",
                "dir_acc_hi",
                "dir_base_called",
                "dir_vs_base_pvalue",
                "pt_stat",
                "pt_pvalue",
            )
        }
    hits = float(hit[called].sum())
    lo, hi = wilson_interval(hits / overlap, n_called / overlap)
    # paired comparison with the majority sign on the origins where the model called: per origin
    # the mean 0/1 loss over its called steps, HAC lag H-1 (Diebold-Mariano on a 0/1 loss)
    rows = called.any(axis=1)
    k = called[rows].sum(axis=1)
    loss_model = np.where(called, ~hit, 0)[rows].sum(axis=1) / k
    loss_base = np.where(called, ~base_hit, 0)[rows].sum(axis=1) / k
    _, p_base = diebold_mariano(loss_model, loss_base, f.horizon)
    pt_stat, pt_p = pesaran_timmermann(p[called] > 0, up[called], n_called / overlap)
    return out | {
        "dir_acc": hits / n_called,
        "dir_acc_lo": lo,
        "dir_acc_hi": hi,
        "dir_base_called": float(base_hit[called].mean()),
        "dir_vs_base_pvalue": p_base,
        "pt_stat": pt_stat,
        "pt_pvalue": pt_p,
    }


def direction_text(scores: dict[str, float]) -> str:
    """One line for tables and headlines: accuracy with CI, share called, baseline, p-values."""
    if not scores.get("dir_share"):
        return "no call"
    return (
        f"{scores['dir_acc']:.1%} [{scores['dir_acc_lo']:.1%}, {scores['dir_acc_hi']:.1%}] on "
        f"{scores['dir_share']:.0%} of forecasts; majority sign {scores['dir_base_called']:.1%} "
        f"({p_clause(scores['dir_vs_base_pvalue'])}), PT {p_clause(scores['pt_pvalue'])}"
    )
