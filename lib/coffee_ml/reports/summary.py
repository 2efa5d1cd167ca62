"""The run's summary page (`runs/<id>/summary.html`): what a reviewer reads first.

One headline, then data coverage, a leaderboard of every model and ensemble the run scored (with
a chart of skill vs naive and direction accuracy), the current regime, the latest anomaly events
and the production model with its forecast path, each linking to the report it comes from. Built from manifest.json and metrics.json only, never from the store or by
rescoring, so the runner can rewrite it after every notebook at no cost; a notebook that is not
in the run leaves its section out, one that failed or has not run yet says so in one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from coffee_ml.evaluation.verdict import ALPHA, p_clause
from coffee_ml.reports import charts
from coffee_ml.reports.format import COVERAGE_TOLERANCE, FLAG_STYLE, NA, NO_CALL, nominal, number, percent
from coffee_ml.reports.index import _e, _link, _page, _read_json, _records, _status, _time, headline_text
from coffee_ml.reports.records import write_atomic
from coffee_ml.run_state import shown

SUMMARY_FILE = "summary.html"
DATA, TRAINING, BACKTEST, REGIMES, HPO, ENSEMBLES, ANOMALIES, PRODUCTION = (
    "00_data",
    "02_training",
    "03_backtesting",
    "04_regimes",
    "05_hpo",
    "06_ensembles",
    "07_anomalies",
    "08_production",
)
LATEST_EVENTS = 10
# (record key, column header); dir_ci is dir_acc_lo..dir_acc_hi
COLUMNS = [
    ("skill", "skill vs naive (MAE)"),
    ("dm_pvalue", "DM p"),
    ("dir_acc", "direction"),
    ("dir_ci", "95% CI"),
    ("dir_base_called", "majority sign"),
    ("coverage_80", "coverage 80%"),
    ("coverage_95", "coverage 95%"),
    ("brier_skill", "Brier skill"),
    ("sharpe", "Sharpe"),
    ("hold_sharpe", "buy-and-hold Sharpe"),
]
_CALLS = {"dir_acc", "dir_ci", "dir_base_called", "brier_skill"}  # "no call" for a model that takes no side
_BASELINE_STYLE = "background-color: #f6f8fa"


class _Run:
    """The manifest's notebook entries and the records, by stage."""

    def __init__(self, manifest: dict[str, Any], records: dict[str, Any]) -> None:
        self.manifest = manifest
        self.entries = {e.get("stage") or Path(e.get("notebook", "")).stem: e for e in manifest.get("notebooks", [])}
        self.records = records

    def record(self, stage: str) -> dict[str, Any] | None:
        """The stage's record when its notebook finished ok (a failed one may have recorded half)."""
        if self.entries.get(stage, {}).get("status") != "ok":
            return None
        record = self.records.get(stage)
        return record if isinstance(record, dict) else {}

    def items(self, stage: str) -> dict[str, Any]:
        return _items(self.record(stage) or {})

    def link(self, stage: str) -> str:
        """The stage's reviewer report, or its name when it has none (failed before rendering)."""
        href = self.entries.get(stage, {}).get("html")
        return _link(href, stage) if href else _e(stage)

    def state(self, stage: str) -> str:
        """One line for a stage without results: failed (with its error), not run, or running."""
        entry = self.entries.get(stage, {})
        status = entry.get("status", "?")
        if status == "ok":
            return f"{self.link(stage)} recorded nothing for this"
        if status == "failed":
            error = str(entry.get("error") or "").splitlines()[:1]
            return f"{self.link(stage)} {_status('failed')}" + (f": {_e(error[0])}" if error else "")
        if status in ("pending", "running"):
            return f"{self.link(stage)} not run yet ({_status(status)})"
        if status == "died":
            return f"{self.link(stage)} {_status('died')}: the run's process ended while it ran"
        return f"{self.link(stage)} not run in this run ({_status(status)})"


def _items(record: dict[str, Any]) -> dict[str, Any]:
    """A record's headline items: what its headline says, as numbers ({} for a text-only headline)."""
    headline = record.get("headline")
    items = headline.get("items") if isinstance(headline, dict) else None
    return items if isinstance(items, dict) else {}


def _section(run: _Run, stage: str, title: str, body: Callable[[dict[str, Any]], str]) -> str:
    """A titled section from one stage's record: left out when the stage is not in the run."""
    if stage not in run.entries:
        return ""
    record = run.record(stage)
    inner = body(record) if record else ""
    return f"<h2>{_e(title)} <small>from {run.link(stage)}</small></h2>" + (inner or f"<p>{run.state(stage)}</p>")


def _checks(record: dict[str, Any]) -> str:
    """The stage headline's `check:` lines: what its notebook says needs attention."""
    lines = [line for line in headline_text(record).splitlines() if line.startswith("check: ")]
    return "".join(f"<p class='failed'>⚠ {_e(line.removeprefix('check: '))}</p>" for line in lines)


def _table(rows: list[tuple[str, str]]) -> str:
    """A two-column table of (label, already formatted HTML)."""
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


# ---- data coverage ------------------------------------------------------------------------------


def _data(record: dict[str, Any]) -> str:
    """00's coverage facts (its headline items; the data range alone for a record without them)."""
    items, span = _items(record), record.get("data_range") or {}
    if not items and not span:
        return ""
    bars = items.get("bars", span.get("rows"))
    expected = items.get("expected_bars")
    rows = [
        ("symbol", _e(items.get("symbol", NA))),
        ("interval", _e(items.get("interval", NA))),
        ("first bar", _e(_time(items.get("first", span.get("first", NA))))),
        ("last bar", _e(_time(items.get("last", span.get("last", NA))))),
        ("rows", _e(number("rows", bars)) + (f" of {_e(number('rows', expected))} expected" if expected else "")),
        ("coverage", _e(number("coverage", items.get("coverage")))),
        (
            "gaps",
            _e(number("gaps", items.get("gaps")))
            + (f" ({_e(number('rows', items['missing_bars']))} missing bars)" if items.get("missing_bars") else ""),
        ),
    ]
    return _table(rows) + _checks(record)


# ---- leaderboard --------------------------------------------------------------------------------


def _naive_row(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A naive row for a stage that scored no naive model of its own (the ensembles), so the
    baseline stays in view: naive's skill against itself is zero by definition."""
    if "naive" in rows:
        return {}
    return {"naive": {"skill": 0.0, "dir_share": 0.0}}


def _leaderboard_rows(run: _Run, stage: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """(what the stage scored on, {model: scores}) for one stage of the leaderboard."""
    record = run.record(stage) or {}
    items = run.items(stage)
    if stage == HPO:
        return _hpo_rows(items)
    board = record.get("leaderboard")
    if not isinstance(board, dict) or not board:
        return "", {}
    rows = {str(k): v for k, v in board.items() if isinstance(v, dict)}
    origins = next((r.get("origins") for r in rows.values() if r.get("origins")), None)
    test_start = run.entries[stage].get("parameters", {}).get("test_start")
    what = {
        TRAINING: f"{items.get('split', 'test')} split",
        BACKTEST: f"walk-forward, {items.get('folds', '?')} folds",
        ENSEMBLES: f"test from {test_start}" if test_start else "out-of-sample",
    }.get(stage, "")
    first, last = items.get("first_origin"), items.get("last_origin")
    when = f"{_time(first)[:10]} to {_time(last)[:10]}" if first and last else ""
    context = ", ".join(t for t in (what, f"{number('origins', origins)} origins" if origins else "", when) if t)
    return context, rows | _naive_row(rows)


def _hpo_rows(items: dict[str, Any]) -> tuple[str, dict[str, dict[str, Any]]]:
    """The best trial against naive on test, as 05_hpo records it (MAE skill only for an MAE search)."""
    if "test" not in items:
        return "", {}
    metric = items.get("metric", "?")
    skill = -items["vs_naive_test"] if metric == "mae" and items.get("vs_naive_test") is not None else None
    params = ", ".join(f"{k}={v}" for k, v in (items.get("best_params") or {}).items())
    name = f"{items.get('model', '?')} best trial" + (f" ({params})" if params else "")
    context = (
        f"test, best of {number('trials', items.get('trials'))} trials on validation {metric}: "
        f"{metric} {number(metric, items['test'])} vs naive {number(metric, items.get('naive_test'))}"
    )
    return context, {name: {"skill": skill}, "naive": {"skill": 0.0, "dir_share": 0.0}}


def _versus(row: dict[str, Any], baseline: bool) -> str:
    """Does the row beat naive on MAE at p < ALPHA (Diebold-Mariano), as the notebooks judge it."""
    p, stat = row.get("dm_pvalue"), row.get("dm_stat")
    if baseline:
        return "baseline"
    if p is None or stat is None:
        return "untested"
    if p < ALPHA:
        return "beats naive" if stat < 0 else "worse"
    return "no difference"


def _score(name: str, row: dict[str, Any]) -> str:
    """One leaderboard cell, formatted by its scorer name; coverage off nominal shaded as in the reports."""
    if name in _CALLS and row.get("dir_share") == 0:
        return f"<td class='num'>{NO_CALL}</td>"
    if name == "dir_ci":
        lo, hi = row.get("dir_acc_lo"), row.get("dir_acc_hi")
        text = f"[{number('dir_acc_lo', lo)}, {number('dir_acc_hi', hi)}]" if lo is not None and hi is not None else NA
        return f"<td class='num'>{_e(text)}</td>"
    value = row.get(name)
    target = nominal(name) if name.startswith("coverage") else None
    off = target is not None and value is not None and abs(value - target) > COVERAGE_TOLERANCE + 1e-12
    return f"<td class='num'{f' style={FLAG_STYLE!r}' if off else ''}>{_e(number(name, value))}</td>"


def _leaderboard(run: _Run) -> str:
    """Every model and ensemble of 02, 03, 05 and 06, best skill first within each stage, the
    naive row in place (a model above it has the better MAE on those origins)."""
    stages = [s for s in (TRAINING, BACKTEST, HPO, ENSEMBLES) if s in run.entries]
    if not stages:
        return ""
    body, notes, charted = [], [], []
    for stage in stages:
        context, rows = _leaderboard_rows(run, stage)
        if not rows:
            notes.append(f"<p>{run.state(stage)}</p>")
            continue
        order = sorted(
            rows, key=lambda m: (-rows[m]["skill"] if rows[m].get("skill") is not None else float("inf"), m != "naive")
        )  # naive first among equals: above it is better
        for i, model in enumerate(order):
            row, baseline = rows[model], model == "naive"
            lead = (
                f"<td rowspan='{len(order)}' style='background-color: #fff'><b>{run.link(stage)}</b><br>"
                f"<small>{_e(context)}</small></td>"
                if i == 0
                else ""
            )
            cells = "".join(_score(name, row) for name, _ in COLUMNS)
            if not baseline and row.get("skill") is not None:
                charted.append((stage, model, row, _versus(row, baseline)))
            body.append(
                f"<tr{f' style={_BASELINE_STYLE!r}' if baseline else ''}>{lead}<td>{_e(model)}</td>"
                f"<td style='white-space: nowrap'>{_versus(row, baseline)}</td>{cells}</tr>"
            )
    head = "".join(f"<th>{_e(label)}</th>" for _, label in COLUMNS)
    table = (
        (
            f"<div class='scroll'><table class='leaderboard'><tr><th>from</th><th>model</th><th>vs naive</th>"
            f"{head}</tr>{''.join(body)}</table></div>"
        )
        if body
        else ""
    )
    legend = (
        (
            "<p><small>skill: 1 − MAE / naive MAE on the stage's own origins (compare within a stage); "
            f"vs naive: Diebold-Mariano at p &lt; {ALPHA:g}; direction: share of correct up/down calls with its "
            "95% interval against always calling the majority sign; shaded: coverage more than "
            f"{COVERAGE_TOLERANCE * 100:g} pp from nominal</small></p>"
        )
        if body
        else ""
    )
    chart = _leaderboard_chart(json.dumps(charted, default=str)) if charted else ""
    return "<h2>Leaderboard: every model and ensemble</h2>" + chart + table + legend + "".join(notes)


@lru_cache(maxsize=8)
def _leaderboard_chart(rows: str) -> str:
    """The leaderboard chart, drawn once per content: the runner rewrites the page as every
    notebook starts and ends, and most of those rewrites leave the leaderboard as it was."""
    return charts.img(charts.leaderboard(json.loads(rows)), "skill vs naive and direction accuracy of every model")


def _models(run: _Run) -> list[tuple[str, str, dict[str, Any]]]:
    """(stage, model, scores) of every scored model that is not the naive baseline."""
    stages = (TRAINING, BACKTEST, HPO, ENSEMBLES)
    return [
        (s, m, row)
        for s in stages
        if run.record(s) is not None
        for m, row in _leaderboard_rows(run, s)[1].items()
        if m != "naive" and row.get("skill") is not None
    ]


def _best_model(run: _Run) -> str:
    """The highest skill among models that beat naive significantly; when none does, say so and
    name the closest, so the headline never suggests an edge the tests do not support. Stages
    score different periods, so it names a model that beats naive, not the best of the run."""
    models = _models(run)
    if not models:
        return ""
    winners = [m for m in models if _versus(m[2], False) == "beats naive"]
    tested = [m for m in models if m[2].get("dm_pvalue") is not None]  # untested: often naive itself (no call)
    stage, model, row = max(winners or tested or models, key=lambda m: m[2]["skill"])
    test = f", DM {p_clause(row['dm_pvalue'])}" if row.get("dm_pvalue") is not None else ""
    detail = f"{model}, {stage}: skill {number('skill', row['skill'])} vs naive{test}"
    return f"beats naive: {detail}" if winners else f"no model beats naive (closest: {detail})"


# ---- regime, anomalies, production --------------------------------------------------------------


def _regime_now(run: _Run) -> dict[str, Any]:
    """04's `current` record; for runs recorded before it, the same facts from its headline items
    (confidence there is 0-1, in `current` 0-100)."""
    record = run.record(REGIMES) or {}
    current = record.get("current")
    if isinstance(current, dict) and current.get("regime"):
        return current
    items = run.items(REGIMES)
    if not items.get("regime"):
        return {}
    conf = items.get("confidence")
    return {
        "regime": items["regime"],
        "confidence": None if conf is None else 100 * conf,
        "since": items.get("since"),
        "method": items.get("method"),
        "as_of": (record.get("data_range") or {}).get("last"),
    }


def _confidence(current: dict[str, Any]) -> str:
    conf = current.get("confidence")
    return "" if conf is None else f"{conf:.0f}%"


def _regime(run: _Run) -> Callable[[dict[str, Any]], str]:
    def body(record: dict[str, Any]) -> str:
        now = _regime_now(run)
        if not now:
            return ""
        shares = record.get("regime_stats") or {}
        share = ", ".join(f"{_e(k)} {_e(percent(v.get('share')))}" for k, v in shares.items() if isinstance(v, dict))
        rows = [
            ("regime", f"<b>{_e(now['regime'])}</b>"),
            ("confidence", _e(_confidence(now) or NA)),
            (
                "since",
                _e(_time(now.get("since") or NA))
                + (" (or earlier: it held through every labelled bar)" if now.get("since_bound") else ""),
            ),
            ("as of", _e(_time(now.get("as_of") or NA))),
            ("method", _e(now.get("method") or NA)),
        ]
        return _table(rows + ([("share of bars", share)] if share else [])) + _checks(record)

    return body


def _events(record: dict[str, Any]) -> list[dict[str, Any]]:
    """07's events, newest first."""
    events = record.get("events")
    rows = list(events.values()) if isinstance(events, dict) else events if isinstance(events, list) else []
    return sorted((e for e in rows if isinstance(e, dict)), key=lambda e: str(e.get("start", "")), reverse=True)


def _window_days(record: dict[str, Any]) -> int | None:
    span = record.get("data_range") or {}
    if not (span.get("first") and span.get("last")):
        return None
    return round((pd.Timestamp(span["last"]) - pd.Timestamp(span["first"])) / pd.Timedelta(days=1))


def _anomalies(record: dict[str, Any]) -> str:
    """How many events over how long, then the newest few: what happened lately, not the history."""
    events = _events(record)
    days = _window_days(record)
    count = f"{len(events)} event{'s' * (len(events) != 1)}" + (f" in the last {days} days" if days else "")
    if not events:
        return f"<p>{_e(count)}</p>" + _checks(record)
    rows = "".join(
        f"<tr><td>{_e(_time(e.get('start')))}</td>"
        f"<td>{_e(_time(e['end'])) if e.get('end') not in (None, e.get('start')) else ''}</td>"
        f"<td>{_e(e.get('type', NA))}</td><td>{_e(e.get('severity', NA))}</td>"
        f"<td class='num'>{_e(number('score', e.get('score')))}</td>"
        f"<td>{'' if e.get('final', True) else 'provisional'}</td></tr>"
        for e in events[:LATEST_EVENTS]
    )
    shown = f"; the newest {LATEST_EVENTS}" if len(events) > LATEST_EVENTS else ""
    return (
        f"<p>{_e(count + shown)}</p><table class='events'><tr><th>start</th><th>end</th><th>kind</th>"
        f"<th>severity</th><th>score</th><th>note</th></tr>{rows}</table>" + _checks(record)
    )


def _production(record: dict[str, Any]) -> str:
    """08's chosen version (promoted, or only proposed) and the monitor's verdict on it, with its
    reasons; a degraded model in red."""
    promoted, monitor = record.get("promoted"), record.get("monitor")
    parts = []
    if isinstance(promoted, dict):
        rows = [
            ("model", f"<code>{_e(promoted.get('ref', promoted.get('model', NA)))}</code>"),
            ("promoted", "yes" if promoted.get("promoted", True) else "no: proposed only"),
        ]
        if promoted.get("metric"):
            rows.append((str(promoted["metric"]), _e(number(str(promoted["metric"]), promoted.get("score")))))
        rows += [("reason", _e(promoted["reason"]))] if promoted.get("reason") else []
        parts.append("<h3>Promoted</h3>" + _table(rows))
    if isinstance(monitor, dict):
        state = "failed" if monitor.get("degraded") else "ok"
        verdict = f"<span class='status {state}'>{_e(monitor.get('verdict', NA))}</span>"
        rows = [("verdict", verdict)] + [
            (k, _e(number(k, v)))
            for k, v in monitor.items()
            if k not in ("verdict", "degraded") and not isinstance(v, (dict, list))
        ]
        reasons = monitor.get("reasons") if isinstance(monitor.get("reasons"), list) else []
        rows += [("reasons", "<ul>" + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>")] if reasons else []
        parts.append("<h3>Monitor</h3>" + _table(rows))
    sidebar = record.get("sidebar")
    if isinstance(sidebar, dict) and sidebar.get("predictions"):
        level = f"{sidebar['level']:.0%} interval" if sidebar.get("level") else "interval"
        title = (
            f"the sidebar's forecast: {sidebar.get('model', '?')} {sidebar.get('version', '')}, {level}, "
            f"as of {_time(sidebar['as_of']) if sidebar.get('as_of') else '?'} UTC"
        )
        parts.append(
            "<h3>Forecast</h3>"
            + charts.img(charts.forecast_path(sidebar["predictions"], title), "the production model's forecast path")
        )
    return "".join(parts)


# ---- headline and page --------------------------------------------------------------------------


def _market(run: _Run) -> str:
    """ "BTCUSDT 1h" from the first stage that says, else the run's parameters."""
    for stage in run.entries:
        items = run.items(stage)
        if items.get("symbol"):
            return f"{items['symbol']} {items.get('interval', '')}".strip()
    params = (run.manifest.get("params") or {}).get("parameters") or {}
    return f"{params.get('symbol', '')} {params.get('interval', '')}".strip()


def _run_state(run: _Run) -> str:
    """What is not finished or not ok about the run, for the front of the headline."""
    status = run.manifest.get("status")
    failed = [s for s, e in run.entries.items() if e.get("status") == "failed"]
    if failed:
        return f"run failed in {', '.join(failed)}"
    if status in ("running", "pending"):
        done = sum(e.get("status") == "ok" for e in run.entries.values())
        return f"run in progress ({done} of {len(run.entries)} notebooks done)"
    if status == "died":
        inside = [s for s, e in run.entries.items() if e.get("status") == "died"]
        notebook = (run.manifest.get("died") or {}).get("notebook")
        return (
            f"run died in {inside[0]}"
            if inside
            else f"run died after {notebook}"
            if notebook
            else "run died before its first notebook"
        )
    return "" if status in ("ok", None) else f"run {status}"


def _production_phrase(run: _Run) -> str:
    """ "production: gbm v0003", "would promote: ..." when 08 only proposed it, and a degraded
    monitor verdict (its details are in the section: the headline stays one line)."""
    record = run.record(PRODUCTION) or {}
    promoted, monitor = record.get("promoted"), record.get("monitor")
    if not isinstance(promoted, dict):
        return ""
    name = " ".join(str(promoted[k]) for k in ("model", "version") if promoted.get(k)) or str(promoted.get("ref", "?"))
    label = "production" if promoted.get("promoted", True) else "would promote"
    degraded = isinstance(monitor, dict) and monitor.get("degraded")
    return f"{label}: {name}" + (" (monitor: degraded)" if degraded else "")


def summary_headline(manifest: dict[str, Any], records: dict[str, Any]) -> str:
    """One line a reviewer reads in ten seconds: market, best model against naive, regime now,
    recent anomaly events, production model; only what this run's records support."""
    run = _Run(manifest, records)
    now = _regime_now(run)
    events = run.record(ANOMALIES)
    days = _window_days(events) if events else None
    n = len(_events(events)) if events else 0
    parts = [
        _run_state(run),
        _market(run),
        _best_model(run),
        f"regime {now['regime']} {_confidence(now)}".strip() if now else "",
        (f"{n} anomaly event{'s' * (n != 1)}" + (f" in the last {days} days" if days else "")) if events else "",
        _production_phrase(run),
    ]
    return " · ".join(p for p in parts if p)


def write_run_summary(run_dir: str | Path) -> Path:
    """(Re)write `<run_dir>/summary.html` from the run's manifest.json and metrics.json."""
    run_dir = Path(run_dir)
    manifest, _ = shown(run_dir, _read_json(run_dir / "manifest.json"))  # a run whose process is gone: died
    records, problem = _records(run_dir)
    run = _Run(manifest, records)
    run_id = manifest.get("run_id", run_dir.name)
    name = manifest.get("name", run_id)
    body = (
        f"<p>{_link('index.html', 'run page')} (notebooks, parameters, every record)</p>"
        f"<h1>{_e(name)} · summary {_status(manifest.get('status', '?'))}</h1>"
        f"<p class='meta'>run <code>{_e(run_id)}</code> · "
        f"started {_e(_time(manifest.get('started', '?')))} UTC</p>"
        f"<p class='headline'>{_e(summary_headline(manifest, records) or 'nothing recorded yet')}</p>"
        + problem
        + _section(run, DATA, "Data coverage", _data)
        + _leaderboard(run)
        + _section(run, REGIMES, "Current regime", _regime(run))
        + _section(run, ANOMALIES, "Latest anomaly events", _anomalies)
        + _section(run, PRODUCTION, "Production model", _production)
    )
    return write_atomic(run_dir / SUMMARY_FILE, _page(f"{name} · summary · {run_id}", body))
