"""A corpus of bad inputs across every subcommand, params key and file type.

Each case runs `coffee_ml.cli.main(argv)` in this process and must end with a non-zero exit,
exactly one error line on stderr that names the file, row or parameter, no traceback, and within
10 s. No kernel, search or batch process may start: they are replaced by a stub that fails the
case, so an input that is silently accepted shows up as a failure, not as an hour of work.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from coffee_ml.cli import main

SECONDS = 10.0
FIFO, DIR = object(), object()  # special "file contents"


class KernelStarted(BaseException):
    """Raised by the stubs: a bad input got as far as real work."""


@dataclass
class Case:
    id: str
    argv: list[str]
    expect: tuple[str, ...]  # substrings of the error line ({d}: the case's folder)
    files: dict[str, object] = field(default_factory=dict)  # name -> text, bytes, FIFO or DIR


def _params(notebook: str, step: str = "", shared: str = "symbol: BTCUSDT, interval: 1h", name: str = "bad") -> str:
    """A params file with one notebook and its parameters as YAML flow text (written as is)."""
    return (
        f"name: {name}\nparameters: {{{shared}}}\nnotebooks:\n  - notebook: {notebook}.ipynb\n"
        f"    parameters: {{{step}}}\n"
    )


def _value(notebook: str, step: str, *expect: str) -> Case:
    """`coffee-ml run` of a params file whose `notebook` entry sets `step`."""
    return Case(
        f"run-{notebook[:2]}-{step}",
        ["run", "{d}/p.yaml"],
        ("{d}/p.yaml", f"{notebook}.ipynb", *expect),
        {"p.yaml": _params(notebook, step)},
    )


def _file(case_id: str, text: object, *expect: str, command: str = "run") -> Case:
    """`coffee-ml <command>` of a params file with these contents."""
    return Case(case_id, [command, "{d}/p.yaml"], ("{d}/p.yaml", *expect), {"p.yaml": text})


def _hpo(step: str, *expect: str, argv: tuple[str, ...] = ()) -> Case:
    return Case(
        f"hpo-{step}{'-' + ' '.join(argv) if argv else ''}",
        ["hpo", "{d}/h.yaml", *argv],
        expect,
        {"h.yaml": _params("05_hpo", step)},
    )


def _override(*pairs: str, expect: tuple[str, ...]) -> Case:
    argv = ["run", "{d}/q.yaml"] + [a for p in pairs for a in ("-p", p)]
    return Case(f"override-{' '.join(pairs)}", argv, expect, {"q.yaml": QUICK})


QUICK = (Path(__file__).resolve().parents[1] / "params" / "quickstart.yaml").read_text()
ALIAS_BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
    "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\nname: bomb\nnotebooks: [00_data.ipynb]\n"
)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(range(256))
LATIN1 = "name: caf\u00e9\nnotebooks: [00_data.ipynb]\n".encode("latin-1")
MANIFEST = {
    "run_id": "r",
    "name": "r",
    "params": {},
    "overrides": {},
    "status": "ok",
    "notebooks": [{"notebook": "00_data.ipynb", "stage": "00_data", "parameters": {}, "status": "ok"}],
}
CSV_HEADER = "open_time,open,high,low,close,volume\n"


def _batch(*entries: str, extra: str = "") -> str:
    return "name: b\n" + extra + "runs:\n" + "".join(f"  - {e}\n" for e in entries)


CASES: list[Case] = [
    # --- section 6: every declared parameter, through `coffee-ml run` ------------------------------
    _value("02_training", "epochs: -1", "epochs = -1", "expected a whole number >= 1"),
    _value("02_training", "epochs: .nan", "epochs = nan", "expected a whole number >= 1"),
    _value("02_training", "epochs: .inf", "epochs = inf"),
    _value("02_training", "epochs: ten", "epochs = 'ten'", "expected a whole number >= 1"),
    _value("02_training", "epochs: yes", "epochs = True", "boolean"),
    _value("02_training", "epochs: 3.5", "epochs = 3.5"),
    _value("02_training", "epochs: [3]", "epochs = [3]"),
    _value("02_training", "epochs: 0", "epochs = 0"),
    _value("02_training", "epochs: null", "epochs = None"),
    _value("02_training", "models: [nosuch]", "unknown model 'nosuch'", "lstm_fast", "hybrid"),
    _value("02_training", "models: []", "models = []", "non-empty list"),
    _value("02_training", "models: lstm", "models = 'lstm'", "expected a non-empty list"),
    _value("02_training", "models: [lstm_fast, 5]", "unknown model 5"),
    _value("02_training", "models: [[lstm]]", "unknown model ['lstm']"),
    _value(
        "02_training",
        "models: [drift], model_params: {gru: {hidden: 8}}",
        "model_params",
        "given for 'gru', which is not in models",
    ),
    _value("02_training", "models: [drift], model_params: {drift: {nosuch: 1}}", "model 'drift' has no parameter"),
    _value("02_training", "model_params: [1]", "model_params = [1]", "a mapping"),
    _value("02_training", "models: [drift], model_params: {drift: 5}", "model_params.drift = 5"),
    _value("02_training", "seed: abc", "seed = 'abc'", "whole number >= 0"),
    _value("02_training", "seed: -1", "seed = -1"),
    _value("02_training", "seed: 1.5", "seed = 1.5"),
    _value("02_training", "seed: 1099511627776", "seed = 1099511627776"),
    _value("02_training", "start: '2025-12-01', end: '2025-01-01'", "start 2025-12-01 is after end 2025-01-01"),
    _value("02_training", "start: 2025-12-01, end: 2025-01-01", "start 2025-12-01 is after end 2025-01-01"),
    _value("02_training", "start: '2025-06-01', end: '2025-06-01'", "start 2025-06-01 is the same as end"),
    _value("02_training", "start: yesterday", "start = 'yesterday'", "ISO date"),
    _value("02_training", "start: 20250101", "start = 20250101", "ISO date"),
    _value("02_training", "end: '2025-13-45'", "end = '2025-13-45'"),
    _value("02_training", "interval: 2m", "interval = '2m'", "one of 1m"),
    _value("02_training", "interval: 1H", "interval = '1H'"),
    _value("02_training", "symbol: btc usdt", "symbol = 'btc usdt'"),
    _value("02_training", "symbol: 42", "symbol = 42", "text"),
    _value("02_training", "backend: mysql", "backend = 'mysql'", "auto, embedded, server"),
    _value("02_training", "device: gpu", "device = 'gpu'"),
    _value("02_training", "save: 'yes'", "save = 'yes'", "true or false"),
    _value("02_training", "save: 1", "save = 1", "true or false"),
    _value("02_training", "window: 0", "window = 0"),
    _value("02_training", "horizon: -5", "horizon = -5"),
    _value("02_training", "groups: [nosuch]", "unknown group 'nosuch'", "price"),
    _value("02_training", "groups: []", "groups = []"),
    _value("02_training", "nosuch: 1", "declares no parameter(s) nosuch"),
    _value("02_training", "epoch: 3", "declares no parameter(s) epoch", "did you mean epochs"),
    _value("02_training", "run_dir: /tmp", "run_dir"),
    _file("secret-key", _params("02_training", "password: x"), "password", "credentials"),
    _file("nested-secret-key", _params("02_training", "model_params: {lstm: {api_key: x}}"), "api_key", "credentials"),
    _value("00_data", "source_interval: 7m", "source_interval = '7m'"),
    _value("01_features", "features: [nosuch]", "unknown feature 'nosuch'"),
    _value("01_features", "scaler: zscore", "scaler = 'zscore'", "standard"),
    _value("01_features", "groups: price", "groups = 'price'"),
    _value("03_backtesting", "method: monte_carlo", "method = 'monte_carlo'", "walk_forward"),
    _value("03_backtesting", "test_fraction: 1.5", "test_fraction = 1.5", "> 0 and < 1"),
    _value("03_backtesting", "test_fraction: 0", "test_fraction = 0"),
    _value("03_backtesting", "scheme: sliding", "scheme = 'sliding'", "expanding"),
    _value("03_backtesting", "calibration: none", "calibration = 'none'", "pooled"),
    _value("03_backtesting", "fee_bps: -1", "fee_bps = -1"),
    _value("03_backtesting", "n_jobs: 0", "n_jobs = 0"),
    _value("03_backtesting", "retrain_every: 0", "retrain_every = 0"),
    _value("03_backtesting", "train_bars: -1", "train_bars = -1"),
    _value("03_backtesting", "allow_short: 'no'", "allow_short = 'no'", "true or false"),
    _value("03_backtesting", "warm_start: 2", "warm_start = 2"),
    _value("03_backtesting", "test_start: '2026-01-01'", "test_start 2026-01-01 is after end 2025-12-01"),
    _value("03_backtesting", "test_start: '2024-01-01'", "start 2025-01-01 is after test_start 2024-01-01"),
    _value("03_backtesting", "models: [nosuch]", "unknown model 'nosuch'"),
    _value("03_backtesting", "model_params: {gru: {hidden: 4}}", "given for 'gru'"),
    _value("04_regimes", "method: kmeans", "method = 'kmeans'", "hmm"),
    _value("04_regimes", "horizons: []", "horizons = []"),
    _value("04_regimes", "horizons: [1, -24]", "item -24"),
    _value("04_regimes", "horizons: 24", "horizons = 24"),
    _value("04_regimes", "horizons: [one]", "item 'one'"),
    _value("04_regimes", "window: 1", "window = 1"),
    _value("04_regimes", "adx_min: 150", "adx_min = 150"),
    _value("04_regimes", "start: null", "start = None"),
    _value("04_regimes", "refit_every: 0", "refit_every = 0"),
    _value("05_hpo", "model: [lstm_fast, nosuch]", "model = ['lstm_fast', 'nosuch']"),
    _value("05_hpo", "model: nosuch", "model = 'nosuch'", "lstm_fast"),
    _value("05_hpo", "trials: 0", "trials = 0"),
    _value("05_hpo", "trails: 40", "declares no parameter(s) trails", "did you mean trials"),
    _value("05_hpo", "method: bayes", "method = 'bayes'", "grid"),
    _value("05_hpo", "metric: nosuch", "unknown scorer 'nosuch'"),
    _value("05_hpo", "pruner: aggressive", "pruner = 'aggressive'"),
    _value("05_hpo", "validation: kfold", "validation = 'kfold'"),
    _value("05_hpo", "space: {nosuch: [1]}", "has no parameter 'nosuch'"),
    _value("05_hpo", "space: [1, 2]", "space = [1, 2]"),
    _value("05_hpo", "method: grid, space: {lr: {low: 0.001, high: 0.01}}", "grid search needs a list"),
    _value("05_hpo", "validation: walk_forward, folds: 1", "folds must be >= 2"),
    _value("05_hpo", "folds: 0", "folds = 0"),
    _value("06_ensembles", "members: [nosuch]", "unknown model 'nosuch'"),
    _value("06_ensembles", "strategies: [median]", "unknown strategy 'median'", "stacking"),
    _value("06_ensembles", "weights: [0.5]", "1 weight(s) for 3 member(s)"),
    _value("06_ensembles", "weights: [-1, 1, 1]", "item -1"),
    _value("06_ensembles", "save_strategy: best", "save_strategy = 'best'"),
    _value("06_ensembles", "member_params: {gru: {hidden: 4}}", "member_params", "given for 'gru'"),
    _value("06_ensembles", "test_start: '2030-01-01'", "test_start 2030-01-01 is after end"),
    _value("07_anomalies", "days: 0", "days = 0"),
    _value("07_anomalies", "days: null", "days and start are both null"),
    _value("07_anomalies", "contamination: 0.9", "contamination = 0.9"),
    _value("07_anomalies", "crash_drop: 1.5", "crash_drop = 1.5"),
    _value("07_anomalies", "pump_threshold: 500", "pump_threshold = 500"),
    _value("07_anomalies", "move_bars: 0", "move_bars = 0"),
    _value("08_production", "level: 1.5", "level = 1.5", "> 0 and < 1"),
    _value("08_production", "level: 0", "level = 0"),
    _value("08_production", "metric: nosuch", "unknown scorer 'nosuch'"),
    _value("08_production", "threshold: 1", "threshold = 1"),
    _value("08_production", "horizon: 0", "horizon = 0"),
    _value("08_production", "promote: 'false'", "promote = 'false'"),
    _value("08_production", "monitor_window: 0", "monitor_window = 0"),
    Case(
        "run-shared-undeclared",
        ["run", "{d}/p.yaml"],
        ("{d}/p.yaml", "00_data.ipynb declares no parameter(s) epochs"),
        {"p.yaml": _params("00_data", shared="epochs: 3")},
    ),
    # --- params file structure and file types (section 7) ---------------------------------------
    _file("empty-file", "", "non-empty 'notebooks' list"),
    _file("list-document", "[]\n", "non-empty 'notebooks' list"),
    _file("no-notebooks", "notebooks: []\n", "non-empty 'notebooks' list"),
    _file("notebooks-string", "notebooks: 02_training.ipynb\n", "non-empty 'notebooks' list"),
    _file("missing-notebook", "notebooks: [nosuch.ipynb]\n", "notebook nosuch.ipynb not found"),
    _file("notebook-without-suffix", "notebooks: [02_training]\n", "notebook 02_training not found"),
    _file("notebook-outside", "notebooks: [../../../tmp/x.ipynb]\n", "../../../tmp/x.ipynb is outside"),
    _file("notebook-absolute", "notebooks: [/etc/passwd]\n", "/etc/passwd is outside"),
    _file("notebook-null", "notebooks: [{notebook: null}]\n", "notebooks[1] must be a notebook name"),
    _file("entry-without-notebook", "notebooks: [{parameters: {}}]\n", "notebooks[1] must be a notebook name"),
    _file(
        "entry-key-typo",
        "notebooks: [{notebook: 02_training.ipynb, paramters: {}}]\n",
        "notebooks[1]: unknown key(s) paramters",
    ),
    _file("top-key-typo", "paramters: {epochs: 3}\nnotebooks: [02_training.ipynb]\n", "unknown key(s) paramters"),
    _file("parameters-list", "parameters: [1]\nnotebooks: [02_training.ipynb]\n", "'parameters' must be a mapping"),
    _file(
        "step-parameters-int",
        "notebooks: [{notebook: 02_training.ipynb, parameters: 5}]\n",
        "notebooks[1].parameters must be a mapping",
    ),
    _file("parameter-key-int", "parameters: {1: 2}\nnotebooks: [02_training.ipynb]\n", "key 1 is not a parameter name"),
    _file(
        "parameter-key-space",
        "parameters: {'a b': 1}\nnotebooks: [02_training.ipynb]\n",
        "key 'a b' is not a parameter name",
    ),
    _file("notebook-twice", "notebooks: [02_training.ipynb, 02_training.ipynb]\n", "02_training listed twice"),
    _file("invalid-yaml", "notebooks: [\n", "not valid YAML"),
    _file("tab-indent", "notebooks:\n\t- 00_data.ipynb\n", "not valid YAML"),
    _file("two-documents", "notebooks: [00_data.ipynb]\n---\nnotebooks: [00_data.ipynb]\n", "not valid YAML"),
    _file("python-tag", "notebooks: !!python/object/apply:os.system [echo hi]\n", "not valid YAML"),
    _file("unhashable-key", "parameters: {? [a] : 1}\nnotebooks: [00_data.ipynb]\n", "not valid YAML"),
    _file("alias-bomb", ALIAS_BOMB, "more than 10,000 values once its aliases"),
    _file("recursive-alias", "a: &a [*a]\nnotebooks: [00_data.ipynb]\n", "recursive alias"),
    _file("deep-nesting", "x: " + "[" * 50_000 + "]" * 50_000 + "\n", "nest"),
    _file("dense-list", "notebooks: [00_data.ipynb]\nx: [" + ",".join(["1"] * 120_000) + "]\n", "more than 10,000"),
    _file("too-big", "# " + "x" * 2_000_000 + "\nnotebooks: [00_data.ipynb]\n", "the limit is 256,000"),
    _file("binary", PNG, "not UTF-8 text"),
    _file("latin-1", LATIN1, "not UTF-8 text", "0xe9"),
    _file("utf-16", "notebooks: [00_data.ipynb]\n".encode("utf-16"), "not UTF-8 text"),
    _file("directory", DIR, "is a directory"),
    _file("fifo", FIFO, "is not a regular file"),
    Case("dev-null", ["run", "/dev/null"], ("/dev/null", "is not a regular file")),
    Case("missing-file", ["run", "{d}/none.yaml"], ("{d}/none.yaml", "params file not found")),
    _file("name-bidi", 'name: "evil\\u202eexe"\nnotebooks: [00_data.ipynb]\n', "U+202E"),
    _file("name-escape", 'name: "red\\e[31m"\nnotebooks: [00_data.ipynb]\n', "U+001B"),
    _file("name-newline", 'name: "a\\nb"\nnotebooks: [00_data.ipynb]\n', "U+000A"),
    _file("name-zero-width", 'name: "a\\u200bb"\nnotebooks: [00_data.ipynb]\n', "U+200B"),
    _file("name-list", "name: [1, 2]\nnotebooks: [00_data.ipynb]\n", "name = [1, 2]"),
    _file("name-too-long", f"name: {'x' * 500}\nnotebooks: [00_data.ipynb]\n", "name is 500 characters"),
    _file("batch-as-params-jobs", "notebooks: [00_data.ipynb]\n", "--jobs is for batch files", command="run"),
    # --- -p overrides ----------------------------------------------------------------------------
    _override("epochs=-1", expect=("{d}/q.yaml", "02_training.ipynb: epochs = -1", "(set with -p)")),
    _override("epochs=.nan", expect=("epochs = nan",)),
    _override("epochs=ten", expect=("epochs = 'ten'",)),
    _override("epochs=yes", expect=("epochs = True", "boolean")),
    _override("models=[nosuch]", expect=("unknown model 'nosuch'",)),
    _override("seed=abc", expect=("seed = 'abc'",)),
    _override("interval=2m", expect=("interval = '2m'",)),
    _override("symbol=btc usdt", expect=("symbol = 'btc usdt'",)),
    _override("start=2025-12-01", "end=2025-01-01", expect=("start 2025-12-01 is after end 2025-01-01",)),
    _override("nope=1", expect=("no notebook of", "declares parameter(s) nope")),
    _override("x", expect=("-p expects key=value", "'x'")),
    _override("=1", expect=("-p expects key=value",)),
    _override("epochs=[1", expect=("-p epochs: value is not valid YAML",)),
    _override("epochs=&a [*a]", expect=("-p epochs", "recursive alias")),
    _override("run_dir=/tmp", expect=("run_dir", "set by the runner")),
    _override("password=x", expect=("password", "credentials")),
    _override("level=2", expect=("08_production.ipynb: level = 2",)),
    # --- coffee-ml hpo: the same checks as run (section 5) --------------------------------------
    _hpo("trails: 40", "{d}/h.yaml", "declares no parameter(s) trails", "did you mean trials"),
    _hpo("model: [lstm_fast, nosuch]", "{d}/h.yaml", "05_hpo.ipynb", "model = ['lstm_fast', 'nosuch']"),
    _hpo("model: nosuch", "model = 'nosuch'"),
    _hpo("trials: 0", "trials = 0"),
    _hpo("trials: many", "trials = 'many'"),
    _hpo("method: bayes", "method = 'bayes'"),
    _hpo("metric: nosuch", "unknown scorer 'nosuch'"),
    _hpo("space: {hidden: []}", "space.hidden is empty"),
    _hpo("start: '2025-12-01', end: '2025-01-01'", "start 2025-12-01 is after end 2025-01-01"),
    _hpo("validation: walk_forward, folds: 1", "folds must be >= 2"),
    _hpo("model_params: {hidden: 8}", "declares no parameter(s) model_params"),
    _hpo("split: [0.5, 0.25, 0.25]", "declares no parameter(s) split"),
    _hpo("model: lstm_fast", "trials = -1", argv=("-p", "trials=-1")),
    _hpo("model: lstm_fast", "declares parameter(s) nope", argv=("-p", "nope=1")),
    _hpo("storage: 'sqlite:////elsewhere/x.db'", "{d}/h.yaml", "storage"),
    Case(
        "hpo-outside-notebook",
        ["hpo", "{d}/h.yaml"],
        ("{d}/h.yaml", "../../../tmp/05_hpo.ipynb is outside"),
        {"h.yaml": "notebooks: [{notebook: ../../../tmp/05_hpo.ipynb, parameters: {trials: 1}}]\n"},
    ),
    Case(
        "hpo-no-entry",
        ["hpo", "{d}/h.yaml"],
        ("{d}/h.yaml", "no 05_hpo.ipynb entry"),
        {"h.yaml": "notebooks: [00_data.ipynb]\n"},
    ),
    Case(
        "hpo-workers-0",
        ["hpo", "{d}/h.yaml", "--workers", "0"],
        ("--workers", "expected a whole number >= 1"),
        {"h.yaml": _params("05_hpo")},
    ),
    Case("hpo-missing-file", ["hpo", "{d}/none.yaml"], ("{d}/none.yaml", "not found")),
    Case("hpo-directory", ["hpo", "{d}"], ("{d}", "is a directory")),
    _file("hpo-alias-bomb", ALIAS_BOMB, "more than 10,000 values", command="hpo"),
    _file("hpo-binary", PNG, "not UTF-8 text", command="hpo"),
    # --- coffee-ml backtest ----------------------------------------------------------------------
    Case(
        "backtest-unknown-model",
        ["backtest", "--symbol", "BTCUSDT", "--models", "nosuch"],
        ("03_backtesting.ipynb", "unknown model 'nosuch'", "lstm_fast"),
    ),
    Case(
        "backtest-unknown-model-comma",
        ["backtest", "--symbol", "BTCUSDT", "--models", "hybrid,nope"],
        ("unknown model 'nope'",),
    ),
    Case(
        "backtest-reversed-dates",
        ["backtest", "--symbol", "BTCUSDT", "--from", "2025-12-01", "--to", "2025-01-01"],
        ("start 2025-12-01 is after end 2025-01-01",),
    ),
    Case("backtest-bad-date", ["backtest", "--symbol", "BTCUSDT", "--from", "yesterday"], ("start = 'yesterday'",)),
    Case("backtest-interval", ["backtest", "--symbol", "BTCUSDT", "--interval", "2m"], ("interval = '2m'",)),
    Case("backtest-method", ["backtest", "--symbol", "BTCUSDT", "--method", "bogus"], ("--method", "bogus")),
    Case("backtest-horizon", ["backtest", "--symbol", "BTCUSDT", "--horizon", "0"], ("--horizon", "'0'")),
    Case("backtest-epochs", ["backtest", "--symbol", "BTCUSDT", "--epochs", "-1"], ("--epochs", "'-1'")),
    Case("backtest-symbol", ["backtest", "--symbol", "btc usdt"], ("symbol = 'btc usdt'",)),
    Case(
        "backtest-test-start",
        ["backtest", "--symbol", "BTCUSDT", "--test-start", "2030-01-01"],
        ("test_start 2030-01-01 is after end",),
    ),
    Case("backtest-p-n-jobs", ["backtest", "--symbol", "BTCUSDT", "-p", "n_jobs=0"], ("n_jobs = 0", "(set with -p)")),
    Case("backtest-p-unknown", ["backtest", "--symbol", "BTCUSDT", "-p", "nope=1"], ("declares parameter(s) nope",)),
    Case("backtest-symbol-not-stored", ["backtest", "--symbol", "NOSUCH"], ("no NOSUCH candles in the store",)),
    # --- batch files -----------------------------------------------------------------------------
    Case(
        "batch-includes-itself",
        ["run", "{d}/b.yaml"],
        ("{d}/b.yaml", "runs[1]", "includes itself"),
        {"b.yaml": _batch("params: b.yaml")},
    ),
    Case(
        "batch-cycle",
        ["run", "{d}/b.yaml"],
        ("{d}/b.yaml", "a cycle of batch files (b.yaml -> c.yaml -> b.yaml)"),
        {"b.yaml": _batch("params: c.yaml"), "c.yaml": _batch("params: b.yaml")},
    ),
    Case(
        "batch-nested",
        ["run", "{d}/b.yaml"],
        ("{d}/b.yaml", "runs[1] (c.yaml)", "batches do not nest"),
        {"b.yaml": _batch("params: c.yaml"), "c.yaml": _batch("params: p.yaml"), "p.yaml": _params("00_data")},
    ),
    Case(
        "batch-jobs-0",
        ["run", "{d}/b.yaml"],
        ("{d}/b.yaml", "jobs must be a whole number >= 1"),
        {"b.yaml": _batch("params: p.yaml", extra="jobs: 0\n"), "p.yaml": _params("00_data")},
    ),
    Case("batch-empty-runs", ["run", "{d}/b.yaml"], ("{d}/b.yaml", "non-empty 'runs' list"), {"b.yaml": "runs: []\n"}),
    Case(
        "batch-missing-entry",
        ["run", "{d}/b.yaml"],
        ("{d}/b.yaml", "runs[1] (none.yaml)", "not found"),
        {"b.yaml": _batch("params: none.yaml")},
    ),
    Case(
        "batch-entry-key",
        ["run", "{d}/b.yaml"],
        ("{d}/b.yaml", "runs[1]: unknown key(s) paramters"),
        {"b.yaml": _batch("{params: p.yaml, paramters: {}}"), "p.yaml": _params("00_data")},
    ),
    Case(
        "batch-entry-value",
        ["run", "{d}/b.yaml"],
        ("{d}/b.yaml", "runs[1] (p.yaml)", "epochs = -1"),
        {"b.yaml": _batch("{params: p.yaml, parameters: {epochs: -1}}"), "p.yaml": _params("02_training")},
    ),
    Case(
        "batch-p-value",
        ["run", "{d}/b.yaml", "-p", "epochs=-1"],
        ("{d}/b.yaml", "epochs = -1"),
        {"b.yaml": _batch("params: p.yaml"), "p.yaml": _params("02_training")},
    ),
    Case(
        "batch-entry-binary",
        ["run", "{d}/b.yaml"],
        ("{d}/b.yaml", "runs[1] (p.yaml)", "not UTF-8 text"),
        {"b.yaml": _batch("params: p.yaml"), "p.yaml": PNG},
    ),
    Case(
        "batch-name-bidi",
        ["run", "{d}/b.yaml"],
        ("{d}/b.yaml", "U+202E"),
        {"b.yaml": 'name: "x\\u202ey"\nruns: [{params: p.yaml}]\n', "p.yaml": _params("00_data")},
    ),
    Case(
        "batch-alias-bomb",
        ["run", "{d}/b.yaml"],
        ("{d}/b.yaml", "more than 10,000 values"),
        {"b.yaml": ALIAS_BOMB.replace("notebooks: [00_data.ipynb]", "runs: [{params: p.yaml}]")},
    ),
    Case(
        "batch-jobs-cli",
        ["run", "{d}/b.yaml", "--jobs", "0"],
        ("--jobs", "'0'"),
        {"b.yaml": _batch("params: p.yaml"), "p.yaml": _params("00_data")},
    ),
    # --- rerun (section 5) -----------------------------------------------------------------------
    Case("rerun-unknown-id", ["rerun", "no-such-run"], ("no-such-run",)),
    Case(
        "rerun-outside",
        ["rerun", "{d}/elsewhere/runs/evil"],
        ("{d}/elsewhere/runs/evil",),
        {"elsewhere/runs/evil/manifest.json": json.dumps(MANIFEST)},
    ),
    Case("rerun-manifest-list", ["rerun", "r1"], ("r1", "manifest"), {"{out}/runs/r1/manifest.json": "[1, 2]"}),
    Case("rerun-manifest-empty-object", ["rerun", "r2"], ("r2", "manifest"), {"{out}/runs/r2/manifest.json": "{}"}),
    Case("rerun-manifest-not-json", ["rerun", "r3"], ("r3", "manifest"), {"{out}/runs/r3/manifest.json": "{oops"}),
    Case("rerun-manifest-binary", ["rerun", "r4"], ("r4", "manifest"), {"{out}/runs/r4/manifest.json": PNG}),
    Case(
        "rerun-manifest-passwd",
        ["rerun", "r5"],
        ("r5", "../../../../etc/passwd"),
        {
            "{out}/runs/r5/manifest.json": json.dumps(
                {
                    **MANIFEST,
                    "notebooks": [
                        {"notebook": "../../../../etc/passwd", "stage": "x", "parameters": {}, "status": "ok"}
                    ],
                }
            )
        },
    ),
    Case(
        "rerun-manifest-bad-value",
        ["rerun", "r6"],
        ("r6", "epochs = -1"),
        {
            "{out}/runs/r6/manifest.json": json.dumps(
                {
                    **MANIFEST,
                    "notebooks": [
                        {
                            "notebook": "02_training.ipynb",
                            "stage": "02_training",
                            "parameters": {"epochs": -1},
                            "status": "ok",
                        }
                    ],
                }
            )
        },
    ),
    Case("rerun-no-manifest", ["rerun", "r7"], ("r7",), {"{out}/runs/r7/other.txt": "x"}),
    Case(
        "rerun-p-unknown",
        ["rerun", "r8", "-p", "x"],
        ("-p expects key=value",),
        {"{out}/runs/r8/manifest.json": json.dumps(MANIFEST)},
    ),
    # --- predict, models ------------------------------------------------------------------------
    Case("predict-interval", ["predict", "BTCUSDT", "--interval", "2m"], ("2m",)),
    Case("predict-no-model", ["predict", "BTCUSDT", "--interval", "1h"], ("no production model for BTCUSDT 1h",)),
    Case("predict-level", ["predict", "BTCUSDT", "--interval", "1h", "--level", "1.5"], ("--level", "'1.5'")),
    Case("predict-horizon", ["predict", "BTCUSDT", "--interval", "1h", "--horizon", "0"], ("--horizon", "'0'")),
    Case("predict-max-age", ["predict", "BTCUSDT", "--interval", "1h", "--max-age", "3"], ("--max-age", "'3'")),
    Case("predict-symbol", ["predict", "btc usdt", "--interval", "1h"], ("btc usdt",)),
    Case("predict-missing-interval", ["predict", "BTCUSDT"], ("--interval",)),
    Case("models-show-unknown", ["models", "show", "BTCUSDT", "1h", "nosuch"], ("nosuch",)),
    Case("models-promote-missing", ["models", "promote", "BTCUSDT", "1h", "hybrid", "v9999"], ("BTCUSDT/1h/hybrid",)),
    Case("models-delete-missing", ["models", "delete", "BTCUSDT", "1h", "hybrid", "v0001"], ("BTCUSDT/1h/hybrid",)),
    Case("models-predict-missing", ["models", "predict", "BTCUSDT", "1h", "hybrid"], ("BTCUSDT/1h/hybrid",)),
    Case("models-show-bad-version", ["models", "show", "BTCUSDT", "1h", "hybrid", "vABC"], ("BTCUSDT/1h/hybrid",)),
    Case("models-show-traversal", ["models", "show", "../../etc", "1h", "hybrid"], ("../../etc",)),
    Case("models-monitor-none", ["models", "monitor", "BTCUSDT", "--interval", "1h"], ("BTCUSDT",)),
    Case(
        "models-monitor-threshold",
        ["models", "monitor", "BTCUSDT", "--interval", "1h", "--threshold", "2"],
        ("--threshold", "'2'"),
    ),
    Case(
        "models-monitor-version",
        ["models", "monitor", "BTCUSDT", "--interval", "1h", "--version", "v0001"],
        ("--version v0001 needs --model",),
    ),
    # --- import, data ----------------------------------------------------------------------------
    Case("import-missing", ["import", "{d}/nope.csv", "--symbol", "BTCUSDT", "--interval", "1m"], ("nope.csv",)),
    Case(
        "import-empty-dir",
        ["import", "{d}/empty", "--symbol", "BTCUSDT", "--interval", "1m"],
        ("{d}/empty",),
        {"empty": DIR},
    ),
    Case(
        "import-binary", ["import", "{d}/x.csv", "--symbol", "BTCUSDT", "--interval", "1m"], ("x.csv",), {"x.csv": PNG}
    ),
    Case(
        "import-latin-1",
        ["import", "{d}/x.csv", "--symbol", "BTCUSDT", "--interval", "1m", "--format", "csv"],
        ("x.csv",),
        {"x.csv": (CSV_HEADER + "1709251200000,62000,62100,61900,62050,caf\u00e9\n").encode("latin-1")},
    ),
    Case(
        "import-interval",
        ["import", "{d}/x.csv", "--symbol", "BTCUSDT", "--interval", "2m"],
        ("unknown interval '2m'",),
        {"x.csv": CSV_HEADER},
    ),
    Case(
        "import-symbol",
        ["import", "{d}/x.csv", "--symbol", "btc usdt", "--interval", "1m"],
        ("btc usdt",),
        {"x.csv": CSV_HEADER},
    ),
    Case(
        "import-map",
        ["import", "{d}/x.csv", "--symbol", "BTCUSDT", "--interval", "1m", "--map", "oops"],
        ("--map expects SRC=DST",),
        {"x.csv": CSV_HEADER},
    ),
    Case(
        "import-header-only",
        ["import", "{d}/x.csv", "--symbol", "BTCUSDT", "--interval", "1m", "--format", "csv"],
        ("x.csv",),
        {"x.csv": CSV_HEADER},
    ),
    Case(
        "import-empty-file",
        ["import", "{d}/x.csv", "--symbol", "BTCUSDT", "--interval", "1m"],
        ("x.csv",),
        {"x.csv": ""},
    ),
    Case(
        "import-parquet-not",
        ["import", "{d}/x.csv", "--symbol", "BTCUSDT", "--interval", "1m", "--format", "parquet"],
        ("x.csv",),
        {"x.csv": CSV_HEADER + "1709251200000,1,2,0.5,1.5,10\n"},
    ),
    Case(
        "import-float-timestamps",
        ["import", "{d}/x.csv", "--symbol", "BTCUSDT", "--interval", "1m", "--format", "binance"],
        ("x.csv", "row"),
        {
            "x.csv": "1.709251200e+12,1,2,0.5,1.5,10,1.70925125999e+12,15,3,5,7,0\n"
            "1.709251260e+12,1,2,0.5,1.5,10,1.70925131999e+12,15,3,5,7,0\n"
        },
    ),
    Case(
        "import-negative-price",
        ["import", "{d}/x.csv", "--symbol", "BTCUSDT", "--interval", "1m", "--format", "csv"],
        ("x.csv", "row"),
        {"x.csv": CSV_HEADER + "1709251200000,-1,2,-5,1.5,10\n"},
    ),
    Case("import-dev-null", ["import", "/dev/null", "--symbol", "BTCUSDT", "--interval", "1m"], ("/dev/null",)),
    Case("data-gaps-interval", ["data", "gaps", "BTCUSDT", "--interval", "2m"], ("2m",)),
    Case(
        "data-gaps-start",
        ["data", "gaps", "BTCUSDT", "--interval", "1h", "--start", "yesterday-ish"],
        ("yesterday-ish",),
    ),
    Case("data-gaps-symbol", ["data", "gaps", "btc usdt", "--interval", "1h"], ("btc usdt",)),
    Case("data-list-server", ["data", "list", "--backend", "server"], ("CLICKHOUSE_HOST",)),
    Case("data-check-server", ["data", "check", "--backend", "server"], ("CLICKHOUSE_HOST",)),
    Case("no-command", [], ("required",)),
    Case("unknown-command", ["nosuch"], ("nosuch",)),
]
# a params file given --jobs: a case of its own (the file is fine, the option is not for it)
CASES[[c.id for c in CASES].index("batch-as-params-jobs")].argv.extend(["--jobs", "2"])


def test_the_corpus_is_large_and_its_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) >= 150 and len(set(ids)) == len(ids), [i for i in ids if ids.count(i) > 1]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """One store for the whole corpus (the bundled sample loads once)."""
    return tmp_path_factory.mktemp("corpus-store")


@pytest.fixture
def no_work(monkeypatch):
    """Anything that would start a kernel, a search or a batch process fails the case instead."""
    import papermill

    from coffee_ml import batch, hpo

    def started(*args, **kwargs):
        raise KernelStarted("a bad input was accepted and real work started")

    monkeypatch.setattr(papermill, "execute_notebook", started)
    monkeypatch.setattr(hpo, "search", started)
    monkeypatch.setattr(hpo, "run_workers", started)
    monkeypatch.setattr(batch, "_start", started)


def _write(root: Path, outputs: Path, files: dict[str, object]) -> None:
    for name, content in files.items():
        path = Path(name.replace("{out}", str(outputs))) if name.startswith("{out}") else root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is DIR:
            path.mkdir(exist_ok=True)
        elif content is FIFO:
            os.mkfifo(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(str(content), encoding="utf-8")


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input_is_one_line_naming_it(case, tmp_path, monkeypatch, capsys, store_dir, no_work):
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("COFFEE_ML_OUTPUTS", str(outputs))
    monkeypatch.setenv("COFFEE_ML_STORE", str(store_dir))
    monkeypatch.delenv("COFFEE_ML_DEBUG", raising=False)
    d = tmp_path / "case"
    d.mkdir()
    _write(d, outputs, case.files)
    argv = [a.replace("{d}", str(d)) for a in case.argv]
    t0 = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage, then one error line, exit 2
        code = exc.code
    seconds = time.perf_counter() - t0
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code not in (0, None), f"accepted: {argv}\n{out}{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(errors) == 1, err
    for text in case.expect:
        assert text.replace("{d}", str(d)) in errors[0], f"{text!r} not in {errors[0]!r}"
    assert errors[0].isprintable(), errors[0]
    assert seconds < SECONDS, f"{seconds:.1f} s"
    assert not (outputs / "runs").exists() or case.id.startswith("rerun"), "a run folder was made for a bad input"
