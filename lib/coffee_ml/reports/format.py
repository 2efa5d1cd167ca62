"""Numbers as people read them, chosen by the evaluation layer's scorer names.

A reviewer should not decode `n 25200.0000` or a p-value of `0.0000`: shares, accuracies,
coverage and skill read as percentages, p-values as `0.034`, `3.2e-03` or `< 1e-4`, counts as
integers, prices to the cent, a missing value as "—" and a model that takes no side as "no call".
The format follows from the label (`coverage_80_highvol`, `dm_pvalue`, `mae`, ...), so notebooks
pass whole tables and never list columns by hand. Coverage more than `COVERAGE_TOLERANCE` from
its nominal level is shaded. Tables with more scorer columns than rows (leaderboards) are turned
so that scorers run down the page, and every table scrolls sideways instead of being cut off.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from coffee_ml.evaluation import get_scorer
from coffee_ml.evaluation.verdict import pvalue_text

NA = "—"
NO_CALL = "no call"
COVERAGE_TOLERANCE = 0.03  # 3 percentage points either side of nominal
FLAG_STYLE = "background-color: #fde2c8; font-weight: bold"
_SCROLL = 'style="display: block; max-width: 100%; overflow-x: auto"'

# first match wins; labels outside the scorer vocabulary fall back to their dtype
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), kind)
    for p, kind in [
        (r"pvalue$", "pvalue"),
        (r"^coverage(_|$)", "coverage"),
        (r"^(skill|brier_skill|total_return|hold_return)$", "signed_percent"),
        (
            r"^(dir_(share|acc|acc_lo|acc_hi|base|base_called)|up_share|hit_rate|trade_hit_rate|confidence_mean"
            r"|max_drawdown)$",
            "percent",
        ),
        (r"^(naive_)?mape$", "percent_points"),  # already in percent
        (r"^(n|origins|dir_n_eff)$", "integer"),
        (r"^(naive_)?(mae|rmse)$|^(mean|max|min)_error$", "price"),
        (r"^(open|high|low|close|last_close|price|actual|lower_\d+|upper_\d+)$", "price"),  # candles, forecast frames
        (r"^brier(_ref)?$", "decimal4"),
        (r"^(dm_stat|pt_stat|sharpe|sortino|hold_sharpe|turnover|winkler_ratio_.+)$", "ratio"),
        (r"^seconds$", "seconds"),
        (r"volatility$", "percent"),  # data summaries: annualised volatility
    ]
]
_LEVEL_LABEL = re.compile(r"^(\d+(?:\.\d+)?)% ")  # coverage_by_tercile's "80% highvol"


def _missing(v: Any) -> bool:
    return v is None or v is pd.NaT or v is pd.NA or (isinstance(v, (float, np.floating)) and math.isnan(v))


def pvalue(p: float) -> str:
    """`0.034`, `3.2e-03` or `< 1e-4` (and "—" when there was nothing to test)."""
    return NA if _missing(p) else pvalue_text(p)


def percent(v: float, signed: bool = False) -> str:
    """One decimal; a share or coverage gets more where rounding would claim 0% or 100% of
    something that is not (a signed change reads "-0.0%", which says as much)."""
    if _missing(v):
        return NA
    if signed:
        return f"{v:+.1%}"
    text = f"{v:.1%}"
    return f"{v:.3%}" if v not in (0, 1) and text in ("0.0%", "100.0%", "-0.0%") else text


def _number(v: float) -> str:
    """A lone number: whole numbers as integers, else four significant digits."""
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{v:,.0f}"
    return f"{v:,.2f}" if abs(v) >= 1000 else f"{v:.4g}"


def _column_number(values: pd.Series) -> Callable[[Any], str]:
    """One format for a whole column of plain numbers, so that its digits line up: integers when
    every value is whole, else four significant digits at the column's typical magnitude."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    v = np.abs(v[np.isfinite(v)])
    if len(v) == 0 or np.all(v == np.round(v)):
        return lambda x: f"{x:,.0f}"
    typical = float(np.median(v[v > 0])) if (v > 0).any() else 1.0
    decimals = int(np.clip(3 - np.floor(np.log10(typical)), 0, 8))
    return lambda x: f"{x:,.{decimals}f}"


_KINDS: dict[str, Callable[[Any], str]] = {
    "pvalue": pvalue,
    "coverage": percent,
    "percent": percent,
    "signed_percent": lambda v: percent(v, signed=True),
    "percent_points": lambda v: f"{v:.2f}%",
    "integer": lambda v: f"{v:,.0f}",
    "price": lambda v: f"{v:,.2f}",
    "ratio": lambda v: f"{v:.2f}",
    "decimal4": lambda v: f"{v:.4f}",
    "seconds": lambda v: f"{v:.1f} s",
    "number": _number,
    "datetime": lambda v: pd.Timestamp(v).strftime("%Y-%m-%d %H:%M"),
    "text": str,
}


def kind_of(label: Any, values: pd.Series | None = None) -> str:
    """The format of a column (or row) named `label`: from the scorer vocabulary, else from
    the values' dtype (whole numbers as integers, timestamps to the minute)."""
    name = str(label)
    for pattern, kind in _RULES:
        if pattern.search(name):
            return kind
    if values is None:
        return "number"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "datetime"
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "text"
    return "number"


def value(v: Any, kind: str, na: str = NA, number: Callable[[Any], str] | None = None) -> str:
    """One value in the given kind (`number` overrides how a plain number is written); text
    stays text, booleans read yes/no."""
    if kind not in _KINDS:
        raise ValueError(f"unknown format kind {kind!r}; known: {', '.join(_KINDS)}")
    if _missing(v):
        return na
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, str) or (kind != "datetime" and not isinstance(v, (int, float, np.number))):
        return str(v)
    return number(v) if number is not None and kind == "number" else _KINDS[kind](v)


def number(name: str, v: Any) -> str:
    """A single score formatted by its scorer name, e.g. `number("dm_pvalue", 3e-9) == "< 1e-4"`."""
    return value(v, kind_of(name))


def nominal(label: Any) -> float | None:
    """The level a coverage column should hit: 0.8 for `coverage_80_highvol` or "80% highvol"."""
    name = str(label)
    try:
        return get_scorer(name).target
    except ValueError:
        m = _LEVEL_LABEL.match(name)
        return float(m.group(1)) / 100 if m else None


def _is_scorer(label: Any) -> bool:
    try:
        get_scorer(str(label))
    except ValueError:
        return False
    return True


def _direction_family(label: Any) -> bool:
    return _is_scorer(label) and get_scorer(str(label)).family in ("direction", "probability")


def _styled(frame: pd.DataFrame, kinds: dict[Any, str], no_call: pd.Index, transpose: bool) -> Styler:
    """Formats per label (a column of `frame`, a row of its transpose when `transpose`)."""
    shown = frame.T if transpose else frame

    def cells(rows: Any, label: Any) -> Any:  # a (rows, label) subset of `frame`, wherever it is shown
        return pd.IndexSlice[[label], rows] if transpose else pd.IndexSlice[rows, [label]]

    styler = shown.style
    for label, k in kinds.items():
        number = _column_number(frame[label]) if k == "number" else None
        styler = styler.format(
            lambda v, k=k, n=number: value(v, k, number=n), subset=cells(slice(None), label), escape="html"
        )
        if len(no_call) and _direction_family(label):
            styler = styler.format(
                lambda v, k=k: value(v, k, na=NO_CALL), subset=cells(list(no_call), label), escape="html"
            )
    for axis, index in (("index", shown.index), ("columns", shown.columns)):  # names come from data: escape
        styler = styler.format_index(
            _KINDS["datetime"] if isinstance(index, pd.DatetimeIndex) else None, axis=axis, escape="html"
        )
    if isinstance(shown.index, pd.RangeIndex):  # row numbers carry nothing
        styler = styler.hide(axis="index")
    left = [{"selector": "", "props": [("text-align", "left")]}]  # the label's cells and its header
    return styler.set_table_styles(
        {c: left for c, k in kinds.items() if k == "text"}, axis=1 if transpose else 0, overwrite=False
    )


def _coverage_css(frame: pd.DataFrame, kinds: dict[Any, str]) -> pd.DataFrame:
    """FLAG_STYLE where a coverage label is more than the tolerance from its nominal level."""
    css = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for label, k in kinds.items():
        target = nominal(label) if k == "coverage" else None
        if target is not None:
            off = (pd.to_numeric(frame[label], errors="coerce") - target).abs() > COVERAGE_TOLERANCE + 1e-12
            css.loc[off.to_numpy(), label] = FLAG_STYLE
    return css


def table(
    df: pd.DataFrame | pd.Series,
    names: Sequence[str] | None = None,
    *,
    kind: str | None = None,
    caption: str | None = None,
    transpose: bool | None = None,
) -> Styler:
    """`df` styled for people: labels are columns (scorer names, one row per model/horizon/fold).

    `names` picks the columns to show from a wider table, which still supplies `dir_share` to
    mark models that take no side ("no call" instead of "—"). `kind` forces one format on every
    cell (e.g. "coverage" for `evaluation.coverage_by_tercile`). `transpose` defaults to turning
    tables with more scorer columns than rows, and a Series, so that labels run down the page.
    """
    series = isinstance(df, pd.Series)
    frame = df.to_frame(df.name if df.name is not None else "value").T.infer_objects() if series else df
    no_call = frame.index[frame["dir_share"] == 0] if "dir_share" in frame.columns else frame.index[:0]
    if names is not None:
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise KeyError(f"table has no column(s) {', '.join(map(str, missing))}")
        frame = frame[list(names)]
    if transpose is None:
        scorers = sum(map(_is_scorer, frame.columns))
        transpose = series or (2 * scorers >= len(frame.columns) and len(frame.columns) > len(frame))
    kinds = {c: kind or kind_of(c, frame[c]) for c in frame.columns}
    styler = _styled(frame, kinds, no_call, transpose)
    css = _coverage_css(frame, kinds)
    flagged = bool((css != "").to_numpy().any())
    if flagged:
        styler = styler.apply(lambda _: css.T if transpose else css, axis=None)
    note = f"shaded: coverage more than {COVERAGE_TOLERANCE * 100:g} pp from nominal" if flagged else None
    title = " · ".join(t for t in (caption, note) if t)
    if title:
        styler = styler.set_caption(title)
    return styler.set_table_attributes(_SCROLL)
