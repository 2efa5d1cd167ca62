"""Reviewer and full HTML reports from executed notebooks, and the static index pages of runs."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from coffee_ml import config
from coffee_ml.reports import export
from coffee_ml.reports.index import write_outputs_index, write_run_index

PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cfc00000000301010018dd8db00000000049454e44ae426082"
    )
).decode()


class Links(HTMLParser):
    """Every href/src of a page, and its <title>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self._in_title = tag == "title"
        self.urls += [v for k, v in attrs if k in ("href", "src") and v]

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag):
        self._in_title = False


def parse(page: Path) -> Links:
    links = Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


def assert_links_resolve(page: Path) -> list[str]:
    """Every link of `page` is relative and points at an existing file (or an anchor in the page)."""
    local = []
    for url in parse(page).urls:
        if url.startswith(("data:", "#")):
            continue
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and not parts.path.startswith("/"), f"{page.name}: {url}"
        target = page.parent / unquote(parts.path)
        assert target.is_file(), f"{page.name} links to missing {url}"
        local.append(unquote(parts.path))
    return local


def without_images(text: str) -> str:
    """Page text minus embedded images (base64 may spell anything, '/root' included)."""
    return re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=\s]+", "", text)


def executed_notebook(run_dir: Path) -> NotebookNode:
    """What papermill leaves in a run folder: parameters cells, outputs with local paths, stderr."""
    home = Path.home()
    nb = new_notebook(
        cells=[
            new_markdown_cell("# 02 · Training: a test report\n\nWhat this notebook shows."),
            new_code_cell("symbol = 'BTCUSDT'\nrun_dir = None", metadata={"tags": ["parameters"]}),
            new_code_cell(f"# Parameters\nrun_dir = {str(run_dir)!r}\n", metadata={"tags": ["injected-parameters"]}),
            new_markdown_cell("## Training"),
            new_code_cell(
                "SECRET_CODE_fit_models()\nfig = plots.loss_curves(fitted)",
                outputs=[
                    new_output("stream", name="stderr", text="epoch 1/3: 100%|##########| 18/18 [00:01<00:00]\n"),
                    new_output(
                        "stream",
                        name="stdout",
                        text=f"saved to {run_dir}/features.parquet\nmodels in {config.PROJECT_ROOT}/outputs/models\n"
                        f"cache {home}/.cache/coffee\n",
                    ),
                    new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
                ],
            ),
            new_code_cell(
                "display(headline)",
                metadata={"tags": ["headline"]},
                outputs=[
                    new_output(
                        "display_data",
                        data={"text/html": "<p>HEADLINE: hybrid beats naive</p>", "text/plain": "HEADLINE"},
                    )
                ],
            ),
            new_code_cell(
                "progress()",
                outputs=[
                    new_output(
                        "display_data",
                        data={
                            "application/vnd.jupyter.widget-view+json": {
                                "model_id": "x",
                                "version_major": 2,
                                "version_minor": 0,
                            },
                            "text/plain": "WIDGET_FALLBACK",
                        },
                    )
                ],
            ),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["papermill"] = {
        "input_path": str(config.NOTEBOOKS_DIR / "02_training.ipynb"),
        "output_path": str(run_dir / "02_training.ipynb"),
        "parameters": {"run_dir": str(run_dir)},
    }
    return nb


@pytest.fixture
def reports(tmp_path):
    run_dir = tmp_path / "runs" / "20250101-000000-demo-abcd"
    run_dir.mkdir(parents=True)
    nbformat.write(executed_notebook(run_dir), run_dir / "02_training.ipynb")
    return run_dir, export.export_reports(run_dir / "02_training.ipynb", run_dir)


def test_reviewer_report_hides_code_and_leads_with_the_headline(reports):
    run_dir, pages = reports
    assert pages["reviewer"] == run_dir / "02_training.html" and pages["code"] == run_dir / "02_training.code.html"
    html = pages["reviewer"].read_text()
    assert parse(pages["reviewer"]).title == "02 · Training: a test report" == pages["title"]
    assert "SECRET_CODE" not in html and "run_dir" not in html  # inputs, both parameters cells
    assert "epoch 1/3" not in html and "WIDGET_FALLBACK" not in html  # stderr bars, widgets
    text = re.sub(r"<[^>]+>", " ", html[html.index("<body") :])
    assert text.index("02 · Training") < text.index("HEADLINE: hybrid") < text.index("saved to")
    assert html.count("<img") == 1 and f"data:image/png;base64,{PNG}" in html
    assert "<script src" not in html and "cdnjs" not in html  # opens offline
    assert pages["reviewer"].stat().st_size < 3_000_000


def test_full_report_has_the_code(reports):
    _, pages = reports
    html = pages["code"].read_text()
    assert "SECRET_CODE" in html and "epoch 1/3" in html and html.count("<img") == 1
    assert parse(pages["code"]).title == "02 · Training: a test report"


def test_no_absolute_local_paths_in_reports_or_notebook(reports):
    run_dir, pages = reports
    home, root = str(Path.home()), str(config.PROJECT_ROOT)
    for page in (pages["reviewer"], pages["code"]):
        text = without_images(page.read_text())
        assert str(run_dir) not in text and str(run_dir.parent) not in text
        assert root not in text and home not in text
        assert "saved to features.parquet" in text and "models in outputs/models" in text
        assert "cache ~/.cache/coffee" in text


def test_scrubber_rewrites_whole_path_names_only(tmp_path):
    scrub = export.path_scrubber(tmp_path / "run")
    root = config.PROJECT_ROOT
    assert scrub(f"{tmp_path}/run/a.csv, {tmp_path}/run and {root}/lib/x.py") == "a.csv, . and lib/x.py"
    assert scrub(f"{root}2/x {tmp_path}/runner") == f"{root}2/x {tmp_path}/runner"  # other folders: left alone


def test_scrub_notebook_rewrites_papermill_metadata(tmp_path):
    run_dir = tmp_path / "run"
    nb = export.scrub_notebook(executed_notebook(run_dir), run_dir)
    assert nb.metadata.papermill.parameters.run_dir == "."
    assert nb.metadata.papermill.input_path == "notebooks/02_training.ipynb"
    assert nb.metadata.papermill.output_path == "02_training.ipynb"
    assert nb.cells[2].source == "# Parameters\nrun_dir = '.'\n"


def test_title_falls_back_to_the_file_name(tmp_path):
    nb = new_notebook(
        cells=[new_code_cell("1", outputs=[new_output("execute_result", data={"text/plain": "1"}, execution_count=1)])]
    )
    nbformat.write(nb, tmp_path / "99_misc.ipynb")
    pages = export.export_reports(tmp_path / "99_misc.ipynb")
    assert parse(pages["reviewer"]).title == "99_misc"


def _fake_run(outputs: Path, run_id: str, started: str, status: str = "ok", **records) -> Path:
    run_dir = outputs / "runs" / run_id
    run_dir.mkdir(parents=True)
    entries = []
    for stage in ("00_data", "02_training"):
        for suffix in (".ipynb", ".html", ".code.html"):
            (run_dir / f"{stage}{suffix}").write_text("<html></html>")
        entries.append(
            {
                "notebook": f"{stage}.ipynb",
                "stage": stage,
                "title": f"{stage} title",
                "parameters": {"symbol": "BTCUSDT", "models": ["hybrid", "drift"]}
                if stage == "02_training"
                else {"symbol": "BTCUSDT"},
                "status": "ok",
                "seconds": 12.5,
                "output": f"{stage}.ipynb",
                "html": f"{stage}.html",
                "code_html": f"{stage}.code.html",
                "files": [],
            }
        )
    (run_dir / "features BTC.parquet").write_bytes(b"x")
    entries[0]["files"] = ["features BTC.parquet"]
    if status == "failed":
        entries[1].update(
            status="failed",
            error="ValueError: no candles for BTCUSDT 1h in [2030-01-01, ...)",
            cell={
                "index": 4,
                "number": 3,
                "of": 9,
                "execution_count": 3,
                "source": "candles = store.load_candles(symbol)",
            },
        )
    manifest = {
        "run_id": run_id,
        "name": "demo",
        "params_file": "params/demo.yaml",
        "status": status,
        "started": started,
        "total_seconds": 75.0,
        "overrides": {"symbol": "BTCUSDT"},
        "git": {"commit": "0123456789abcdef", "dirty": True},
        "notebooks": entries,
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    if records:
        (run_dir / "metrics.json").write_text(json.dumps(records))
    return run_dir


def test_run_index_shows_parameters_results_failure_and_links(tmp_path):
    records = {
        "00_data": {
            "headline": {"text": "2,208 candles, 0 gaps", "items": {"rows": 2208}},
            "data_range": {"first": "2025-06-01 00:00", "last": "2025-08-31 23:00", "rows": 2208},
        },
        "02_training": {
            "headline": {"text": "hybrid beats naive (p < 1e-4)", "items": {}},
            "leaderboard": {
                "hybrid": {"mae": 512.345, "skill": 0.0123, "dm_pvalue": 3e-9},
                "naive": {"mae": 520.0, "skill": 0.0, "dm_pvalue": None},
            },
            "saved_models": ["BTCUSDT/1h/hybrid/v0001"],
        },
    }
    run_dir = _fake_run(tmp_path, "20250101-000000-demo-abcd", "2025-01-01T00:00:00+00:00", "failed", **records)
    index = write_run_index(run_dir)
    html = index.read_text()
    (tmp_path / "index.html").write_text("")  # the page links back to outputs/index.html
    linked = assert_links_resolve(index)
    for stage in ("00_data", "02_training"):
        assert {f"{stage}.html", f"{stage}.code.html", f"{stage}.ipynb"} <= set(linked)
    assert {"features BTC.parquet", "manifest.json", "metrics.json", "../../index.html"} <= set(linked)
    assert "<th>models</th>" in html and '["hybrid", "drift"]' in html.replace("&quot;", '"')
    assert "<th>symbol <small>(-p)</small></th>" in html  # the overridden parameter is marked
    assert "0123456789" in html and "uncommitted" in html
    assert "2025-06-01 00:00 .. 2025-08-31 23:00" in html and "2,208 rows" in html
    assert "hybrid beats naive" in html and "512.35" in html and "+1.2%" in html and "&lt; 1e-4" in html
    assert "BTCUSDT/1h/hybrid/v0001" in html
    assert "ValueError: no candles for BTCUSDT 1h" in html and "code cell 3 of 9" in html
    assert "store.load_candles(symbol)" in html
    assert "http" not in re.sub(r"<style.*?</style>", "", html, flags=re.S)  # no external resource


def test_outputs_index_lists_runs_newest_first_with_headlines(tmp_path):
    _fake_run(
        tmp_path,
        "20250101-000000-demo-aaaa",
        "2025-01-01T00:00:00+00:00",
        **{"02_training": {"headline": {"text": "OLDEST headline", "items": {}}}},
    )
    _fake_run(tmp_path, "20250301-000000-demo-cccc", "2025-03-01T00:00:00+00:00", "failed")
    _fake_run(
        tmp_path,
        "20250201-000000-demo-bbbb",
        "2025-02-01T00:00:00+00:00",
        **{"02_training": {"headline": {"text": "MIDDLE headline", "items": {}}}},
    )
    (tmp_path / "runs" / "not-a-run").mkdir()  # no manifest: ignored
    for run_dir in (tmp_path / "runs").glob("2025*"):
        write_run_index(run_dir)
    index = write_outputs_index(tmp_path)
    html = index.read_text()
    linked = assert_links_resolve(index)
    runs = [p.split("/")[1] for p in linked if p.endswith("/index.html")]
    assert runs == ["20250301-000000-demo-cccc", "20250201-000000-demo-bbbb", "20250101-000000-demo-aaaa"]
    assert "runs/20250201-000000-demo-bbbb/02_training.html" in linked
    assert html.index("failed: ValueError") < html.index("MIDDLE headline") < html.index("OLDEST headline")


def test_outputs_index_without_runs(tmp_path):
    html = write_outputs_index(tmp_path / "fresh").read_text()
    assert "no runs yet" in html
