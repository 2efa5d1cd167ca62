"""Render an executed notebook as two static HTML pages: the reviewer report and the full notebook.

A reviewer reads results, not code: `NN_stage.html` hides every input, puts the cells tagged
`headline` right under the title, drops stderr (progress bars, warnings) and outputs that need a
live kernel (widgets), and carries the notebook's first Markdown heading as its `<title>`.
`NN_stage.code.html` is the same notebook with its code, for whoever wants to check how a number
was made. Both pages are self-contained: images stay embedded, and no script or style is fetched
from a CDN, so a run folder opens offline and can be moved or archived as it is.

Executed notebooks print absolute local paths (the run folder, the checkout, the home directory).
They mean nothing on a reviewer's machine and leak the author's layout, so `scrub_notebook`
rewrites them to relative or generic ones before anything is rendered.
"""

from __future__ import annotations

import copy
import re
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
from nbformat import NotebookNode

from coffee_ml import config
from coffee_ml.reports.records import write_atomic

if TYPE_CHECKING:
    from nbconvert import HTMLExporter

HEADLINE_TAG = "headline"
REVIEWER_SUFFIX = ".html"
CODE_SUFFIX = ".code.html"
_ERROR_CELL_TAG = "papermill-error-cell-tag"  # papermill's "an exception was encountered" banner
_KERNEL_ONLY = ("application/vnd.jupyter.widget-view+json",)  # needs a running kernel to mean anything
_TEXT_MIMES = ("text/plain", "text/html", "text/markdown", "text/latex")

# The lab template without its CDN scripts (require.js, MathJax, Mermaid: the notebooks use none of
# them) and with outputs that scroll sideways instead of being cut off.
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock %}
{% block html_head_js_mathjax %}{% endblock %}
{% block html_head_js_mermaidjs %}{% endblock %}
{% block extra_css %}<style>
body { max-width: 1200px; margin: 0 auto; }
.jp-OutputArea-output { overflow-x: auto; }
.jp-RenderedHTMLCommon table { font-variant-numeric: tabular-nums; }
.jp-RenderedImage img { max-width: 100%; height: auto; }
</style>{% endblock extra_css %}
"""


def _path_rules(run_dir: Path | None) -> list[tuple[re.Pattern[str], str, str]]:
    """(pattern, replacement before a '/', replacement alone), most specific path first."""
    places: dict[str, tuple[str, str]] = {}

    def add(path: str | Path | None, inside: str, alone: str) -> None:
        if not path:
            return
        for form in {str(path), str(Path(path).resolve())}:
            if len(form) > 1 and form not in places:  # never "/": it would rewrite every path
                places[form] = (inside, alone)

    if run_dir is not None:
        add(run_dir, "", ".")
    add(config.outputs_dir(), "<outputs>/", "<outputs>")
    add(config.PROJECT_ROOT, "", ".")
    for key in ("purelib", "platlib", "stdlib"):
        add(sysconfig.get_paths().get(key), "<python>/", "<python>")
    add(Path.home(), "~/", "~")
    # a path must end where a name ends: /work/main must not rewrite /work/main2
    return [
        (re.compile(re.escape(form) + r"(?:(/)|(?![\w.\-]))"), inside, alone)
        for form, (inside, alone) in sorted(places.items(), key=lambda item: -len(item[0]))
    ]


def path_scrubber(run_dir: str | Path | None = None) -> Callable[[str], str]:
    """A function that rewrites absolute local paths in text: the run folder to relative names,
    the outputs folder to `<outputs>`, the checkout to project-relative paths, Python's own
    folders to `<python>` and the home directory to `~`."""
    rules = _path_rules(Path(run_dir) if run_dir else None)

    def scrub(text: str) -> str:
        for pattern, inside, alone in rules:
            text = pattern.sub(lambda m: inside if m.group(1) else alone, text)
        return text

    return scrub


def _scrub_value(value: str | list[str], scrub: Callable[[str], str]) -> str | list[str]:
    return [scrub(v) for v in value] if isinstance(value, list) else scrub(value)


def _scrub_tree(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_tree(v, scrub) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_tree(v, scrub) for v in value]
    return value


def scrub_notebook(nb: NotebookNode, run_dir: str | Path | None = None) -> NotebookNode:
    """Rewrite absolute local paths in every source and text output of `nb` and in papermill's
    metadata (input/output path, parameters), in place; images untouched."""
    scrub = path_scrubber(run_dir)
    if "papermill" in nb.metadata:
        nb.metadata["papermill"] = nbformat.from_dict(_scrub_tree(nb.metadata["papermill"], scrub))
    for cell in nb.cells:
        cell.source = scrub(cell.source)
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                output.text = scrub(output.text)
            elif output.output_type == "error":
                output.evalue = scrub(output.evalue)
                output.traceback = [scrub(line) for line in output.traceback]
            elif "data" in output:
                for mime in _TEXT_MIMES:
                    if mime in output.data:
                        output.data[mime] = _scrub_value(output.data[mime], scrub)
    return nb


def notebook_title(nb: NotebookNode, fallback: str = "Notebook") -> str:
    """The text of the notebook's first Markdown heading (the page's <title>), else `fallback`."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if re.match(r"#{1,6}\s", line):
                return line.lstrip("#").strip()
    return fallback


def _is_error_banner(cell: NotebookNode) -> bool:
    return _ERROR_CELL_TAG in cell.metadata.get("tags", [])


def reviewer_notebook(nb: NotebookNode) -> NotebookNode:
    """A copy of `nb` as a reviewer reads it: papermill's error banner (if it failed), the title
    cell, then the headline cells, then everything else in order; stderr and kernel-only outputs dropped, and
    code cells left without output removed (their input is hidden anyway)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                o
                for o in cell.outputs
                if not (o.output_type == "stream" and o.get("name") == "stderr")
                and not any(m in o.get("data", {}) for m in _KERNEL_ONLY)
            ]
    cells = [c for c in nb.cells if c.cell_type != "code" or c.outputs]
    banner = cells[:1] if cells and _is_error_banner(cells[0]) else []  # its "stopped here" marker stays put
    rest = cells[len(banner) :]
    title = rest[:1] if rest and rest[0].cell_type == "markdown" else []
    headline = [c for c in rest if HEADLINE_TAG in c.metadata.get("tags", [])]
    nb.cells = [*banner, *title, *headline, *(c for c in rest[len(title) :] if c not in headline)]
    nb.metadata.pop("widgets", None)  # widget state would pull the widget manager from a CDN
    return nb


def _exporter(**options: bool) -> HTMLExporter:
    import jinja2
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"coffee_ml.html.j2": _TEMPLATE})],
        template_file="coffee_ml.html.j2",
        **options,
    )


def export_reports(executed_ipynb: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Write `<stem>.html` (reviewer) and `<stem>.code.html` (full) for an executed notebook.

    `out_dir` defaults to the notebook's folder (the run folder); paths under it are written as
    relative names. Returns {"reviewer": path, "code": path, "title": str}.
    """
    executed_ipynb = Path(executed_ipynb)
    out_dir = Path(out_dir) if out_dir else executed_ipynb.parent
    nb = scrub_notebook(nbformat.read(executed_ipynb, as_version=4), out_dir)
    title = notebook_title(nb, fallback=executed_ipynb.stem)
    nb.metadata["title"] = title
    stem = executed_ipynb.stem
    pages = {
        "reviewer": (
            out_dir / f"{stem}{REVIEWER_SUFFIX}",
            _exporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True),
            reviewer_notebook(nb),
        ),
        "code": (out_dir / f"{stem}{CODE_SUFFIX}", _exporter(), nb),
    }
    written: dict[str, Any] = {}
    for kind, (target, exporter, node) in pages.items():
        body, _ = exporter.from_notebook_node(node)
        written[kind] = write_atomic(target, body)
    return {**written, "title": title}
