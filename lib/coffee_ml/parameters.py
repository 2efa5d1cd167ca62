"""Every notebook parameter, declared once: name, type, range, allowed values and a line of help.

The notebooks' `parameters` cells hold the defaults; this module says what a value may be. The
same declaration is read by

- the notebooks themselves: the cell after each parameters cell calls
  `parameters.check("02_training", globals())`, so an edit made interactively is checked too;
- `coffee-ml run` (params files and `-p` overrides), `coffee-ml hpo` and `coffee-ml backtest`,
  through `runner.check_spec`, before any kernel starts (merged with the notebook's defaults, so
  that rules across parameters — start before end, model params only for listed models — see the
  values the notebook would run with);
- tests/test_parameters.py, which asserts that every name in every parameters cell is declared
  here and that its default passes.

Each problem is one line naming the parameter, the value and what is allowed, e.g.
`epochs = -1: expected a whole number >= 1`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATE = "date"  # an ISO date or time as text ("2024-06-01", "2024-06-01T12:00"); YAML dates become text
_TYPE_WORDS = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "text",
    list: "a list",
    dict: "a mapping",
    DATE: "an ISO date such as '2024-06-01'",
}
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,31}")  # as the store names symbols (data.store.SYMBOL_RE)
MAX_SEED = 2**32 - 1  # numpy's seed range
_ITEM_NOUN = {
    "models": "model",
    "members": "model",
    "strategies": "strategy",
    "groups": "group",
    "features": "feature",
    "horizons": "horizon",
}


class ParameterError(ValueError):
    """A notebook parameter with a value its declaration does not allow."""


Choices = Iterable[Any] | Callable[[], Iterable[Any]]


@dataclass(frozen=True)
class Param:
    """One notebook parameter.

    `type`: bool, int, float (ints accepted), str, list, dict or DATE. `min`/`max` bound numbers
    (inclusive; `above`/`below` exclusive); `choices` (or a function returning them, read when
    checked) are the allowed values of a str, or of each item of a list (`item` types the items).
    `none`: None is allowed (the notebook then picks a default). `pattern`: a str must match it.
    """

    name: str
    type: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None
    choices: Choices | None = None
    item: Any = None
    none: bool = False
    nonempty: bool = False
    pattern: re.Pattern[str] | None = None

    def allowed(self) -> tuple[Any, ...] | None:
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def describe(self) -> str:
        """What is allowed, in words: `a whole number >= 1`, `one of hmm, rules`."""
        if self.type is list:
            what = f"a {'non-empty ' if self.nonempty else ''}list"
            if self.choices is not None:
                what += f" of {', '.join(map(str, self.allowed() or ()))}"
            elif self.item is not None:
                what += f" of {_TYPE_WORDS[self.item].removeprefix('a ').removeprefix('an ')}s"
        elif self.choices is not None and self.type is str:
            what = f"one of {', '.join(map(str, self.allowed() or ()))}"
        else:
            what = _TYPE_WORDS[self.type]
        bounds = [
            f">= {_num(self.min)}" if self.min is not None else "",
            f"> {_num(self.above)}" if self.above is not None else "",
            f"<= {_num(self.max)}" if self.max is not None else "",
            f"< {_num(self.below)}" if self.below is not None else "",
        ]
        what = " ".join([what, " and ".join(b for b in bounds if b)]).strip()
        return what + (" (or null)" if self.none else "")

    def problem(self, value: Any) -> str | None:
        """None when `value` is allowed, else `name = value: expected ...`."""
        if value is None:
            return None if self.none else self._bad(value)
        if not _is_type(value, self.type):
            return self._bad(value, _yaml_hint(value) or ("one value, not a list" if isinstance(value, list) else ""))
        if self.type in (int, float):
            if isinstance(value, float) and not math.isfinite(value):
                return self._bad(value)
            if (
                (self.min is not None and value < self.min)
                or (self.max is not None and value > self.max)
                or (self.above is not None and value <= self.above)
                or (self.below is not None and value >= self.below)
            ):
                return self._bad(value)
        if self.type == DATE:
            from coffee_ml.data.store import to_utc

            try:
                to_utc(value, self.name)
            except ValueError:
                return self._bad(value)
        if self.type is str:
            if self.pattern is not None and not self.pattern.fullmatch(value):
                return self._bad(value)
            allowed = self.allowed()
            if allowed is not None and value not in allowed:
                return self._bad(value)
        if self.type is list:
            if self.nonempty and not value:
                return self._bad(value)
            allowed = self.allowed()
            for item in value:
                if self.item is not None and not _is_type(item, self.item):
                    return self._bad(value, f"item {_show(item)} is not {_TYPE_WORDS[self.item]}")
                if self.item in (int, float) and (self.min is not None and item < self.min):
                    return self._bad(value, f"item {_show(item)} is < {_num(self.min)}")
                if allowed is not None and (not _hashable(item) or item not in allowed):
                    return self._bad(value, f"unknown {_ITEM_NOUN.get(self.name, 'value')} {_show(item)}")
        return None

    def _bad(self, value: Any, why: str = "") -> str:
        return f"{self.name} = {_show(value)}: {why + '; ' if why else ''}expected {self.describe()}"


@dataclass(frozen=True)
class Notebook:
    """A notebook's declared parameters and the rules across them (each returns problems)."""

    name: str  # the stem, e.g. "02_training"
    params: dict[str, Param]
    rules: tuple[Callable[[Mapping[str, Any]], list[str]], ...] = field(default=())


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def _hashable(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _is_type(value: Any, kind: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in (str, DATE):
        return isinstance(value, str)
    if kind is list:
        return isinstance(value, list)
    if kind is dict:
        return isinstance(value, Mapping)
    raise TypeError(f"unknown parameter type {kind!r}")


def _yaml_hint(value: Any) -> str:
    if isinstance(value, bool):
        return "YAML reads yes/no/on/off/true/false as a boolean"
    return ""


def _show(value: Any, limit: int = 80) -> str:
    """A value as a message shows it: its repr (control and bidi characters escaped), shortened."""
    text = ascii(value) if isinstance(value, str) and not value.isprintable() else repr(value)
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the allowed values, read from the modules that define them ----------------------------------


def _models() -> tuple[str, ...]:
    from coffee_ml.models.specs import SPECS

    return tuple(SPECS)


def _trainable() -> tuple[str, ...]:
    """Models a notebook trains (naive is always added; an ensemble is 06's)."""
    return tuple(m for m in _models() if m != "ensemble")


def _intervals() -> tuple[str, ...]:
    from coffee_ml.data.schema import INTERVALS

    return tuple(INTERVALS)


def _groups() -> tuple[str, ...]:
    from coffee_ml.features.registry import GROUPS

    return GROUPS


def _features() -> tuple[str, ...]:
    from coffee_ml.features import FEATURES

    return tuple(FEATURES.names())


def _scalers() -> tuple[str, ...]:
    from coffee_ml.features.scaling import METHODS

    return METHODS


def _strategies() -> tuple[str, ...]:
    from coffee_ml.ensemble.forecaster import STRATEGIES

    return STRATEGIES


def _regime_methods() -> tuple[str, ...]:
    from coffee_ml.regimes.detectors import METHODS

    return tuple(METHODS)


def _backtest_methods() -> tuple[str, ...]:
    from coffee_ml.backtest.engine import METHODS

    return METHODS


def _calibrations() -> tuple[str, ...]:
    from coffee_ml.backtest.engine import CALIBRATIONS

    return CALIBRATIONS


def _hpo(name: str) -> Callable[[], tuple[str, ...]]:
    def read() -> tuple[str, ...]:
        from coffee_ml.hpo import study

        return getattr(study, name)

    return read


# --- the declarations ----------------------------------------------------------------------------

COMMON: dict[str, Param] = {
    p.name: p
    for p in (
        Param("symbol", str, "the stored symbol, e.g. BTCUSDT (coffee-ml data list)", pattern=_SYMBOL),
        Param("interval", str, "bar interval of the stored candles", choices=_intervals),
        Param("start", DATE, "first bar (inclusive)", none=True),
        Param("end", DATE, "end of the data (exclusive)", none=True),
        Param(
            "backend",
            str,
            "store backend (auto: server when CLICKHOUSE_HOST is set)",
            choices=("auto", "embedded", "server"),
        ),
        Param("run_dir", str, "the run folder, set by `coffee-ml run`", none=True),
        Param("window", int, "input window in bars", min=1),
        Param("horizon", int, "bars ahead", min=1),
        Param("epochs", int, "max epochs of the neural models (early stopping may end sooner)", min=1),
        Param("seed", int, "random seed", min=0, max=MAX_SEED),
        Param("device", str, "auto, cpu, cuda or cuda:N", pattern=_DEVICE),
        Param("save", bool, "save to the model registry (outputs/models)"),
        Param(
            "groups", list, "feature groups (None: every scale-free feature)", choices=_groups, none=True, nonempty=True
        ),
        Param("models", list, "model names (naive is always added)", choices=_trainable, nonempty=True),
        Param("model_params", dict, "per-model constructor overrides, {model: {param: value}}"),
        Param("retrain_every", int, "bars per walk-forward test block", min=1),
        Param("test_start", DATE, "first test origin", none=True),
        Param("train_bars", int, "bars each fit reads (None: all earlier bars)", min=1, none=True),
    )
}


def _common(*names: str, **changed: Param) -> dict[str, Param]:
    out = {n: COMMON[n] for n in names}
    out.update(changed)
    return out


def _before(first: str, second: str, strict: bool = True) -> Callable[[Mapping[str, Any]], list[str]]:
    """`first` must come before `second` when both are given."""

    def rule(values: Mapping[str, Any]) -> list[str]:
        a, b = values.get(first), values.get(second)
        if a is None or b is None:
            return []
        from coffee_ml.data.store import to_utc

        try:
            ta, tb = to_utc(a, first), to_utc(b, second)
        except ValueError:
            return []  # the parameter's own check reports it
        if ta is None or tb is None or ta < tb or (not strict and ta == tb):
            return []
        return [f"{first} {a} is {'after' if ta > tb else 'the same as'} {second} {b}: expected {first} < {second}"]

    return rule


def _per_model(models: str, params: str) -> Callable[[Mapping[str, Any]], list[str]]:
    """`params` ({model: {param: value}}) only for models in `models`, and only parameters the
    model's constructor takes."""

    def rule(values: Mapping[str, Any]) -> list[str]:
        listed, given = values.get(models), values.get(params)
        if not isinstance(listed, list) or not isinstance(given, Mapping):
            return []
        from coffee_ml.models.specs import get_spec

        out = []
        for name, own in given.items():
            if name not in listed:
                out.append(
                    f"{params} = {_show(dict(given))}: given for {_show(name)}, which is not in "
                    f"{models} = {_show(listed)}"
                )
            elif not isinstance(own, Mapping):
                out.append(f"{params}.{name} = {_show(own)}: expected a mapping of {name}'s parameters")
            else:
                try:
                    get_spec(name).check_params(dict(own))
                except ValueError as exc:
                    out.append(f"{params}.{name}: {exc}")
        return out

    return rule


def _hpo_config(values: Mapping[str, Any]) -> list[str]:
    """Whatever HPOConfig (the search 05 runs) refuses: the metric, the space, the method against
    the space (a range on a grid), folds for walk-forward validation."""
    if isinstance(values.get("model"), list):
        return []  # reported by the parameter itself
    from dataclasses import fields

    from coffee_ml.hpo import HPOConfig

    names = {f.name for f in fields(HPOConfig)}
    try:
        HPOConfig(**{k: v for k, v in values.items() if k in names})
    except (ValueError, TypeError) as exc:
        return [" ".join(str(exc).split())]
    return []


def _weights(values: Mapping[str, Any]) -> list[str]:
    weights, members = values.get("weights"), values.get("members")
    if isinstance(weights, list) and isinstance(members, list) and len(weights) != len(members):
        return [
            f"weights = {_show(weights)}: {len(weights)} weight(s) for {len(members)} member(s) "
            f"{_show(members)}: expected one per member"
        ]
    return []


def _start_or_days(values: Mapping[str, Any]) -> list[str]:
    if values.get("start") is None and values.get("days") is None:
        return ["days and start are both null: give the days to scan, or a start"]
    return []


def _metric(values: Mapping[str, Any]) -> list[str]:
    metric = values.get("metric")
    if not isinstance(metric, str):
        return []
    from coffee_ml.evaluation import get_scorer

    try:
        get_scorer(metric)
    except ValueError as exc:
        return [f"metric = {_show(metric)}: {exc}"]
    return []


NOTEBOOKS: dict[str, Notebook] = {
    nb.name: nb
    for nb in (
        Notebook(
            "00_data",
            _common(
                "symbol",
                "interval",
                "start",
                "end",
                "backend",
                "run_dir",
                source_interval=Param(
                    "source_interval",
                    str,
                    "resample from this stored interval to `interval`",
                    choices=_intervals,
                    none=True,
                ),
            ),
            (_before("start", "end"),),
        ),
        Notebook(
            "01_features",
            _common(
                "symbol",
                "interval",
                "start",
                "end",
                "groups",
                "window",
                "horizon",
                "backend",
                "run_dir",
                features=Param(
                    "features",
                    list,
                    "explicit feature names (overrides groups)",
                    choices=_features,
                    none=True,
                    nonempty=True,
                ),
                scaler=Param("scaler", str, "feature scaling", choices=_scalers),
            ),
            (_before("start", "end"),),
        ),
        Notebook(
            "02_training",
            _common(
                "symbol",
                "interval",
                "start",
                "end",
                "groups",
                "models",
                "model_params",
                "window",
                "horizon",
                "epochs",
                "device",
                "seed",
                "save",
                "backend",
                "run_dir",
            ),
            (_before("start", "end"), _per_model("models", "model_params")),
        ),
        Notebook(
            "03_backtesting",
            _common(
                "symbol",
                "interval",
                "start",
                "end",
                "models",
                "model_params",
                "retrain_every",
                "test_start",
                "train_bars",
                "epochs",
                "horizon",
                "window",
                "backend",
                "run_dir",
                method=Param("method", str, "walk_forward or simple", choices=_backtest_methods),
                test_fraction=Param("test_fraction", float, "share of the span used for testing", above=0, below=1),
                scheme=Param("scheme", str, "expanding or rolling training window", choices=("expanding", "rolling")),
                warm_start=Param("warm_start", bool, "neural models continue from the previous fold's weights"),
                warm_epochs=Param("warm_epochs", int, "epochs of a warm-started refit", min=1),
                calibration=Param("calibration", str, "interval calibration per fold", choices=_calibrations),
                fee_bps=Param("fee_bps", float, "fee per trade in basis points", min=0),
                slippage_bps=Param("slippage_bps", float, "slippage per trade in basis points", min=0),
                threshold=Param("threshold", float, "minimum predicted log return to take a position", min=0),
                allow_short=Param("allow_short", bool, "take short positions"),
                n_jobs=Param("n_jobs", int, "models fitted in parallel", min=1),
                save_model=Param("save_model", bool, "save each model of the last fold to the registry"),
            ),
            (
                _before("start", "end"),
                _before("start", "test_start"),
                _before("test_start", "end"),
                _per_model("models", "model_params"),
            ),
        ),
        Notebook(
            "04_regimes",
            _common(
                "symbol",
                "interval",
                "end",
                "backend",
                "run_dir",
                start=Param("start", DATE, "first labelled bar; earlier stored bars are history for the first fit"),
                method=Param("method", str, "the method whose regimes are judged", choices=_regime_methods),
                window=Param("window", int, "trend window in bars (None: the method's default)", min=2, none=True),
                trend_z=Param("trend_z", float, "rules: trend threshold in random-walk spreads", above=0),
                adx_min=Param("adx_min", float, "rules: ADX threshold", min=0, max=100),
                refit_every=Param("refit_every", int, "bars between refits", min=1),
                train_bars=Param("train_bars", int, "bars each fit reads (None: all earlier bars)", min=1, none=True),
                horizons=Param("horizons", list, "forward test horizons in bars", item=int, min=1, nonempty=True),
            ),
            (_before("start", "end"),),
        ),
        Notebook(
            "05_hpo",
            _common(
                "symbol",
                "interval",
                "start",
                "end",
                "horizon",
                "seed",
                "save",
                "backend",
                "run_dir",
                model=Param(
                    "model", str, "the model searched (search several with `model: [...]` in space)", choices=_models
                ),
                method=Param("method", str, "search method", choices=_hpo("METHODS")),
                trials=Param("trials", int, "trials to run (a grid runs each point once)", min=1),
                metric=Param("metric", str, "validation scorer: mae, rmse, dir_acc, brier, winkler_80, sharpe, ..."),
                space=Param("space", dict, "search space (None: the platform's default)", none=True),
                storage=Param(
                    "storage", str, "sqlite (default), journal, env or a database URL without password", none=True
                ),
                study=Param(
                    "study", str, "study name (default <symbol>-<interval>-<model>-<method>-<metric>)", none=True
                ),
                pruner=Param("pruner", str, "Optuna pruner", choices=_hpo("PRUNERS")),
                validation=Param("validation", str, "holdout or walk_forward", choices=_hpo("VALIDATIONS")),
                folds=Param("folds", int, "walk-forward folds inside the validation span", min=1),
            ),
            (_before("start", "end"), _hpo_config),
        ),
        Notebook(
            "06_ensembles",
            _common(
                "symbol",
                "interval",
                "start",
                "end",
                "epochs",
                "window",
                "horizon",
                "retrain_every",
                "backend",
                "run_dir",
                members=Param("members", list, "member models", choices=_trainable, nonempty=True),
                strategies=Param(
                    "strategies", list, "ensemble strategies compared", choices=_strategies, nonempty=True
                ),
                weights=Param(
                    "weights",
                    list,
                    "fixed weights of 'weighted', one per member (None: inverse error)",
                    item=float,
                    min=0,
                    none=True,
                    nonempty=True,
                ),
                member_params=Param("member_params", dict, "per-member constructor overrides, {model: {param: value}}"),
                test_start=Param("test_start", DATE, "first test origin"),
                save_strategy=Param(
                    "save_strategy",
                    str,
                    "strategy fitted on the whole range and saved (None: none)",
                    choices=_strategies,
                    none=True,
                ),
            ),
            (
                _before("start", "end"),
                _before("start", "test_start"),
                _before("test_start", "end"),
                _per_model("members", "member_params"),
                _weights,
            ),
        ),
        Notebook(
            "07_anomalies",
            _common(
                "symbol",
                "interval",
                "start",
                "end",
                "backend",
                "run_dir",
                days=Param(
                    "days",
                    float,
                    "the last `days` days of stored candles (ignored when start is given)",
                    above=0,
                    none=True,
                ),
                pump_threshold=Param("pump_threshold", float, "pump points that make an event", min=0, max=100),
                crash_threshold=Param("crash_threshold", float, "flash-crash risk that makes an event", min=0, max=100),
                move_bars=Param("move_bars", int, "bars a pump may take", min=2),
                baseline_bars=Param("baseline_bars", int, "trailing bars of the volume baseline", min=2),
                dump_bars=Param("dump_bars", int, "bars after a pump that decide its sustainability", min=1),
                min_rise=Param("min_rise", float, "rise from which volume and rapidity count in full", above=0),
                rank_bars=Param("rank_bars", int, "trailing bars the flash-crash components are ranked against", min=1),
                contamination=Param("contamination", float, "Isolation Forest contamination", above=0, below=0.5),
                crash_drop=Param("crash_drop", float, "the forecast table's drawdown target", above=0, below=1),
                crash_bars=Param("crash_bars", int, "bars within which the drawdown counts", min=1),
            ),
            (_before("start", "end"), _start_or_days),
        ),
        Notebook(
            "08_production",
            _common(
                "symbol",
                "interval",
                "end",
                "backend",
                "run_dir",
                metric=Param("metric", str, "validation scorer that picks the production model, e.g. skill, mae"),
                promote=Param(
                    "promote", bool, "promote the choice (false: show it, keep the current production model)"
                ),
                horizon=Param("horizon", int, "bars ahead the sidebar shows (None: the model's)", min=1, none=True),
                level=Param("level", float, "the sidebar's interval level", above=0, below=1),
                monitor_window=Param(
                    "monitor_window", int, "origins per rolling window of the monitor", min=1, none=True
                ),
                threshold=Param(
                    "threshold",
                    float,
                    "skill drop that counts as degraded (None: the monitor's default)",
                    min=0,
                    below=1,
                    none=True,
                ),
            ),
            (_metric,),
        ),
    )
}


def declaration(notebook: str | Path) -> Notebook | None:
    """The declaration of a project notebook (`02_training`, `02_training.ipynb` or a path);
    None for a notebook this project does not declare (a test's own notebooks)."""
    return NOTEBOOKS.get(Path(str(notebook)).name.removesuffix(".ipynb"))


def problems(notebook: str | Path, values: Mapping[str, Any], given: Iterable[str] | None = None) -> list[str]:
    """Every problem with `values` (a notebook's parameters, merged with its defaults), each one
    line naming the parameter, the value and what is allowed. `given`: the names to check one by
    one (default all); the rules across parameters always run, once every value they read passes."""
    nb = declaration(notebook)
    if nb is None:
        return []
    names = list(values) if given is None else [n for n in given if n in values]
    out = [f"{name}: not a parameter of {nb.name}" for name in names if name not in nb.params]
    out += [p for name in names if name in nb.params and (p := nb.params[name].problem(values[name]))]
    bad = {name for name in nb.params if name in values and nb.params[name].problem(values[name])}
    if not bad:
        for rule in nb.rules:
            out += rule(values)
    return out


def check(notebook: str, namespace: Mapping[str, Any]) -> None:
    """Raise ParameterError, one line per problem, when the notebook's parameters (read from its
    `globals()`) are not allowed: the call in the cell after each parameters cell."""
    nb = declaration(notebook)
    if nb is None:
        raise ParameterError(f"{notebook}: no parameter declaration (coffee_ml.parameters.NOTEBOOKS)")
    found = problems(notebook, {k: namespace[k] for k in nb.params if k in namespace})
    if found:
        raise ParameterError("; ".join(f"{nb.name}: {p}" for p in found))


def help_text(notebook: str, name: str) -> str:
    """The declared help and allowed values of a parameter (for argparse help)."""
    nb = declaration(notebook)
    param = nb.params[name] if nb else COMMON[name]
    return f"{param.help} ({param.describe()})" if param.help else param.describe()
