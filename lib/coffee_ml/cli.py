"""The `coffee-ml` command: import candles, inspect the store, run notebook pipelines and backtests.

Any error ends with a non-zero exit and one line saying why; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command imports pandas only for the subcommands that need it
    import pandas as pd


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="coffee-ml", description="Research workbench for ML on crypto candles.")
    sub = p.add_subparsers(dest="command", required=True)

    def backend_opt(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--backend",
            default="auto",
            choices=["auto", "embedded", "server"],
            help="store backend (auto: server when CLICKHOUSE_HOST is set)",
        )

    def param_opt(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "-p",
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="set a parameter in every notebook that declares it (value as YAML: 3, 0.5, [a, b]); repeatable",
        )

    imp = sub.add_parser("import", help="import candle files (Binance klines, CSV, Parquet)")
    imp.add_argument("paths", nargs="+", help="files or directories")
    imp.add_argument("--symbol", required=True)
    imp.add_argument("--interval", required=True, help="bar interval of the files, e.g. 1m, 1h")
    imp.add_argument("--format", choices=["binance", "csv", "parquet"], help="default: from the file")
    imp.add_argument(
        "--map",
        nargs="+",
        default=[],
        metavar="SRC=DST",
        help="rename source columns to schema columns, e.g. timestamp=open_time",
    )
    backend_opt(imp)

    data = sub.add_parser("data", help="inspect stored candles")
    dsub = data.add_subparsers(dest="data_command", required=True)
    lst = dsub.add_parser("list", help="symbols, intervals and their coverage")
    backend_opt(lst)
    gaps = dsub.add_parser("gaps", help="every missing candle range of a symbol")
    gaps.add_argument("symbol")
    gaps.add_argument("--interval", required=True)
    gaps.add_argument("--start")
    gaps.add_argument("--end")
    backend_opt(gaps)
    check = dsub.add_parser(
        "check",
        help="verify every stored part against its checksums",
        description="Runs ClickHouse's CHECK TABLE on the candle table and lists damaged "
        "parts and parts the engine set aside, with the symbol and interval "
        "to re-import. Exits 1 while damaged parts remain.",
    )
    check.add_argument(
        "--repair",
        action="store_true",
        help="set damaged parts aside (moved to detached/, not deleted) and drop staging tables of killed imports",
    )
    backend_opt(check)

    models = sub.add_parser("models", help="the model registry (outputs/models)")
    msub = models.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="every saved version")
    for verb, text in (
        ("show", "metadata of a version"),
        ("promote", "mark a version as production"),
        ("delete", "remove a version"),
        ("predict", "forecast the next bars from stored candles"),
    ):
        q = msub.add_parser(verb, help=text)
        q.add_argument("symbol")
        q.add_argument("interval")
        q.add_argument("model", help="registry name, e.g. lstm, hybrid")
        q.add_argument(
            "version",
            nargs="?" if verb in ("show", "predict") else None,
            default="latest" if verb in ("show", "predict") else None,
            help="vNNNN, latest or production",
        )
        if verb == "predict":
            backend_opt(q)

    mon = msub.add_parser(
        "monitor",
        help="score the production model since its training; exit 3 when degraded",
        description="Replays the model serving SYMBOL (or --model at --version) at every bar after "
        "its training data, scores the realised forecasts against naive, the majority "
        "sign and the nominal coverage, overall and over a rolling window, and applies "
        "the degradation rule of coffee_ml.monitor.monitor to the latest window. Exit "
        "code: 0 OK (or not enough data yet), 3 degraded (retrain), 1 error, so a cron "
        "job can act on it.",
    )
    mon.add_argument("symbol")
    mon.add_argument("--interval", required=True)
    mon.add_argument("--model", help="registry name (default: the model or ensemble serving the symbol)")
    mon.add_argument("--version", default="production", help="vNNNN, latest or production (with --model)")
    mon.add_argument("--window", type=_positive, help="origins per rolling window (default: 30 days of bars)")
    mon.add_argument(
        "--threshold",
        type=_share(True, "0.02"),
        help="MAE skill the model may lose below its save-time validation skill (or below 0), "
        "0 <= x < 1 (default: coffee_ml.monitor.THRESHOLD, 0.02)",
    )
    mon.add_argument("--json", action="store_true", help="print the report as JSON")
    backend_opt(mon)

    pr = sub.add_parser(
        "predict",
        help="the production forecast the trading sidebar shows",
        description="Forecasts the next bars from the registry's production model or ensemble "
        "of SYMBOL and INTERVAL (coffee-ml models promote): the price at the horizon, "
        "its interval, the confidence that the direction is right, the model version "
        "and training date, and the current market regime. Refuses stale data.",
    )
    pr.add_argument("symbol")
    pr.add_argument("--interval", required=True, help="bar interval, e.g. 1h")
    pr.add_argument("--horizon", type=_positive, help="bars ahead (default: the model's horizon)")
    pr.add_argument("--level", type=_share(False, "0.8"), default=0.8, help="interval level (default 0.8)")
    pr.add_argument(
        "--max-age", type=_duration, help="oldest the newest closed candle may be, e.g. 3h, 90min (default 2 bars)"
    )
    pr.add_argument("--json", action="store_true", help="the platform's response shape as JSON")
    backend_opt(pr)

    run = sub.add_parser("run", help="run the notebooks of a params file with papermill, or a batch of them")
    run.add_argument("params", help="params/<name>.yaml, or a batch file (a 'runs' list of params files)")
    run.add_argument(
        "--jobs",
        type=_positive,
        help="batch files only: entries run in this many processes (default: the file's jobs, else 1)",
    )
    param_opt(run)

    rr = sub.add_parser(
        "rerun",
        help="re-execute a run from its manifest and compare the results",
        description="Runs the notebooks of RUN_ID again with the parameters its manifest recorded "
        "(a notebook that read up to the newest candle reads up to the same bar), into "
        "a new run folder, then compares the data each notebook read (fingerprints) "
        "and every number the notebooks recorded. Exits 1 when the rerun fails, or "
        "when, without -p and on unchanged data, the numbers differ.",
    )
    rr.add_argument("run_id", help="a run id (outputs/runs/<id>) or a run folder")
    param_opt(rr)

    sub.add_parser(
        "runs",
        help="every run with its state (died or interrupted ones too), newest first",
        description="Lists outputs/runs: id, state as a reader should show it (a run recorded as running "
        "whose process is gone shows as died, with the notebook it reached), and why.",
    )

    hp = sub.add_parser(
        "hpo",
        help="hyperparameter search of a params file's 05_hpo.ipynb entry",
        description="Runs the search that notebooks/05_hpo.ipynb would run with the params file's "
        "parameters, in --workers processes on one study (resumable: finished trials "
        "are kept), then refits the best trial, scores test once and saves the model. "
        "Run the notebook afterwards (coffee-ml run) for the report: it resumes the "
        "finished study instead of searching again.",
    )
    hp.add_argument("params", help="params/<name>.yaml with a 05_hpo.ipynb entry")
    hp.add_argument("--workers", type=_positive, default=1, help="processes on the study (default 1)")
    param_opt(hp)

    sv = sub.add_parser(
        "serve",
        help="the HTTP API the platform calls (FastAPI under uvicorn)",
        description="Serves forecasts, the registry, regimes, anomalies and long jobs over HTTP "
        "(docs at /docs, the trading view at /). Binds to 127.0.0.1 unless --host says "
        "otherwise. Starting jobs and promoting need COFFEE_ML_API_TOKEN in the "
        "environment; COFFEE_ML_CORS_ORIGINS, COFFEE_ML_MAX_JOBS, COFFEE_ML_MAX_BODY and "
        "COFFEE_ML_JOB_THREADS tune it.",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000)")
    sv.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="uvicorn worker processes (default 1); they share the store and the registry",
    )
    backend_opt(sv)

    bt = sub.add_parser(
        "backtest",
        help="backtest models on stored candles; the report lands in a run folder",
        description="Runs notebooks/03_backtesting.ipynb through the runner (outputs/runs/<id>/), "
        "prints the verdicts and key scores and the path of the run's index.html. "
        "Options left out keep the notebook's defaults.",
    )
    bt.add_argument("--symbol", required=True)
    bt.add_argument(
        "--models", nargs="+", metavar="MODEL", help="e.g. hybrid drift (or hybrid,drift); naive is always added"
    )
    bt.add_argument("--method", choices=["walk_forward", "simple"])
    bt.add_argument("--from", dest="start", metavar="START", help="first bar, e.g. 2024-06-01")
    bt.add_argument("--to", dest="end", metavar="END", help="end of the data (exclusive)")
    bt.add_argument("--interval")
    bt.add_argument("--horizon", type=_positive)
    bt.add_argument("--window", type=_positive)
    bt.add_argument("--retrain-every", type=_positive, help="bars per test block (walk-forward)")
    bt.add_argument("--test-start", help="first test origin, e.g. 2024-12-01")
    bt.add_argument("--epochs", type=_positive, help="max epochs of the neural models")
    param_opt(bt)
    return p


DEGRADED = 3  # `models monitor`: the production model needs retraining


def _duration(text: str) -> pd.Timedelta:
    """argparse type: a positive duration with its unit (pandas reads a bare '3' as nanoseconds)."""
    import pandas as pd

    try:
        value = pd.Timedelta(text) if not text.strip().lstrip("+-").replace(".", "").isdigit() else None
    except ValueError:
        value = None
    if value is None or value <= pd.Timedelta(0):
        raise argparse.ArgumentTypeError(f"expected a positive duration with a unit such as 3h or 90min, got {text!r}")
    return value


def _share(low_inclusive: bool, example: str) -> Callable[[str], float]:
    """argparse type: a number in [0, 1) (`low_inclusive`) or (0, 1), so that a bad value fails
    with what was expected before anything loads."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not ((0 <= value) if low_inclusive else (0 < value)) or not value < 1:
            raise argparse.ArgumentTypeError(
                f"expected a number with 0 {'<=' if low_inclusive else '<'} x < 1 such as {example}, got {text!r}"
            )
        return value

    return parse


def _port(text: str) -> int:
    """argparse type: a TCP port, 1..65535."""
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1..65535, got {text!r}")
    return value


def _positive(text: str) -> int:
    """argparse type: a whole number >= 1 (so a bad value fails before any kernel starts)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _mapping(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        src, sep, dst = pair.partition("=")
        if not sep or not src or not dst:
            raise ValueError(f"--map expects SRC=DST, got {pair!r}")
        out[src] = dst
    return out


def _dispatch(args: argparse.Namespace) -> int | None:
    """Carry out a command; a non-zero return is its exit status (errors raise instead)."""
    if args.command == "run":
        from coffee_ml import batch, runner

        overrides = runner.parse_overrides(args.param)
        runner.read_text_file(args.params)  # not found, a directory, a device, too big, binary: one line
        if batch.is_batch(args.params):
            print(batch.run_batch(args.params, jobs=args.jobs, overrides=overrides, progress=_progress))
        elif args.jobs is not None:
            raise ValueError(
                f"{args.params}: --jobs is for batch files (a 'runs' list of params files); "
                "a params file's notebooks run one after another"
            )
        else:
            print(runner.run(args.params, overrides=overrides, progress=_progress))
        return
    if args.command == "backtest":
        _backtest(args)
        return
    if args.command == "predict":
        _predict(args)
        return
    if args.command == "rerun":
        _rerun(args)
        return
    if args.command == "runs":
        _runs()
        return
    if args.command == "hpo":
        _hpo(args)
        return
    if args.command == "serve":
        _serve(args)
        return
    if args.command == "models":
        return _models(args)
    from coffee_ml.data import open_store

    store = open_store(args.backend)
    if args.command == "import":
        r = store.import_files(args.paths, args.symbol, args.interval, fmt=args.format, mapping=_mapping(args.map))
        print(
            f"imported {r.rows} {r.symbol} {r.interval} candles from {r.files} file(s) "
            f"({r.added} new, {r.replaced} replaced), {r.first} .. {r.last}"
        )
    elif args.data_command == "list":
        table = store.list_symbols()
        print(
            table.to_string(index=False, formatters={"coverage": "{:.2%}".format})
            if len(table)
            else "no candles stored"
        )
    elif args.data_command == "gaps":
        table = store.gaps(args.symbol, args.interval, args.start, args.end)
        print(table.to_string(index=False) if len(table) else f"no gaps in {args.symbol} {args.interval}")
    elif args.data_command == "check":
        _check(store, args.repair)
    if args.command == "data" and args.data_command == "list" and len(store.detached_parts()):
        warnings.warn(
            f"{len(store.detached_parts())} part(s) of the store are set aside and not read: "
            "see `coffee-ml data check`",
            stacklevel=1,
        )


def _check(store, repair: bool) -> None:
    """Print the state of every part; damaged ones raise (exit 1) unless repaired."""
    if repair:
        detached, dropped = store.repair()
        for row in detached.itertuples():
            print(
                f"set aside damaged part {row.part} ({row.symbol} {row.interval}, {int(row.rows):,} rows): "
                f"re-import {row.symbol} {row.interval}"
            )
        if dropped:
            print(f"dropped {len(dropped)} staging table(s) of killed imports")
    report = store.check()
    counts = report["state"].value_counts()
    print(
        f"checked {store.table}: {int(counts.get('ok', 0))} part(s) ok, {int(counts.get('damaged', 0))} damaged, "
        f"{int(counts.get('set aside', 0))} set aside; {report.loc[report['state'] == 'ok', 'rows'].sum():,.0f} "
        "rows readable"
    )
    for row in report[report["state"] != "ok"].itertuples():
        name = f"{row.symbol} {row.interval}" if isinstance(row.symbol, str) else "unknown symbol"
        print(f"{row.state.upper()}: {name}, part {row.part}: {' '.join(str(row.message).split())}")
    staging = store.staging_tables()
    if staging:
        print(f"{len(staging)} staging table(s) of imports in progress or killed: {', '.join(staging)}")
    damaged = report[report["state"] == "damaged"]
    if len(damaged):
        names = sorted({f"{r.symbol} {r.interval}" for r in damaged.itertuples()})
        raise RuntimeError(
            f"{len(damaged)} damaged part(s) ({', '.join(names)}): reads of them fail; run "
            "`coffee-ml data check --repair` to set them aside, then re-import those candles"
        )


def _hpo(args: argparse.Namespace) -> None:
    import dataclasses

    from coffee_ml import config as project
    from coffee_ml import hpo, reports, runner

    # the params file and -p are checked as `coffee-ml run` checks them (notebooks inside notebooks/,
    # no unknown key, every value against the declaration), before anything is searched
    spec = runner.load_params(args.params)
    problems = runner.check_spec(spec)
    if problems:
        raise runner.ParamsError("; ".join(problems))
    spec = runner.apply_overrides(spec, runner.parse_overrides(args.param))
    problems = runner.check_spec(spec)
    if problems:
        raise runner.ParamsError("; ".join(problems))
    notebook = (project.NOTEBOOKS_DIR / HPO_NOTEBOOK).resolve()
    steps = [s for s in spec.steps if (project.NOTEBOOKS_DIR / s.notebook).resolve() == notebook]
    if not steps:
        raise ValueError(f"{args.params}: no {HPO_NOTEBOOK} entry in its notebooks: nothing to search")
    runner.check_data(dataclasses.replace(spec, steps=steps[:1]))
    # the search the notebook would run: its defaults, then the params file's values
    values = {**runner.notebook_defaults(notebook), **steps[0].parameters}
    names = {f.name for f in dataclasses.fields(hpo.HPOConfig)}
    config = hpo.HPOConfig(**{k: v for k, v in values.items() if k in names})
    result = hpo.run_workers(config, args.workers) if args.workers > 1 else hpo.search(config)
    print(reports.hpo_headline(result).text)


def _runs() -> None:
    from coffee_ml import config
    from coffee_ml.run_state import run_state

    runs = config.outputs_dir() / "runs"
    folders = (
        sorted((p for p in runs.iterdir() if (p / "manifest.json").is_file()), reverse=True) if runs.is_dir() else []
    )
    if not folders:
        print(f"no runs in {runs}")
    for folder in folders:  # ids start with the UTC start time: newest first
        state = run_state(folder)
        print(f"{folder.name}  {state.status:<11}  {_one_line(state.reason)}".rstrip())


def _serve(args: argparse.Namespace) -> None:
    """uvicorn on the service's app factory; every worker reads its settings from the environment,
    which is checked here first so that a bad value fails in one line before anything binds."""
    import uvicorn

    from coffee_ml.service.app import ServiceSettings

    os.environ["COFFEE_ML_BACKEND"] = args.backend
    settings = ServiceSettings.from_env()
    if args.host not in ("127.0.0.1", "localhost", "::1") and settings.token is None:
        print(
            f"coffee-ml: warning: serving on {args.host} without COFFEE_ML_API_TOKEN: reads are open to that "
            "network; jobs and promotion stay off",
            file=sys.stderr,
        )
    print(
        f"coffee-ml serve: http://{args.host}:{args.port}/ (API docs at /docs), {args.workers} worker(s)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        "coffee_ml.service.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
        access_log=False,
    )


def _rerun(args: argparse.Namespace) -> None:
    from coffee_ml import rerun, runner

    overrides = runner.parse_overrides(args.param)
    result = rerun.rerun(args.run_id, overrides, progress=_progress)
    print(result.summary())
    print(result.index)
    if result.failed or (result.differing and not overrides and not result.data_changes):
        raise RuntimeError(
            result.failed or f"rerun {result.rerun_id} did not reproduce {result.run_id} on unchanged data"
        )


def _predict(args: argparse.Namespace) -> None:
    import json

    from coffee_ml import serving

    answer = serving.sidebar(
        args.symbol, args.interval, args.horizon, backend=args.backend, level=args.level, max_age=args.max_age
    )
    print(json.dumps(answer.to_json(), indent=2, allow_nan=False) if args.json else answer.text())


def _progress(line: str) -> None:
    """Runner progress goes to stderr, so stdout carries only the result (the index path)."""
    print(line, file=sys.stderr, flush=True)


BACKTEST_NOTEBOOK = "03_backtesting.ipynb"
HPO_NOTEBOOK = "05_hpo.ipynb"
# next to the headline's verdict lines: the scores a reviewer compares first
_SUMMARY_COLUMNS = (
    "skill",
    "dm_pvalue",
    "dir_acc",
    "brier_skill",
    "coverage_80",
    "coverage_95",
    "sharpe",
    "hold_sharpe",
)


def _backtest(args: argparse.Namespace) -> None:
    """A backtest from the shell, run through the runner so that it leaves a run folder with its
    report, and summarised from what the notebook recorded."""
    from coffee_ml import runner

    # every value is checked against 03's declaration (coffee_ml.parameters) by run_spec, before
    # the kernel starts: an unknown model, a date that is not one, --from after --to
    models = [m for item in args.models or [] for m in item.split(",") if m and m != "naive"]
    given = {
        "symbol": args.symbol,
        "models": models or None,
        "method": args.method,
        "start": args.start,
        "end": args.end,
        "interval": args.interval,
        "horizon": args.horizon,
        "window": args.window,
        "retrain_every": args.retrain_every,
        "test_start": args.test_start,
        "epochs": args.epochs,
    }
    params = {k: v for k, v in given.items() if v is not None}
    overrides = runner.parse_overrides(args.param)
    spec = runner.RunSpec(
        f"backtest-{args.symbol}",
        [runner.Step(BACKTEST_NOTEBOOK, params)],
        document={"command": "coffee-ml backtest", "parameters": params},
    )
    index = runner.run_spec(runner.apply_overrides(spec, overrides), progress=_progress)
    print("\n".join(_backtest_summary(index.parent)))
    print(index)


def _backtest_summary(run_dir: Path) -> list[str]:
    """The backtest's headline (verdicts) and its leaderboard's key scores, from the run's metrics.json."""
    import pandas as pd

    from coffee_ml.reports.format import number
    from coffee_ml.reports.index import headline_text
    from coffee_ml.reports.records import read_records

    record = read_records(run_dir).get(BACKTEST_NOTEBOOK.removesuffix(".ipynb"), {})
    lines = [text] if (text := headline_text(record)) else []
    if isinstance(record.get("leaderboard"), dict) and record["leaderboard"]:
        board = pd.DataFrame.from_dict(record["leaderboard"], orient="index")
        keep = [c for c in _SUMMARY_COLUMNS if c in board.columns] or list(board.columns)
        shown = pd.DataFrame({c: [number(c, v) for v in board[c]] for c in keep}, index=board.index)
        lines.append(shown.to_string())
    return lines or ["(the notebook recorded no summary; see the report)"]


def _models(args: argparse.Namespace) -> int | None:
    import json

    from coffee_ml import registry

    if args.models_command == "list":
        table = registry.list_models()
        print(table.to_string(index=False) if len(table) else f"no models in {registry.models_dir()}")
        return
    if args.models_command == "monitor":
        from coffee_ml import monitor

        if args.version != "production" and not args.model:
            raise ValueError(
                f"--version {args.version} needs --model: without it the model serving "
                f"{args.symbol} {args.interval} is monitored"
            )
        options = {"threshold": args.threshold} if args.threshold is not None else {}
        report = monitor.monitor(
            args.symbol,
            args.interval,
            model=args.model,
            version=args.version,
            window=args.window,
            backend=args.backend,
            **options,
        )
        if args.json:
            print(json.dumps(report.to_dict(), indent=2))
        else:
            print(report.verdict)
            print(report.table().to_string(float_format="{:.4g}".format, na_rep=""))
            print(report.rolling.tail(5).to_string(float_format="{:.4f}".format, na_rep=""))
        return DEGRADED if report.degraded else 0  # after the report: the exit code is what a cron job reads
    ref = registry.resolve(args.symbol, args.interval, args.model, args.version)
    if args.models_command == "show":
        _, meta = registry.read(ref)
        meta.pop("state", None)
        print(json.dumps(meta, indent=2, default=str))
    elif args.models_command == "promote":
        from coffee_ml.models.persistence import load_model

        load_model(ref.symbol, ref.interval, ref.model, ref.version)  # never promote what would not load
        registry.promote(ref, reason="promoted by hand (coffee-ml models promote)")
        print(
            f"{ref.symbol}/{ref.interval}/{ref.model}: {ref.version} is now production, and serves "
            f"{ref.symbol} {ref.interval} (coffee-ml predict)"
        )
    elif args.models_command == "delete":
        registry.delete(ref)
        print(f"deleted {ref.symbol}/{ref.interval}/{ref.model}/{ref.version}")
    elif args.models_command == "predict":
        from coffee_ml import serving

        forecast = serving.predict(args.symbol, args.interval, args.model, ref.version, backend=args.backend)
        print(forecast.to_frame().to_string(index=False))


def _one_line(text: str) -> str:
    """An error message as one line of printable text (a control character in a file name or a
    value would otherwise reach the terminal raw)."""
    return " ".join("".join(c if c.isprintable() or c in "\t\n" else ascii(c)[1:-1] for c in text).split())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            code = _dispatch(args) or 0
        except (ValueError, FileNotFoundError, RuntimeError, ConnectionError, OSError) as exc:
            print(f"coffee-ml: error: {_one_line(str(exc))}", file=sys.stderr)
            code = 1
        except KeyboardInterrupt as exc:  # Ctrl-C, or a run's SIGTERM (128 + signal, as a shell reports it)
            name = getattr(exc, "signal", "SIGINT")
            print(f"coffee-ml: error: interrupted by {name}", file=sys.stderr)
            code = 143 if name == "SIGTERM" else 130
        except Exception as exc:  # a bug: still one line (the traceback with COFFEE_ML_DEBUG=1)
            if os.environ.get("COFFEE_ML_DEBUG"):
                raise
            print(
                f"coffee-ml: error: internal error ({type(exc).__name__}: {_one_line(str(exc))[:500]}); "
                "please report it with the command line (COFFEE_ML_DEBUG=1 shows the traceback)",
                file=sys.stderr,
            )
            code = 1
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"coffee-ml: warning: {w.message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
