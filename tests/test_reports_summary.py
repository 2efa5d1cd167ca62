"""The run summary page: built from manifest.json and metrics.json only (records in the shapes the
notebooks write, trimmed), every section linking its report, the naive row always in the
leaderboard, numbers formatted as in the reports, and notebooks that are absent, failed or not run
yet never breaking the page."""

from __future__ import annotations

import base64
import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from coffee_ml import config
from coffee_ml.reports.index import write_run_index
from coffee_ml.reports.summary import summary_headline, write_run_summary

STAGES = [
    "00_data",
    "01_features",
    "02_training",
    "03_backtesting",
    "04_regimes",
    "05_hpo",
    "06_ensembles",
    "07_anomalies",
    "08_production",
]


def _scores(
    skill: float | None, dm_p: float | None, dm_stat: float | None, dir_acc: float | None = 0.493, **more: Any
) -> dict[str, Any]:
    """A leaderboard row as evaluation.summary_table records it (the columns the summary reads)."""
    called = dir_acc is not None
    return {
        "mae": 1247.76,
        "naive_mae": 1241.42,
        "skill": skill,
        "dm_stat": dm_stat,
        "dm_pvalue": dm_p,
        "dir_share": 1.0 if called else 0.0,
        "dir_acc": dir_acc,
        "dir_acc_lo": 0.352 if called else None,
        "dir_acc_hi": 0.636 if called else None,
        "dir_base_called": 0.4912 if called else None,
        "brier_skill": -0.0004 if called else None,
        "coverage_80": 0.679,
        "coverage_95": 0.924,
        "origins": 1050.0,
        "verdict": "baseline" if skill == 0.0 and dm_p is None else "beats naive: no",
        **more,
    }


RECORDS: dict[str, Any] = {
    "00_data": {
        "headline": {
            "text": "BTCUSDT 1h: coverage and gaps\n16,800 of 16,800 1h bars (100.0% coverage)",
            "items": {
                "symbol": "BTCUSDT",
                "interval": "1h",
                "first": "2024-01-01T00:00:00+00:00",
                "last": "2025-11-30T23:00:00+00:00",
                "bars": 16800,
                "expected_bars": 16800,
                "coverage": 1.0,
                "gaps": 0,
                "missing_bars": 0,
            },
        },
        "data_range": {"first": "2024-01-01T00:00:00+00:00", "last": "2025-11-30T23:00:00+00:00", "rows": 16800},
    },
    "01_features": {"headline": {"text": "58 features kept", "items": {"features": 58}}},
    "02_training": {
        "headline": {
            "text": "Test split: 1,050 origins",
            "items": {
                "split": "test",
                "origins": 1050,
                "horizon": 24,
                "first_origin": "2025-10-17T00:00:00+00:00",
                "last_origin": "2025-11-29T00:00:00+00:00",
            },
        },
        "leaderboard": {
            "lstm_fast": _scores(-0.005108, 0.2924, 1.05),
            "drift": _scores(-0.1882, 0.00162, 3.16),
            "naive": _scores(0.0, None, None, dir_acc=None),
        },
        "saved_models": ["BTCUSDT/1h/lstm_fast/v0002"],
    },
    "03_backtesting": {
        "headline": {
            "text": "Walk-forward backtest, 4 folds",
            "items": {
                "method": "walk_forward",
                "folds": 4,
                "origins": 5213,
                "first_origin": "2025-04-26T19:00:00+00:00",
                "last_origin": "2025-11-29T23:00:00+00:00",
            },
        },
        "leaderboard": {
            "hybrid": _scores(0.0, None, None, dir_acc=None, sharpe=None, hold_sharpe=0.0106),
            "lstm_fast": _scores(-0.01075, 1.83e-05, 4.29, sharpe=-5.268, hold_sharpe=0.0106),
            "naive": _scores(0.0, None, None, dir_acc=None, sharpe=None, hold_sharpe=0.0106),
        },
    },
    "04_regimes": {
        "headline": {
            "text": "BTCUSDT 1h regimes (hmm): SIDEWAYS now\ncheck: the regimes do not tell what returns follow",
            "items": {
                "symbol": "BTCUSDT",
                "interval": "1h",
                "method": "hmm",
                "regime": "SIDEWAYS",
                "confidence": 0.9995,
                "since": "2025-11-29T22:00:00+00:00",
            },
        },
        "data_range": {"first": "2024-06-01T00:00:00+00:00", "last": "2025-11-30T23:00:00+00:00", "rows": 13152},
        "regime_stats": {"BULL": {"share": 0.31}, "SIDEWAYS": {"share": 0.3669}, "BEAR": {"share": 0.3231}},
        "current": {
            "method": "hmm",
            "regime": "BULL",
            "confidence": 72.3,
            "since": "2025-11-28T05:00:00+00:00",
            "since_bound": False,
            "as_of": "2025-11-30T23:00:00+00:00",
        },
    },
    "05_hpo": {
        "headline": {
            "text": "BTCUSDT 1h lstm_fast · optuna search on mae",
            "items": {
                "model": "lstm_fast",
                "method": "optuna",
                "metric": "mae",
                "best_params": {"hidden": 32, "window": 20},
                "val": 1121.54,
                "test": 1268.45,
                "naive_val": 1117.71,
                "naive_test": 1256.36,
                "trials": 4,
                "pruned": 1,
                "vs_naive_val": 0.003426,
                "vs_naive_test": 0.009624,
                "model_ref": "BTCUSDT/1h/lstm_fast/v0003",
            },
        },
        "best_params": {"hidden": 32, "window": 20},
    },
    "06_ensembles": {
        "headline": {"text": "BTCUSDT 1h ensembles", "items": {"members": ["lstm_fast", "gbm"]}},
        "leaderboard": {
            "gbm": _scores(-0.00807, 0.0579, 1.90, sharpe=-25.2, hold_sharpe=-0.577),
            "stacking": _scores(-0.0199, 5.5e-04, 3.4, sharpe=-15.2, hold_sharpe=-0.577, coverage_80=0.70),
        },
    },
    "07_anomalies": {
        "headline": {"text": "BTCUSDT 1h anomalies: 12 events", "items": {"events": 12}},
        "events": {
            str(i): {
                "start": f"2025-11-{10 + i}T03:00:00+00:00",
                "end": f"2025-11-{10 + i}T05:00:00+00:00",
                "type": "flash_crash" if i == 11 else "statistical",
                "score": 60.0 + i,
                "severity": "CRITICAL" if i == 11 else "HIGH",
                "final": i != 11,
                "max_score": 60.0 + i,
            }
            for i in range(12)
        },
        "data_range": {"first": "2025-08-02T23:00:00+00:00", "last": "2025-11-30T23:00:00+00:00", "rows": 2881},
    },
    "08_production": {
        "promoted": {
            "ref": "BTCUSDT/1h/gbm/v0003",
            "model": "gbm",
            "version": "v0003",
            "metric": "mae",
            "score": 1037.84,
            "reason": "lowest walk-forward MAE among saved versions",
            "promoted": True,
        },
        "monitor": {"verdict": "OK: gbm v0003 holds up", "degraded": False, "reasons": []},
        "sidebar": {
            "predictions": [
                {
                    "timestamp": f"2025-12-01T0{h}:00:00+00:00",
                    "price": 90000.0 + 10 * h,
                    "lower": 89000.0,
                    "upper": 91000.0,
                    "confidence": 52.0,
                }
                for h in range(4)
            ],
            "model": "gbm",
            "version": "v0003",
            "level": 0.8,
            "as_of": "2025-11-30T23:00:00+00:00",
        },
    },
}


def _entry(stage: str, status: str = "ok", **more: Any) -> dict[str, Any]:
    """A manifest entry as the runner writes it (reports only for a notebook that ran)."""
    entry = {"notebook": f"{stage}.ipynb", "stage": stage, "parameters": {}, "status": status, **more}
    if status in ("ok", "failed"):
        entry |= {"html": f"{stage}.html", "code_html": f"{stage}.code.html", "output": f"{stage}.ipynb"}
    return entry


def _run_dir(
    tmp_path: Path, entries: list[dict[str, Any]], records: dict[str, Any] | None = None, status: str = "ok"
) -> Path:
    run_dir = tmp_path / "runs" / "20261126-132144-quickstart-e1bb"
    run_dir.mkdir(parents=True)
    manifest = {
        "run_id": run_dir.name,
        "name": "quickstart",
        "status": status,
        "started": "2026-11-26T13:21:44+00:00",
        "params": {"parameters": {"symbol": "BTCUSDT", "interval": "1h"}},
        "notebooks": entries,
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    if records is not None:
        (run_dir / "metrics.json").write_text(json.dumps(records))
    return run_dir


def _page(run_dir: Path) -> str:
    return write_run_summary(run_dir).read_text(encoding="utf-8")


@pytest.fixture
def full_run(tmp_path) -> Path:
    return _run_dir(tmp_path, [_entry(s) for s in STAGES], copy.deepcopy(RECORDS))


def test_every_section_links_its_report_and_the_index_links_the_summary(full_run):
    page = _page(full_run)
    for title in (
        "Data coverage",
        "Leaderboard: every model and ensemble",
        "Current regime",
        "Latest anomaly events",
        "Production model",
    ):
        assert f"<h2>{title}" in page
    for stage in (
        "00_data",
        "02_training",
        "03_backtesting",
        "04_regimes",
        "05_hpo",
        "06_ensembles",
        "07_anomalies",
        "08_production",
    ):
        assert f'<a href="{stage}.html">{stage}</a>' in page
    assert '<a href="index.html">run page</a>' in page
    assert '<a href="summary.html">Summary</a>' in write_run_index(full_run).read_text(encoding="utf-8")


def test_headline_says_nothing_beats_naive_and_the_rest_in_one_line(full_run):
    headline = summary_headline(json.loads((full_run / "manifest.json").read_text()), RECORDS)
    assert headline == (
        "BTCUSDT 1h · no model beats naive (closest: lstm_fast, 02_training: skill -0.5% vs naive, "
        "DM p = 0.292) · regime BULL 72% · 12 anomaly events in the last 120 days · "
        "production: gbm v0003"
    )
    assert f"<p class='headline'>{headline}</p>" in _page(full_run)


def test_headline_names_the_best_model_that_beats_naive(tmp_path):
    records = copy.deepcopy(RECORDS)
    records["03_backtesting"]["leaderboard"]["gbm"] = _scores(0.031, 0.004, -2.9)
    records["03_backtesting"]["leaderboard"]["drift"] = _scores(0.05, 0.3, -1.0)  # better skill, not significant
    page = _page(_run_dir(tmp_path, [_entry(s) for s in STAGES], records))
    assert "beats naive: gbm, 03_backtesting: skill +3.1% vs naive, DM p = 4.0e-03" in page
    assert "<td>gbm</td><td style='white-space: nowrap'>beats naive</td>" in page
    assert "<td>drift</td><td style='white-space: nowrap'>no difference</td>" in page


def test_leaderboard_keeps_naive_in_every_stage_and_formats_numbers(full_run):
    page = _page(full_run)
    board = page.split("<table class='leaderboard'>")[1].split("</table>")[0]
    naive = "<td>naive</td><td style='white-space: nowrap'>baseline</td>"
    assert board.count(naive) == 4  # 02, 03 recorded it; 05, 06 get one
    assert "lstm_fast best trial (hidden=32, window=20)" in board and "-1.0%" in board  # 05: 1 - test/naive
    for text in (
        "-0.5%",
        "0.292",
        "&lt; 1e-4",
        "49.3%",
        "[35.2%, 63.6%]",
        "49.1%",
        "67.9%",
        "92.4%",
        "-0.0%",
        "-5.27",
        "0.01",
        "no call",
    ):
        assert f">{text}</td>" in board, text
    assert "background-color: #fde2c8" in board  # stacking's 70% coverage of an 80% interval
    rows = [r for r in board.split("<tr")[1:] if "02_training" in r or "<td>lstm_fast</td>" in r]
    assert "naive" in rows[0] and "lstm_fast" in rows[1]  # best skill first, naive in its place (skill 0)


def test_regime_anomalies_and_production_sections(full_run):
    page = _page(full_run)
    assert "<b>BULL</b>" in page and ">72%<" in page and "2025-11-28 05:00" in page
    assert "BULL 31.0%, SIDEWAYS 36.7%, BEAR 32.3%" in page and "the regimes do not tell what returns follow" in page
    assert "12 events in the last 120 days; the newest 10" in page
    events = page.split("<table class='events'>")[1].split("</table>")[0]
    assert events.count("<tr>") == 11 and events.index("2025-11-21 03:00") < events.index("2025-11-20 03:00")
    assert "2025-11-11 03:00" not in events and ">71<" in events and "provisional" in events  # the newest, score 71
    assert "BTCUSDT/1h/gbm/v0003" in page and "1,037.84" in page and "class='status ok'>OK: gbm v0003" in page


def test_charts_of_the_leaderboard_and_the_forecast(full_run, tmp_path):
    """Two PNG charts drawn from the records alone; a run without the production notebook has one."""
    page = _page(full_run)
    charts = page.split('src="data:image/png;base64,')
    assert len(charts) == 3
    assert all(base64.b64decode(c.split('"')[0])[:8] == b"\x89PNG\r\n\x1a\n" for c in charts[1:])
    first, second = page.index("data:image/png"), page.rindex("data:image/png")
    assert page.index("Leaderboard: every model") < first < page.index("<table class='leaderboard'>")
    assert page.index("<h3>Forecast</h3>") < second
    stages = [s for s in STAGES if s != "08_production"]
    without = _run_dir(
        tmp_path / "without", [_entry(s) for s in stages], {s: RECORDS[s] for s in stages if s in RECORDS}
    )
    assert _page(without).count("data:image/png") == 1


def test_a_degraded_production_model_and_older_regime_records(tmp_path):
    records = copy.deepcopy(RECORDS)
    records["08_production"]["monitor"] = {
        "verdict": "DEGRADED: retrain gbm — MAE skill below the floor",
        "degraded": True,
        "reasons": ["MAE skill vs naive -0.050 is below the floor"],
    }
    records["08_production"]["promoted"]["promoted"] = False  # proposed, not promoted
    del records["04_regimes"]["current"]  # runs before 04 recorded `current`: its headline items
    page = _page(_run_dir(tmp_path, [_entry(s) for s in STAGES], records))
    assert "would promote: gbm v0003 (monitor: degraded)</p>" in page and "no: proposed only" in page
    assert "class='status failed'>DEGRADED: retrain gbm" in page and "<li>MAE skill vs naive -0.050" in page
    assert "regime SIDEWAYS 100%" in page and "2025-11-29 22:00" in page


def test_absent_notebooks_leave_their_sections_out(tmp_path):
    page = _page(_run_dir(tmp_path, [_entry("00_data")], {"00_data": RECORDS["00_data"]}))
    assert "Data coverage" in page and "16,800 of 16,800 expected" in page and "100.0%" in page
    for title in ("Leaderboard", "Current regime", "Latest anomaly events", "Production model"):
        assert title not in page
    assert "<p class='headline'>BTCUSDT 1h</p>" in page
    (tmp_path / "bare").mkdir()  # no manifest, no records
    assert "nothing recorded yet" in _page(tmp_path / "bare")


def test_failed_and_skipped_notebooks_say_so(tmp_path):
    entries = [_entry(s) for s in STAGES[:3]] + [
        _entry("03_backtesting", "failed", error="ValueError: no lstm_fast candles\nTraceback ..."),
        *(_entry(s, "skipped") for s in STAGES[4:]),
    ]
    records = {s: RECORDS[s] for s in STAGES[:3]} | {"03_backtesting": {"saved_models": []}}  # half recorded
    page = _page(_run_dir(tmp_path, entries, records, status="failed"))
    assert (
        '<a href="03_backtesting.html">03_backtesting</a> <span class="status failed">failed</span>: '
        "ValueError: no lstm_fast candles"
    ) in page
    assert "04_regimes not run in this run" in page and "05_hpo not run in this run" in page
    assert "<p class='headline'>run failed in 03_backtesting · BTCUSDT 1h · no model beats naive" in page
    assert "<td>lstm_fast</td>" in page  # 02's leaderboard still shown


def test_a_run_in_progress_and_an_unreadable_metrics_file(tmp_path):
    entries = [
        _entry("00_data"),
        _entry("02_training"),
        _entry("03_backtesting", "running"),
        _entry("07_anomalies", "pending"),
    ]
    run_dir = _run_dir(tmp_path, entries, {s: RECORDS[s] for s in ("00_data", "02_training")}, status="running")
    page = _page(run_dir)
    assert "run in progress (2 of 4 notebooks done)" in page
    assert "03_backtesting not run yet" in page and "07_anomalies not run yet" in page
    (run_dir / "metrics.json").write_text("{not json")
    assert "not valid JSON" in _page(run_dir)


def _latest_quickstart() -> Path | None:
    """The project's newest complete quickstart run (conftest points outputs_dir() elsewhere)."""
    runs = sorted((config.PROJECT_ROOT / "outputs").glob("runs/*quickstart*/manifest.json"), reverse=True)
    return next((p.parent for p in runs if json.loads(p.read_text()).get("status") == "ok"), None)


def test_a_real_quickstart_run(tmp_path):
    """The newest complete quickstart run's records (copied: the real folder is left as it is)."""
    source = _latest_quickstart()
    if source is None or not (source / "metrics.json").is_file():
        pytest.skip("no complete quickstart run under outputs/runs (make run)")
    run_dir = tmp_path / "runs" / source.name
    run_dir.mkdir(parents=True)
    for name in ("manifest.json", "metrics.json"):
        shutil.copy(source / name, run_dir)
    page = _page(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert summary_headline(manifest, json.loads((run_dir / "metrics.json").read_text())) in page
    if any(e["stage"] == "02_training" for e in manifest["notebooks"]):
        assert "<table class='leaderboard'>" in page and ">baseline</td>" in page
