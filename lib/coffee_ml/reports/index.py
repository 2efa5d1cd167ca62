"""Static index pages: one per run (`runs/<id>/index.html`) and one over every run (`outputs/index.html`).

Built only from what a run folder holds (`manifest.json`, `metrics.json`, the files), so a page
can be regenerated at any time, and with relative links only and inline CSS, so the outputs
folder can be moved, archived or served as it is, offline.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from coffee_ml.reports.format import number, table
from coffee_ml.reports.records import read_records, write_atomic
from coffee_ml.run_state import RunState, settle, shown

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       max-width: 1280px; margin: 1.5rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
h3 { font-size: 1rem; margin-bottom: .3rem; }
.meta { color: #57606a; margin-top: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { font-size: .88rem; }
.status { font-weight: 600; }
.ok { color: #1a7f37; } .failed, .interrupted, .died { color: #cf222e; }
.running, .pending, .skipped, .unknown { color: #9a6700; }
.headline { background: #f6f8fa; border-left: 3px solid #0969da; padding: .35rem .6rem; margin: .3rem 0;
            white-space: pre-line; }
td.headlines { white-space: pre-line; min-width: 24rem; } td.headlines div + div { margin-top: .4rem; }
pre { background: #f6f8fa; padding: .5rem; white-space: pre-wrap; margin: .3rem 0; }
pre.error { background: #ffebe9; border-left: 3px solid #cf222e; }
small { color: #57606a; }
table.params td { min-width: 6.5rem; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _link(href: str, text: str) -> str:
    return f'<a href="{quote(href)}">{_e(text)}</a>'


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _records(run_dir: Path) -> tuple[dict[str, Any], str]:
    """The run's records and, if metrics.json is unreadable, a note saying so (one bad file must
    not take the index of every run down with it)."""
    try:
        return read_records(run_dir), ""
    except ValueError as exc:
        return {}, f"<p class='failed'>{_e(exc)}</p>"


def _cell(name: str, value: Any) -> str:
    if isinstance(value, (list, dict)):
        return f"<td><code>{_e(json.dumps(value, default=str))}</code></td>"
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"<td{' class=num' if numeric else ''}>{_e(number(name, value))}</td>"


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _is_table(value: Any) -> bool:
    """{row: {column: scalar}}: how leaderboards and other tables are recorded."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(v, dict) and all(map(_is_scalar, v.values())) for v in value.values())
    )


def _value(name: str, value: Any) -> str:
    """A recorded result as HTML: tables formatted like the reports (`reports.format.table`), a
    mapping of scalars as a two-column table, lists as lists, anything else as text."""
    if _is_table(value):
        return table(pd.DataFrame.from_dict(value, orient="index")).to_html()
    if isinstance(value, dict) and value and all(map(_is_scalar, value.values())):
        rows = "".join(f"<tr><th>{_e(k)}</th>{_cell(k, v)}</tr>" for k, v in value.items())
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        return (
            "<ul>"
            + "".join(f"<li>{_e(v if isinstance(v, str) else json.dumps(v, default=str))}</li>" for v in value)
            + "</ul>"
        )
    if isinstance(value, dict):
        return "".join(f"<h4>{_e(k)}</h4>{_value(k, v)}" for k, v in value.items())
    return f"<p>{_e(number(name, value))}</p>"


def headline_text(record: dict[str, Any]) -> str:
    """A notebook record's headline, one finding per line ('' when it recorded none)."""
    headline = record.get("headline") if isinstance(record, dict) else None
    if isinstance(headline, dict):
        return str(headline.get("text") or "")
    return str(headline or "")


def _findings(text: str) -> str:
    """A headline for the list of runs: its findings, with the `check:` lines (details of what
    needs attention, shown in full on the run's page) reduced to a count."""
    lines = text.splitlines()
    checks = sum(line.startswith("check: ") for line in lines)
    kept = [line for line in lines if not line.startswith("check: ")]
    return "\n".join(kept + ([f"⚠ {checks} check{'s' if checks > 1 else ''} (see the run)"] if checks else []))


def _stage(entry: dict[str, Any]) -> str:
    return entry.get("stage") or Path(entry.get("notebook", "")).stem


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "–"
    minutes, secs = divmod(float(seconds), 60)
    return f"{int(minutes)} min {secs:.0f} s" if minutes else f"{secs:.1f} s"


def _status(status: Any) -> str:
    return f'<span class="status {_e(status)}">{_e(status)}</span>'


def _commit(git: dict[str, Any]) -> str:
    commit = (git or {}).get("commit")
    if not commit:
        return "–"
    return f"<code>{_e(commit[:10])}</code>" + (" (uncommitted changes)" if git.get("dirty") else "")


def _parameters(manifest: dict[str, Any]) -> str:
    """Parameters as a table: one row per name, one column per notebook (blank: not passed)."""
    steps = manifest.get("notebooks", [])
    names = list(dict.fromkeys(k for s in steps for k in s.get("parameters", {})))
    if not names:
        return "<p>defaults of every notebook</p>"
    overridden = set(manifest.get("overrides") or {})
    head = "".join(f"<th>{_e(_stage(s))}</th>" for s in steps)
    rows = []
    for name in names:
        label = _e(name) + (" <small>(-p)</small>" if name in overridden else "")
        cells = "".join(
            f"<td><code>{_e(_param(s['parameters'][name]))}</code></td>"
            if name in s.get("parameters", {})
            else "<td></td>"
            for s in steps
        )
        rows.append(f"<tr><th>{label}</th>{cells}</tr>")
    return f'<div class="scroll"><table class="params"><tr><th>parameter</th>{head}</tr>{"".join(rows)}</table></div>'


def _param(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _time(value: Any) -> str:
    """An ISO time as `2025-06-01 00:00` (UTC, as everything in this project); other text as is."""
    try:
        return f"{pd.Timestamp(value):%Y-%m-%d %H:%M}"
    except (ValueError, TypeError):
        return str(value)


def _data_ranges(records: dict[str, Any]) -> str:
    ranges = {
        stage: r["data_range"]
        for stage, r in records.items()
        if isinstance(r, dict) and isinstance(r.get("data_range"), dict)
    }
    if not ranges:
        return ""
    items = "".join(
        f"<li>{_e(stage)}: {_e(_time(r.get('first', '?')))} .. {_e(_time(r.get('last', '?')))}"
        + (f" ({_e(number('rows', r['rows']))} rows)" if "rows" in r else "")
        + "</li>"
        for stage, r in ranges.items()
    )
    return f"<h2>Data range</h2><ul>{items}</ul>"


def _reports(entry: dict[str, Any], prefix: str = "") -> list[str]:
    links = [(entry.get("html"), "report"), (entry.get("code_html"), "with code"), (entry.get("output"), ".ipynb")]
    return [_link(prefix + href, text) for href, text in links if href]


def _notebook_rows(manifest: dict[str, Any], records: dict[str, Any]) -> str:
    """One row per notebook; saved files link into the run folder, saved model versions are
    named as in the registry (`coffee-ml models show ...`)."""
    rows = []
    for entry in manifest.get("notebooks", []):
        record = records.get(_stage(entry), {})
        models = record.get("saved_models", []) if isinstance(record, dict) else []
        files = ", ".join([_link(f, f) for f in entry.get("files", [])] + [f"<code>{_e(m)}</code>" for m in models])
        title = entry.get("title") or entry.get("notebook", "")
        rows.append(
            f"<tr><td><b>{_e(_stage(entry))}</b><br><small>{_e(title)}</small></td>"
            f"<td>{_status(entry.get('status', '?'))}</td>"
            f"<td class='num'>{_duration(entry.get('seconds'))}</td>"
            f"<td>{' · '.join(_reports(entry)) or '–'}</td><td>{files or '–'}</td></tr>"
        )
        if entry.get("error"):
            cell = entry.get("cell")
            where = (
                (
                    f"<p>in code cell {cell['number']} of {cell['of']} (In [{_e(cell.get('execution_count'))}]):</p>"
                    f"<pre>{_e(cell['source'])}</pre>"
                )
                if cell
                else ""
            )
            rows.append(f"<tr><td colspan='5'><pre class='error'>{_e(entry['error'])}</pre>{where}</td></tr>")
    return (
        "<div class='scroll'><table><tr><th>notebook</th><th>status</th><th>duration</th><th>reports</th>"
        f"<th>saved files and models</th></tr>{''.join(rows)}</table></div>"
    )


def _results(records: dict[str, Any]) -> str:
    parts = []
    for stage, record in records.items():
        if not isinstance(record, dict):
            continue
        text = headline_text(record)
        body = [f"<p class='headline'>{_e(text)}</p>"] if text else []
        body += [
            f"<h4>{_e(key)}</h4>{_value(key, value)}"
            for key, value in record.items()
            if key not in ("headline", "data_range")
        ]
        parts.append(f"<h3>{_e(stage)}</h3>{''.join(body)}")
    return "<h2>Results</h2>" + "".join(parts) if parts else ""


def write_run_index(run_dir: str | Path) -> Path:
    """(Re)write `<run_dir>/index.html`, and the summary page it links to first, from the run's
    manifest.json and metrics.json."""
    from coffee_ml.reports.summary import summary_headline, write_run_summary  # builds on this module

    run_dir = Path(run_dir)
    manifest, state = shown(run_dir, _read_json(run_dir / "manifest.json"))
    records, problem = _records(run_dir)
    summary = (
        f"<p class='headline'><b>{_link(write_run_summary(run_dir).name, 'Summary')}</b>: "
        f"{_e(summary_headline(manifest, records) or 'nothing recorded yet')}</p>"
    )
    run_id = manifest.get("run_id", run_dir.name)
    back = _link("../../index.html", "all runs") + " · " if run_dir.parent.name == "runs" else ""
    source = manifest.get("params_file")
    files = [_link("manifest.json", "manifest.json")] + (
        [_link("metrics.json", "metrics.json")] if (run_dir / "metrics.json").is_file() else []
    )
    body = (
        f"<p>{back}{' · '.join(files)}</p>"
        f"<h1>{_e(manifest.get('name', run_id))} {_status(manifest.get('status', '?'))}</h1>"
        f"<p class='meta'>run <code>{_e(run_id)}</code> · "
        f"started {_e(_time(manifest.get('started', '?')))} UTC · "
        f"{_duration(manifest.get('total_seconds'))} · commit {_commit(manifest.get('git', {}))}"
        + (f" · params <code>{_e(source)}</code>" if source else "")
        + "</p>"
        + _state_line(state, manifest)
        + summary
        + _data_ranges(records)
        + f"<h2>Notebooks</h2>{_notebook_rows(manifest, records)}"
        + f"<h2>Parameters</h2>{_parameters(manifest)}"
        + problem
        + _results(records)
    )
    return write_atomic(run_dir / "index.html", _page(f"{manifest.get('name', run_id)} · {run_id}", body))


def _state_line(state: RunState, manifest: dict[str, Any]) -> str:
    """Why a run shows as died, unknown or interrupted (its status alone does not say where), or
    failed without a notebook's error to say why (a full disk while writing the record)."""
    unexplained = state.status == "failed" and not any(e.get("error") for e in manifest.get("notebooks", []))
    if not state.reason or not (state.status in ("died", "unknown", "interrupted") or unexplained):
        return ""
    return f"<p class='{_e(state.status)}'>{_e(state.reason)}</p>"


def _run_row(run_dir: Path) -> tuple[str, str]:
    """(sort key, table row) for one run folder of outputs/index.html."""
    manifest, state = shown(run_dir, _read_json(run_dir / "manifest.json"))
    records, _ = _records(run_dir)
    prefix = f"runs/{run_dir.name}/"
    headlines = [f"<div>{_e(state.reason)}</div>"] if _state_line(state, manifest) else []
    for entry in manifest.get("notebooks", []):
        stage = _stage(entry)
        text = _findings(headline_text(records.get(stage, {})))
        if entry.get("error"):
            text = f"failed: {entry['error'].splitlines()[0]}"
        if text:
            headlines.append(f"<div><b>{_e(stage)}</b>: {_e(text)}</div>")
    summary = [_link(prefix + "summary.html", "summary")] if (run_dir / "summary.html").is_file() else []
    reports = " · ".join(
        summary + [_link(prefix + e["html"], _stage(e)) for e in manifest.get("notebooks", []) if e.get("html")]
    )
    started = manifest.get("started", "")
    row = (
        f"<tr><td>{_link(prefix + 'index.html', run_dir.name)}<br><small>{_e(_time(started))} UTC</small></td>"
        f"<td>{_e(manifest.get('name', ''))}</td><td>{_status(manifest.get('status', 'unknown'))}</td>"
        f"<td class='num'>{_duration(manifest.get('total_seconds'))}</td>"
        f"<td>{_commit(manifest.get('git', {}))}</td><td class='headlines'>{''.join(headlines) or '–'}</td>"
        f"<td>{reports or '–'}</td></tr>"
    )
    return f"{started}|{run_dir.name}", row


def _batch_row(batch_dir: Path) -> tuple[str, str]:
    """(sort key, table row) for one batch folder (`coffee-ml run <batch file>`) of outputs/index.html."""
    state = _read_json(batch_dir / "batch.json")
    counts = Counter(str(entry.get("status", "?")) for entry in state.get("entries", []))
    started = state.get("started", "")
    row = (
        f"<tr><td>{_link(f'batches/{batch_dir.name}/index.html', batch_dir.name)}"
        f"<br><small>{_e(_time(started))} UTC</small></td><td>{_e(state.get('name', ''))}</td>"
        f"<td>{_status(state.get('status', 'unknown'))}</td>"
        f"<td class='num'>{_duration(state.get('total_seconds'))}</td>"
        f"<td>{' · '.join(f'{n} {_status(status)}' for status, n in counts.items()) or '–'}</td></tr>"
    )
    return f"{started}|{batch_dir.name}", row


def _batches(outputs: Path) -> str:
    """The Batches section of outputs/index.html, newest first ('' when there are none): a batch's
    runs are listed among every run, but only the batch's page says which they are and how it went."""
    batches = outputs / "batches"
    folders = [p for p in batches.iterdir() if (p / "batch.json").is_file()] if batches.is_dir() else []
    rows = [row for _, row in sorted((_batch_row(p) for p in folders), reverse=True)]
    if not rows:
        return ""
    return (
        "<h2>Batches</h2><div class='scroll'><table><tr><th>batch</th><th>name</th><th>status</th>"
        f"<th>duration</th><th>runs</th></tr>{''.join(rows)}</table></div><h2>Runs</h2>"
    )


def write_outputs_index(outputs: str | Path) -> Path:
    """(Re)write `<outputs>/index.html`: every batch folder under batches/ (if any), then every
    run folder under runs/, newest first."""
    outputs = Path(outputs)
    runs = outputs / "runs"
    folders = [p for p in runs.iterdir() if (p / "manifest.json").is_file()] if runs.is_dir() else []
    for folder in folders:  # a run whose process died says so in its own manifest from now on
        if _read_json(folder / "manifest.json").get("status") == "running":
            settle(folder)
    rows = [row for _, row in sorted((_run_row(p) for p in folders), reverse=True)]
    body = (
        "<h1>coffee-ml runs</h1>"
        + _batches(outputs)
        + "<p class='meta'>every run, newest first; open a run for its parameters, reports and leaderboards</p>"
        + (
            "<div class='scroll'><table><tr><th>run</th><th>name</th><th>status</th><th>duration</th>"
            f"<th>commit</th><th>headlines</th><th>reports</th></tr>{''.join(rows)}</table></div>"
            if rows
            else "<p>no runs yet: <code>coffee-ml run params/quickstart.yaml</code></p>"
        )
    )
    outputs.mkdir(parents=True, exist_ok=True)
    return write_atomic(outputs / "index.html", _page("coffee-ml runs", body))
