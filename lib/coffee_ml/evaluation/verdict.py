"""Verdicts a reviewer reads in ten seconds, from scores (never from rendered tables)."""

from __future__ import annotations

from collections.abc import Mapping

ALPHA = 0.05


def verdict(scores: Mapping[str, float], baseline: bool = False) -> str:
    """Does the model beat the naive forecast on MAE, at p < 0.05 (Diebold-Mariano)?"""
    if baseline:
        return "baseline"
    p, stat, skill = scores["dm_pvalue"], scores["dm_stat"], scores["skill"]
    if not p == p:  # NaN: identical losses (the naive forecast itself) or too few origins
        return f"beats naive: no (no difference to test, skill {skill:+.1%})"
    significant = p < ALPHA
    if significant and stat < 0:
        return f"beats naive: yes at p<{ALPHA:g} (p={p:.2g}, skill {skill:+.1%})"
    worse = ", significantly worse" if significant else ""
    return f"beats naive: no at p<{ALPHA:g} (p={p:.2g}, skill {skill:+.1%}{worse})"


def beats_naive(scores: Mapping[str, float]) -> bool:
    return bool(scores["dm_pvalue"] < ALPHA and scores["dm_stat"] < 0)
