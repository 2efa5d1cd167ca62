"""Hyperparameter search: grid, random or Optuna (TPE with pruning), on validation data only.

Every method runs as an Optuna study (GridSampler, RandomSampler, TPESampler), so all three
persist, resume and share work between processes the same way: a worker runs trials until the
study holds `trials` finished ones (complete or pruned), counted in the storage, so an
interrupted study resumes where it stopped and N workers never run more than asked.

Many workers, one study, no repeats:
- random and TPE draw each trial's numbers from a stream seeded by (seed, trial number), and
  trial numbers are unique in the storage, so N workers explore N different streams; trial n
  gets the same random draws whichever worker runs it, with 1 worker or 8, first run or resumed.
- a grid is queued before any worker starts (`queue_grid`): each point the study lacks becomes a
  waiting trial, each worker takes waiting trials (a storage-side compare-and-set: a trial is
  taken once), and exactly as many trials run as were queued, so no point runs twice.

The objective is one of the evaluation layer's scorers on the validation part:
- `validation="holdout"`: fit on the train split (neural models stop early on val), score the
  val forecasts. Neural trials report their validation loss every epoch and are pruned by it.
  Intervals and confidence are calibrated on val too, so interval and probability scorers are
  optimistic here; use walk-forward for them.
- `validation="walk_forward"`: `folds` walk-forward folds over the validation span (train+val,
  never test), each model fitted on the bars before its block and recalibrated out of sample
  (PooledCalibration); the running score after each fold is reported and pruned on.
The test split is scored once, for the best trial only, by `finish`, which refits that trial's
parameters (the same seed gives the same model), saves it to the registry and reports the test
score beside the search's best validation score, so over-fitting the search shows.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from coffee_ml import evaluation
from coffee_ml.hpo.space import SearchSpace
from coffee_ml.hpo.storage import check_storage, open_storage
from coffee_ml.models.specs import build_model, get_spec
from coffee_ml.progress import report as report_progress

METHODS = ("grid", "random", "optuna")
PRUNERS = ("median", "hyperband", "none")
VALIDATIONS = ("holdout", "walk_forward")


@dataclass
class HPOConfig:
    """One search, as written in a params file (`coffee-ml hpo`) or a notebook's parameters."""

    symbol: str = "BTCUSDT"
    interval: str = "1h"
    start: str | None = None
    end: str | None = None
    model: str = "lstm"
    method: str = "optuna"
    trials: int = 20
    metric: str = "mae"
    space: dict[str, Any] | None = None
    storage: str | None = None  # sqlite (default) | journal | a database URL (no password: see storage.py)
    study: str | None = None  # default: <symbol>-<interval>-<model>-<method>-<metric>
    pruner: str = "median"
    validation: str = "holdout"
    folds: int = 3
    horizon: int = 24
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    device: str = "auto"
    save: bool = True
    backend: str = "auto"
    model_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.pruner not in PRUNERS:
            raise ValueError(f"pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        if self.validation not in VALIDATIONS:
            raise ValueError(f"validation must be one of {', '.join(VALIDATIONS)}, got {self.validation!r}")
        if not isinstance(self.trials, int) or isinstance(self.trials, bool) or self.trials < 1:
            raise ValueError(f"trials must be a whole number >= 1, got {self.trials!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be a whole number in [0, 2**32), got {self.seed!r}")
        check_storage(self.storage)  # before anything runs or is written
        if self.validation == "walk_forward" and self.folds < 2:
            raise ValueError(f"folds must be >= 2 for walk-forward validation, got {self.folds}")
        scorer = evaluation.get_scorer(self.metric)  # unknown names fail here, with the list
        scorer.loss(0.5)  # descriptive scorers (no better/worse) cannot be optimised
        self.space_ = SearchSpace.parse(self.model, self.space)
        if "model" not in self.space_.params:
            get_spec(self.model).check_params(self.model_params)
        else:
            known = set().union(*(get_spec(m).estimator._param_names() for m in self.space_.models))
            unknown = sorted(set(self.model_params) - known)
            if unknown:
                raise ValueError(f"model_params: none of {', '.join(self.space_.models)} has {', '.join(unknown)}")
        clash = set(self.space_.params) & set(self.model_params)
        if clash:
            raise ValueError(f"{', '.join(sorted(clash))} both searched (space) and fixed (model_params)")
        if self.method == "grid":
            self.space_.grid()
        self.study = self.study or f"{self.symbol}-{self.interval}-{self.model}-{self.method}-{self.metric}"

    @property
    def n_trials(self) -> int:
        """Grid: every point once (at most `trials`); the others: `trials`."""
        return min(self.trials, self.space_.size) if self.method == "grid" else self.trials

    def record(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if not k.endswith("_")}
        out["split"] = list(self.split)
        return out


@dataclass
class SearchResult:
    config: HPOConfig
    trials: pd.DataFrame
    best_params: dict[str, Any]
    best_value: float
    val_scores: dict[str, float]
    test_scores: dict[str, float]
    naive_scores: dict[str, dict[str, float]]  # the naive forecast on the same val and test origins
    model_ref: Any
    storage: str
    study: Any = field(repr=False)


def load_dataset(config: HPOConfig, candles: pd.DataFrame | None = None):
    """The one dataset every trial shares: windows as long as the space's longest, so all trials
    forecast the same origins, and a train/val/test split whose test part the search never reads."""
    from coffee_ml.data import open_store
    from coffee_ml.features import build_dataset

    if candles is None:
        candles = open_store(config.backend).load_candles(config.symbol, config.interval, config.start, config.end)
    if candles.empty:
        raise ValueError(
            f"no {config.symbol} {config.interval} candles in [{config.start}, {config.end}): "
            "import them first (see `coffee-ml data list`)"
        )
    return build_dataset(
        candles, config.interval, window=config.space_.max_window, horizon=config.horizon, split=config.split
    ), candles


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial `number`'s random draws: distinct per trial, the same on every worker."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _random_states(sampler) -> list[np.random.RandomState]:
    """The random states a sampler draws from: its own `_rng` and, for TPE, its startup
    RandomSampler's (Optuna keeps them in LazyRandomState wrappers)."""
    found = []
    for owner in (sampler, getattr(sampler, "_random_sampler", None)):
        rng = getattr(owner, "_rng", None)
        rng = getattr(rng, "rng", rng)  # LazyRandomState -> its RandomState
        if isinstance(rng, np.random.RandomState):
            found.append(rng)
    return found


@functools.cache
def _samplers() -> dict[str, type]:
    """Optuna's samplers, each drawing trial n's numbers from `trial_seed(seed, n)`. Sampler
    seeds are per process, so N workers built with one seed would otherwise draw the same
    stream and run the same parameters N times."""
    import optuna

    class PerTrialSeed:
        def __init__(self, *args: Any, seed: int, **kwargs: Any) -> None:
            super().__init__(*args, seed=seed, **kwargs)
            self._trial_seed_base = seed
            if not _random_states(self):  # an Optuna whose samplers keep their state elsewhere
                raise RuntimeError(
                    f"optuna {optuna.__version__}: {type(self).__mro__[2].__name__} has no random "
                    "state to seed per trial (coffee_ml.hpo.study._random_states)"
                )

        def before_trial(self, study, trial) -> None:
            for rng in _random_states(self):
                rng.seed(trial_seed(self._trial_seed_base, trial.number))
            super().before_trial(study, trial)

    class Random(PerTrialSeed, optuna.samplers.RandomSampler):
        pass

    class TPE(PerTrialSeed, optuna.samplers.TPESampler):
        pass

    class Grid(PerTrialSeed, optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            # Optuna stops a worker when no grid point is left unvisited by its own count, which
            # ignores the queued points (see `queue_grid`); the counts in storage decide instead
            pass

    return {"random": Random, "optuna": TPE, "grid": Grid}


def _sampler(config: HPOConfig):
    kinds = _samplers()
    if config.method == "grid":
        return kinds["grid"](config.space_.grid(), seed=config.seed)
    if config.method == "random":
        return kinds["random"](seed=config.seed)
    return kinds["optuna"](seed=config.seed, n_startup_trials=min(10, max(2, config.trials // 3)))


def grid_points(config: HPOConfig) -> list[dict[str, Any]]:
    """Every point of the grid, in the order the seed shuffles them (Optuna's GridSampler order):
    a grid with fewer trials than points runs the first ones."""
    grid = config.space_.grid()
    names = sorted(grid)
    points = list(itertools.product(*(grid[n] for n in names)))
    np.random.RandomState(config.seed).shuffle(points)
    return [dict(zip(names, p)) for p in points]


def _point(config: HPOConfig, trial) -> tuple[str, ...] | None:
    """A trial's grid point (queued or suggested parameters), None while it is incomplete."""
    params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    if set(params) != set(config.space_.params):
        return None
    return tuple(repr(params[n]) for n in sorted(params))


def queue_grid(config: HPOConfig, study) -> int:
    """Queue the grid points the study still lacks as waiting trials, and return how many trials
    to run now: every run takes one waiting trial, so no point runs twice however many workers
    share the study. A point counts as taken when a trial finished it (complete or pruned), runs
    it or waits for it; a point whose trial failed is queued again."""
    from optuna.trial import TrialState

    taken, waiting = set(), 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
            taken.add(_point(config, trial))
        waiting += trial.state == TrialState.WAITING
    left = remaining_trials(config, study)
    for point in grid_points(config):
        if waiting >= left:
            break
        key = tuple(repr(point[n]) for n in sorted(point))
        if key not in taken:
            study.enqueue_trial(point, skip_if_exists=False)
            taken.add(key)
            waiting += 1
    return min(left, waiting)


def trials_to_run(config: HPOConfig, study) -> int:
    """How many trials this `coffee-ml hpo` runs now (a grid: queued first, see `queue_grid`)."""
    return queue_grid(config, study) if config.method == "grid" else remaining_trials(config, study)


def _pruner(config: HPOConfig):
    import optuna

    if config.pruner == "none" or config.method == "grid":  # a grid is exhaustive by definition
        return optuna.pruners.NopPruner()
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)


def open_study(config: HPOConfig, workers: int = 1, recover: bool = False):
    """Create or resume the study in its storage (see storage.py).

    `recover`: trials left running by a killed process (or a killed worker) are marked failed and
    queued again with the parameters they had (those they had not drawn yet are drawn afresh; a
    grid point is queued by `queue_grid` when the trial died before taking it), so a resumed
    search runs them. Only for the file storages, which one `coffee-ml hpo` at a time drives;
    on a database other machines may still be running trials, and Optuna's heartbeat (set in
    storage.py) fails and retries those whose process stopped beating."""
    import optuna
    from optuna.trial import TrialState

    storage, where = open_storage(config.storage, config.study, workers)
    study = optuna.create_study(
        study_name=config.study,
        storage=storage,
        load_if_exists=True,
        direction="minimize",
        sampler=_sampler(config),
        pruner=_pruner(config),
    )
    study.set_user_attr("metric", config.metric)
    if recover and (config.storage or "sqlite") in ("sqlite", "journal"):
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            storage.set_trial_state_values(stale._trial_id, state=TrialState.FAIL)
            params = {**stale.system_attrs.get("fixed_params", {}), **stale.params}
            if config.method != "grid" or _point(config, stale) is not None:
                study.enqueue_trial(params, user_attrs={"retry_of": stale.number}, skip_if_exists=False)
    return study, where


def make_model(config: HPOConfig, params: dict[str, Any]):
    """The model of one point of the space (its type too, when the space searches `model`);
    `model_params` are fixed settings of the models that have them."""
    name, own = config.space_.for_model(config.model_params | params)
    return build_model(name, own, seed=config.seed, device=config.device, progress=False)


def _holdout(config: HPOConfig, ds, params: dict[str, Any], trial) -> float:
    import optuna

    from coffee_ml import training

    def report(epoch: int, val_loss: float) -> None:
        trial.report(val_loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"validation loss {val_loss:.4g} at epoch {epoch}")

    model = make_model(config, params)
    with training.epoch_reporter(report):
        model.fit(ds)
    if hasattr(model, "training_"):
        trial.set_user_attr("epochs", int(len(model.training_.history)))
    return float(evaluation.score(model.predict(ds, "val"), [config.metric])[config.metric])


def _walk_forward(config: HPOConfig, candles: pd.DataFrame, ds, params: dict[str, Any], trial) -> float:
    import optuna

    from coffee_ml.backtest.engine import walk_forward
    from coffee_ml.backtest.folds import plan_folds
    from coffee_ml.backtest.hooks import PooledCalibration
    from coffee_ml.features import feature_panel
    from coffee_ml.forecast import Forecast

    scorer = evaluation.get_scorer(config.metric)
    test_from = int(ds.splits["test"][0])  # panel rows end before the test windows start
    panel = feature_panel(
        candles.iloc[: ds.report.warmup_rows + test_from], config.interval, window=ds.window, horizon=ds.horizon
    )
    val_start = int(ds.splits["val"][0])
    every = math.ceil((len(panel.features) - val_start) / config.folds)
    folds = plan_folds(len(panel.features), val_start, every, max(ds.window, ds.horizon))
    seen: list[Forecast] = []

    def fold_done(index: int, forecast: Forecast) -> None:
        seen.append(forecast)
        value = scorer.loss(float(evaluation.score(Forecast.concat(seen), [config.metric])[config.metric]))
        trial.report(value, index)
        if trial.should_prune():
            raise optuna.TrialPruned(f"{config.metric} after fold {index}")

    result = walk_forward(panel, folds, make_model(config, params), hooks=[PooledCalibration()], report=fold_done)
    if result.folds["epochs"].notna().any():
        trial.set_user_attr("epochs", int(result.folds["epochs"].sum()))
    return float(evaluation.score(result.forecast, [config.metric])[config.metric])


def remaining_trials(config: HPOConfig, study) -> int:
    """Trials still to run: `n_trials` less the finished (complete or pruned) ones in storage. A
    trial of a killed process does not count, so resuming runs it again (see `open_study`)."""
    from optuna.trial import TrialState

    return max(
        0, config.n_trials - len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    )


def optimize(
    config: HPOConfig,
    *,
    quota: int | None = None,
    workers: int = 1,
    progress: bool = True,
    candles: pd.DataFrame | None = None,
    on_trial: Callable[[Any], None] | None = None,
):
    """Run `quota` trials in this process (default: all the study still lacks). Returns the study.

    Several processes on one storage each get a quota from `run_workers`, which splits what
    remains, so together they run exactly the trials asked for: a shared stop condition
    (Optuna's MaxTrialsCallback) lets every worker start one more trial when the count is
    nearly reached."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ds, candles = load_dataset(config, candles)
    study, _ = open_study(config, workers, recover=quota is None)
    scorer = evaluation.get_scorer(config.metric)

    def objective(trial) -> float:
        # which process runs the trial (a system attribute: not a column of the trials table)
        trial.storage.set_trial_system_attr(trial._trial_id, "worker", f"{socket.gethostname()}:{os.getpid()}")
        params = config.space_.suggest(trial)
        # TPE often proposes a point again in a small categorical space: the same parameters and
        # seed give the same model, so reuse the finished trial instead of training it twice
        for old in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            if old.params == trial.params and old.number != trial.number:
                trial.set_user_attr("same_as", old.number)
                if old.state == TrialState.PRUNED:
                    raise optuna.TrialPruned(f"same parameters as pruned trial {old.number}")
                trial.set_user_attr("value", old.user_attrs["value"])
                return old.value
        value = (
            _holdout(config, ds, params, trial)
            if config.validation == "holdout"
            else _walk_forward(config, candles, ds, params, trial)
        )
        trial.set_user_attr("value", value)
        if not np.isfinite(value):
            raise optuna.TrialPruned(f"{config.metric} is not finite")
        return scorer.loss(value)

    remaining = trials_to_run(config, study) if quota is None else quota
    if remaining > 0:
        from tqdm import tqdm

        bar = tqdm(
            total=config.n_trials,
            initial=config.n_trials - remaining,
            desc=f"hpo {config.study}",
            unit="trial",
            disable=not progress,
        )

        def callback(study, trial) -> None:
            bar.update(1)
            value = trial.user_attrs.get("value")
            report_progress(
                f"hpo trial {trial.number + 1}/{config.n_trials} {trial.state.name.lower()}"
                + (f", {config.metric} {value:.4g}" if isinstance(value, float) else "")
            )
            if on_trial is not None:
                on_trial(trial)

        study.optimize(objective, n_trials=remaining, callbacks=[callback], catch=(FloatingPointError,))
        bar.close()
    return study


def trials_frame(study, metric: str) -> pd.DataFrame:
    """One row per trial: number, state, the metric's value, parameters, epochs, seconds."""
    df = study.trials_dataframe(attrs=("number", "state", "params", "user_attrs", "duration"))
    if df.empty:
        return df
    df = df.rename(columns=lambda c: c.removeprefix("params_").removeprefix("user_attrs_"))
    df["seconds"] = df.pop("duration").dt.total_seconds()
    df = df.rename(columns={"value": metric})
    return df.set_index("number")


def finish(config: HPOConfig, study, where: str, candles: pd.DataFrame | None = None) -> SearchResult:
    """Refit the best trial's parameters, score val and (once) test, save to the registry."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise RuntimeError(f"study {config.study!r} has no completed trial (all pruned or failed)")
    best = min(complete, key=lambda t: (t.value, t.number))
    ds, _ = load_dataset(config, candles)
    model = make_model(config, best.params).fit(ds)
    names = list(dict.fromkeys([config.metric, *evaluation.summary_names(model.calibration_.levels)]))
    val = evaluation.score(model.predict(ds, "val"), names)
    test = evaluation.score(model.predict(ds, "test"), names)
    naive = build_model("naive").fit(ds)
    baseline = {split: evaluation.score(naive.predict(ds, split), names) for split in ("val", "test")}
    ref = None
    if config.save:
        from coffee_ml.models.persistence import save_model

        extra = {
            "hpo": {
                "study": config.study,
                "storage": where,
                "method": config.method,
                "metric": config.metric,
                "validation": config.validation,
                "best_trial": best.number,
                "best_value": best.user_attrs.get("value"),
                "trials": len(study.trials),
                "params": best.params,
            }
        }
        ref = save_model(model, ds, symbol=config.symbol, name=config.space_.for_model(best.params)[0], extra=extra)
    return SearchResult(
        config,
        trials_frame(study, config.metric),
        dict(best.params),
        float(best.user_attrs.get("value", np.nan)),
        val,
        test,
        baseline,
        ref,
        where,
        study,
    )


def search(config: HPOConfig, *, progress: bool = True, candles: pd.DataFrame | None = None) -> SearchResult:
    """`optimize` in this process, then `finish`: what the notebook and `coffee-ml hpo` call."""
    study = optimize(config, progress=progress, candles=candles)
    _, where = open_storage(config.storage, config.study, 1)
    return finish(config, study, where, candles)
