"""The page of a batch (`outputs/batches/<id>/index.html`): one row per entry of the batch file.

Built only from the batch's `batch.json`, with the look and the relative links of the run pages
(`reports.index`), so it can be rewritten at any time: as each entry starts and finishes, and by
hand from a folder copied elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coffee_ml.reports.index import _duration, _e, _link, _page, _read_json, _status, _time
from coffee_ml.reports.records import write_atomic


def _failure(entry: dict[str, Any]) -> str:
    """Where and why an entry failed: the notebook, the code cell (with the start of its source)
    and the error; '–' for an entry that did not fail."""
    if not entry.get("error"):
        return "–"
    cell = entry.get("cell")
    where = (f"<b>{_e(entry['notebook'])}</b>" if entry.get("notebook") else "") + (
        f", code cell {_e(cell['number'])} of {_e(cell['of'])}" if cell else ""
    )
    source = f"<pre>{_e(cell['source'])}</pre>" if cell and cell.get("source") else ""
    return f"{where}<pre class='error'>{_e(entry['error'])}</pre>{source}"


def _row(entry: dict[str, Any]) -> str:
    overrides = entry.get("overrides") or {}
    params = f"<code>{_e(entry.get('params', ''))}</code>" + (
        f" <small>{_e(json.dumps(overrides, default=str))}</small>" if overrides else ""
    )
    run = _link(entry["run_index"], entry.get("run_id") or "run") if entry.get("run_index") else "–"
    log = _link(entry["log"], "log") if entry.get("log") else "–"
    return (
        f"<tr><td><b>{_e(entry.get('label', ''))}</b><br><small>{_e(entry.get('symbol') or '')}</small></td>"
        f"<td>{params}</td><td>{_status(entry.get('status', '?'))}</td>"
        f"<td class='num'>{_duration(entry.get('seconds'))}</td><td>{run}</td><td>{log}</td>"
        f"<td>{_failure(entry)}</td></tr>"
    )


def write_batch_index(batch_dir: str | Path) -> Path:
    """(Re)write `<batch_dir>/index.html` from its batch.json."""
    batch_dir = Path(batch_dir)
    state = _read_json(batch_dir / "batch.json")
    batch_id = state.get("batch_id", batch_dir.name)
    rows = "".join(_row(entry) for entry in state.get("entries", []))
    body = (
        f"<p>{_link('../../index.html', 'all runs')} · {_link('batch.json', 'batch.json')}</p>"
        f"<h1>{_e(state.get('name', batch_id))} {_status(state.get('status', '?'))}</h1>"
        f"<p class='meta'>batch <code>{_e(batch_id)}</code> · started {_e(_time(state.get('started', '?')))} UTC"
        f" · {_duration(state.get('total_seconds'))} · {_e(state.get('jobs', '?'))} parallel process(es)"
        + (f" · batch file <code>{_e(state['batch_file'])}</code>" if state.get("batch_file") else "")
        + "</p>"
        "<div class='scroll'><table><tr><th>entry</th><th>params</th><th>status</th><th>duration</th>"
        f"<th>run</th><th>log</th><th>failure</th></tr>{rows}</table></div>"
    )
    return write_atomic(batch_dir / "index.html", _page(f"{state.get('name', batch_id)} · batch {batch_id}", body))
