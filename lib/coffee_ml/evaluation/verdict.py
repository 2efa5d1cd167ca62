"""Verdicts a reviewer reads in ten seconds, from scores (never from rendered tables)."""

from __future__ import annotations

from collections.abc import Mapping

ALPHA = 0.05


def pvalue_text(p: float) -> str:
    """p-values for people: 0.034, 3.2e-03, or < 1e-4 (never "0", which a tail probability is not;
    below 1e-4 asymptotic tests such as DM with HAC or Pesaran-Timmermann give no reliable digits)."""
    if not p == p:
        return "n/a"
    return "< 1e-4" if p < 1e-4 else f"{p:.3f}" if p >= 0.01 else f"{p:.1e}"


def verdict(scores: Mapping[str, float], baseline: bool = False) -> str:
    """Does the model beat the naive forecast on MAE, at p < 0.05 (Diebold-Mariano)?"""
    if baseline:
        return "baseline"
    p, stat, skill = scores["dm_pvalue"], scores["dm_stat"], scores["skill"]
    if not p == p:  # NaN: identical losses (the naive forecast itself) or too few origins
        return f"beats naive: no (cannot test: identical losses or too few origins, skill {skill:+.1%})"
    significant = p < ALPHA
    if significant and stat < 0:
        return f"beats naive: yes at p<{ALPHA:g} ({p_clause(p)}, skill {skill:+.1%})"
    worse = ", significantly worse" if significant else ""
    return f"beats naive: no at p<{ALPHA:g} ({p_clause(p)}, skill {skill:+.1%}{worse})"


def p_clause(p: float) -> str:
    """ "p = 0.034", "p < 1e-4" or "p n/a"."""
    text = pvalue_text(p)
    return f"p {text}" if text[0] in "<n" else f"p = {text}"


def beats_naive(scores: Mapping[str, float]) -> bool:
    return bool(scores["dm_pvalue"] < ALPHA and scores["dm_stat"] < 0)
