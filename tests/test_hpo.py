"""Hyperparameter search on real candles (the bundled BTCUSDT hours): bad spaces fail before
anything runs, grids are exhaustive, studies resume, two processes share one study without losing
or repeating a trial (journal file, and a real PostgreSQL server where its binaries exist), neural
trials are pruned by their learning curve, and the test split is scored once, for the best trial."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from coffee_ml import hpo, registry
from coffee_ml.cli import main

RANGE = {"start": "2025-05-01", "end": "2025-12-01"}
CHEAP = {
    "model": "gbm",
    "model_params": {"n_estimators": 20, "early_stopping_rounds": 5, "n_jobs": 1},
    "space": {"num_leaves": [4, 8], "learning_rate": [0.05, 0.2]},
    **RANGE,
}


def _config(**kw) -> hpo.HPOConfig:
    return hpo.HPOConfig(**(CHEAP | kw))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"space": {}}, "space for model 'gbm' is empty"),
        ({"space": {"hidden": [32]}}, "model 'gbm' has no parameter 'hidden'"),
        ({"space": {"num_leaves": []}}, "space.num_leaves is empty"),
        ({"model": "lstm", "model_params": {}, "space": {"hidden": [32, 0]}}, "space.hidden: model 'lstm' rejects 0"),
        ({"model": "lstm", "model_params": {}, "space": {"dropout": [0.1, 1.5]}}, "rejects 1.5: dropout must be in"),
        ({"model": "lstm", "model_params": {}, "space": {"lr": {"low": -1, "high": 0.1}}}, "rejects -1"),
        ({"trials": 0}, "trials must be a whole number >= 1"),
        ({"method": "grid", "space": {"learning_rate": {"low": 0.01, "high": 0.1}}}, "grid search needs a list"),
        ({"metric": "origins"}, "descriptive and cannot be optimised"),
        ({"metric": "accuracy"}, "unknown scorer 'accuracy'"),
        ({"method": "bayes"}, "method must be one of grid, random, optuna"),
        ({"model_params": {"num_leaves": 4}}, "num_leaves both searched"),
    ],
)
def test_bad_search_fails_before_anything_runs(kw, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        _config(**kw)
    assert not (Path(os.environ["COFFEE_ML_OUTPUTS"]) / "hpo").exists()


def test_platform_default_space_is_valid_for_recurrent_models():
    for model in ("lstm", "gru"):
        space = hpo.SearchSpace.parse(model, None)
        assert space.grid() == {"hidden": [32, 64, 128], "window": [20, 40, 60], "max_epochs": [50, 100, 150]}
        assert space.size == 27 and space.max_window == 60


def test_grid_is_exhaustive_tests_once_and_saves_the_best(tmp_path, monkeypatch):
    from coffee_ml import progress

    lines = tmp_path / ".progress.log"  # what a runner forwards to the console while the cell runs
    monkeypatch.setenv(progress.PROGRESS_ENV, str(lines))
    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)
    result = hpo.search(_config(method="grid", trials=100), progress=False)
    trials = result.trials
    assert len(trials) == 4 and (trials["state"] == "COMPLETE").all()
    assert [line.split(" complete")[0] for line in lines.read_text().splitlines()] == [
        f"hpo trial {n}/4" for n in (1, 2, 3, 4)
    ]
    assert {(r.num_leaves, r.learning_rate) for r in trials.itertuples()} == {(4, 0.05), (4, 0.2), (8, 0.05), (8, 0.2)}
    assert result.best_value == trials["mae"].min()
    best = trials.loc[trials["mae"].idxmin()]
    assert result.best_params == {"num_leaves": best["num_leaves"], "learning_rate": best["learning_rate"]}
    # the refit reproduces the best trial's validation score; test is scored for it alone
    assert result.val_scores["mae"] == pytest.approx(result.best_value, rel=1e-9)
    assert "mae" in result.test_scores and result.test_scores["mae"] != result.val_scores["mae"]
    meta = registry.read(result.model_ref)[1]
    assert meta["hpo"]["study"] == "BTCUSDT-1h-gbm-grid-mae" and meta["hpo"]["params"] == result.best_params
    assert meta["params"]["num_leaves"] == best["num_leaves"]


def test_the_model_type_is_searched_with_its_own_parameters():
    config = hpo.HPOConfig(
        model="gbm",
        method="grid",
        trials=10,
        **RANGE,
        space={"model": ["drift", "gbm"], "num_leaves": [4, 8]},
        model_params={"n_estimators": 20, "n_jobs": 1},
    )
    result = hpo.search(config, progress=False)
    assert len(result.trials) == 4 and set(result.trials["model"]) == {"drift", "gbm"}
    # drift has no num_leaves: its two grid points are the same model, and score the same
    drift = result.trials[result.trials["model"] == "drift"]["mae"]
    assert drift.nunique() == 1
    assert result.model_ref.model == result.best_params["model"]
    with pytest.raises(ValueError, match="space: model 'drift/gbm' has no parameter 'hidden'"):
        hpo.HPOConfig(space={"model": ["drift", "gbm"], "hidden": [8]}, **RANGE)
    with pytest.raises(ValueError, match="unknown model 'lstmx'"):
        hpo.HPOConfig(space={"model": ["lstmx"]}, **RANGE)


def test_a_point_proposed_again_is_not_trained_again(monkeypatch):
    from coffee_ml.hpo import study as study_module

    fits = []
    real = study_module._holdout
    monkeypatch.setattr(study_module, "_holdout", lambda *a: fits.append(1) or real(*a))
    study = hpo.optimize(_config(method="optuna", trials=3, space={"num_leaves": [4]}), progress=False)
    assert len(fits) == 1 and [t.user_attrs.get("same_as") for t in study.trials] == [None, 0, 0]
    assert len({t.value for t in study.trials}) == 1


def test_interrupted_study_resumes_where_it_stopped():
    first = hpo.optimize(_config(method="random", trials=2), progress=False)
    before = [(t.number, t.params) for t in first.trials]
    study = hpo.optimize(_config(method="random", trials=4), progress=False)
    assert [(t.number, t.params) for t in study.trials][:2] == before
    assert len(study.trials) == 4
    again = hpo.optimize(_config(method="random", trials=4), progress=False)  # nothing left to do
    assert len(again.trials) == 4


def _running_trials(storage: str, db: Path, study: str) -> list[tuple[int, str | None]]:
    """(number, worker) of the study's running trials that have trained an epoch, read without
    writing anything: the sqlite file read-only (never created here: the search creates it), the
    journal once it exists. Empty while the study is not there yet."""
    import json
    import sqlite3

    if not db.exists():
        return []
    if storage == "sqlite":
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60) as con:
                rows = con.execute(
                    "SELECT t.number, (SELECT a.value_json FROM trial_system_attributes a WHERE a.trial_id = t.trial_id"
                    " AND a.key = 'worker') FROM trials t JOIN studies s ON s.study_id = t.study_id"
                    " WHERE s.study_name = ? AND t.state = 'RUNNING' AND EXISTS"
                    " (SELECT 1 FROM trial_intermediate_values v WHERE v.trial_id = t.trial_id)",
                    (study,),
                ).fetchall()
        except sqlite3.OperationalError:  # the tables are not there yet
            return []
        return [(n, json.loads(w) if w else None) for n, w in rows]
    from optuna.storages.journal import JournalFileBackend

    try:
        trials = optuna.load_study(
            study_name=study, storage=optuna.storages.JournalStorage(JournalFileBackend(str(db)))
        ).trials
    except KeyError:  # no such study yet
        return []
    return [
        (t.number, t.system_attrs.get("worker"))
        for t in trials
        if t.state == TrialState.RUNNING and t.intermediate_values
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_search_resumes_and_reruns_the_interrupted_trial(workers, tmp_path):
    """A real `coffee-ml hpo` (1 process on sqlite; or one of its 2 worker processes on a journal)
    killed with -9 while a trial trains; running it again completes the study with exactly the
    trials asked for, the interrupted one run again with its parameters, no grid point twice.
    Every wait is on a condition with a generous deadline: a loaded machine is only slower."""
    import signal
    import sys

    storage = "sqlite" if workers == 1 else "journal"
    params = tmp_path / "hpo.yaml"
    # every trial trains all its epochs (patience = epochs), so the one seen training is still
    # training when the kill lands (model_params is no parameter of the notebook: fixed in the space)
    params.write_text(f"""name: hpo-kill
parameters: {{symbol: BTCUSDT, interval: 1h, start: "{RANGE["start"]}", end: "{RANGE["end"]}"}}
notebooks:
  - notebook: 05_hpo.ipynb
    parameters: {{model: lstm_fast, method: grid, trials: 3, save: false, storage: {storage},
                  space: {{hidden: [8, 16, 24], epochs: [8], patience: [8]}}}}
""")
    cmd = [sys.executable, "-m", "coffee_ml.cli", "hpo", str(params), "--workers", str(workers)]
    # one thread: several torch threads on a loaded machine wait on each other, and slow it tenfold
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "lib"), "OMP_NUM_THREADS": "1"}
    name = "BTCUSDT-1h-lstm_fast-grid-mae"
    db = Path(os.environ["COFFEE_ML_OUTPUTS"]) / "hpo" / f"{name}.{'db' if storage == 'sqlite' else 'journal'}"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    running: list[tuple[int, str | None]] = []
    while not running and time.monotonic() < deadline and proc.poll() is None:
        running = _running_trials(storage, db, name)  # a trial has trained an epoch and goes on
        time.sleep(0.1)
    if not running:
        proc.kill()
    assert running, proc.communicate(timeout=600)[1].decode()[-2000:]
    number, worker = running[0]
    if workers == 1:
        proc.send_signal(signal.SIGKILL)
    else:  # kill the worker process that runs the trial; the parent and the other worker go on
        assert worker and worker.startswith(socket.gethostname() + ":")
        os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    if workers > 1:  # the parent waits for the other worker, then fails naming the killed one
        assert proc.returncode == 1 and "killed by signal 9" in err.decode(), err.decode()[-2000:]
    journal = (
        optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(db)))
        if storage == "journal"
        else f"sqlite:///{db}"
    )
    left = optuna.load_study(study_name=name, storage=journal).get_trials(states=(TrialState.RUNNING,))
    assert [t.number for t in left] == [number]  # the killed trial, and only it, is left "running"
    interrupted = left[0]
    rerun = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    study = optuna.load_study(study_name=name, storage=journal)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.params["hidden"] for t in done) == [8, 16, 24]  # each grid point once
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.number for t in failed] == [interrupted.number] and len(study.trials) == 4
    assert any(t.user_attrs.get("retry_of") == interrupted.number and t.params == interrupted.params for t in done)


def _count_runs(study) -> None:
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 6 == len(study.trials), [t.state for t in study.trials]
    assert sorted(t.number for t in study.trials) == list(range(6))


def test_two_workers_share_a_journal_study():
    result = hpo.run_workers(_config(method="random", trials=6, storage="journal"), 2)
    _count_runs(result.study)
    assert Path(result.storage).suffix == ".journal" and result.model_ref is not None


# a space where two draws never coincide (a float range), so a repeat means a repeated stream
WIDE = {"num_leaves": [4, 8, 16], "learning_rate": {"low": 0.01, "high": 0.3, "log": True}}


@pytest.mark.parametrize("workers", [2, 4])
@pytest.mark.parametrize("method", ["random", "optuna"])
def test_workers_explore_different_streams(method, workers):
    """N workers do not draw the same parameters (each used to build its sampler with the seed):
    every trial is a new point. Random draws depend on (seed, trial number) only, so trial n has
    the same parameters whether 1 or N processes run the study."""
    trials = 2 * workers
    result = hpo.run_workers(_config(method=method, trials=trials, storage="journal", space=WIDE, save=False), workers)
    study = result.study
    assert len(study.trials) == trials and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == trials
    assert {t.user_attrs.get("same_as") for t in study.trials} == {None}  # no trial reused another's score
    assert len({t.system_attrs["worker"] for t in study.trials}) > 1  # the workers shared them
    if method == "random":
        alone = hpo.optimize(_config(method=method, trials=trials, space=WIDE, study="alone"), progress=False)
        assert {t.number: t.params for t in alone.trials} == {t.number: t.params for t in study.trials}


@pytest.mark.parametrize("workers", [2, 4])
def test_a_grid_shared_by_workers_runs_each_point_once(workers):
    space = {"num_leaves": [4, 8, 16], "learning_rate": [0.05, 0.2]}
    result = hpo.run_workers(_config(method="grid", trials=10, storage="journal", space=space, save=False), workers)
    points = sorted((t.params["num_leaves"], t.params["learning_rate"]) for t in result.study.trials)
    assert points == [(n, lr) for n in (4, 8, 16) for lr in (0.05, 0.2)]
    assert all(t.state == TrialState.COMPLETE for t in result.study.trials)
    # nothing left to do: running again starts no worker and runs no trial
    again = hpo.run_workers(_config(method="grid", trials=10, storage="journal", space=space, save=False), workers)
    assert len(again.study.trials) == 6


def test_the_same_seed_gives_the_same_search_and_another_seed_another():
    def params(**kw):
        study = hpo.optimize(_config(space=WIDE, trials=3, **kw), progress=False)
        return [t.params for t in study.trials]

    assert params(method="optuna", study="a") == params(method="optuna", study="b")
    seed0 = params(method="random", study="c")
    assert seed0 == params(method="random", study="d") != params(method="random", study="e", seed=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL server (trust auth on 127.0.0.1), as `nobody` when run as root
    (postgres refuses root), in a folder of its own under the system temp dir (pytest's are
    private to root)."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"))  # Debian's package keeps them off PATH
    path = os.pathsep.join([os.environ.get("PATH", ""), *map(str, debian)])
    initdb, pg_ctl = shutil.which("initdb", path=path), shutil.which("pg_ctl", path=path)
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not installed")
    pytest.importorskip("psycopg")
    data = Path(tempfile.mkdtemp(prefix="coffee-ml-pg-")) / "pg"
    data.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data.parent, "nobody")
        shutil.chown(data, "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    port = _free_port()
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "hpo", "--auth=trust"], check=True, capture_output=True)
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(data),
            "-w",
            "-t",
            "600",
            "-l",
            str(data / "log"),
            "-o",
            f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://hpo@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data.parent, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(postgres):
    result = hpo.run_workers(_config(method="random", trials=6, storage=postgres), 2)
    _count_runs(result.study)
    assert result.storage == postgres


def test_storage_never_takes_credentials_from_parameters(monkeypatch):
    with pytest.raises(ValueError, match=r"holds a password: put the URL in COFFEE_ML_HPO_STORAGE"):
        _config(storage="postgresql://hpo:s3cret@db/optuna")
    with pytest.raises(ValueError, match=r"holds a password: put the URL in COFFEE_ML_HPO_STORAGE"):
        hpo.open_storage("postgresql://hpo:s3cret@db/optuna", "x")
    with pytest.raises(ValueError, match="storage 'env' reads the database URL from COFFEE_ML_HPO_STORAGE"):
        hpo.search(_config(storage="env"))
    with pytest.raises(ValueError, match="storage 'sqlite' serves one process"):
        hpo.run_workers(_config(storage="sqlite"), 2)


@pytest.mark.parametrize(
    "storage",
    [
        "sqlite:////elsewhere/x.db",
        "sqlite:///x.db",
        "SQLite+pysqlite:///relative.db",
        "/elsewhere/x.db",
        "x.journal",
        "../outside/study.db",
        "duckdb:///elsewhere.duckdb",
    ],
)
def test_file_storages_live_under_the_outputs_folder(storage, tmp_path, monkeypatch):
    """A file storage named in the parameters would be written outside outputs/: refused in one
    line, before anything is written; a URL from the environment (storage: env) is the operator's."""
    outputs = Path(os.environ["COFFEE_ML_OUTPUTS"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as error:
        _config(storage=storage)
    message = str(error.value)
    assert "\n" not in message and "use storage: sqlite or journal" in message
    assert ("writes outside the outputs folder" in message) == ("duckdb" not in storage)
    with pytest.raises(ValueError, match="use storage: sqlite or journal"):
        hpo.open_storage(storage, "x")
    assert not (outputs / "hpo").exists() and list(tmp_path.iterdir()) == []
    for bad in ("sqlite ", "nonsense", 3):
        with pytest.raises(ValueError, match="storage must be 'sqlite', 'journal', 'env' or a database server URL"):
            _config(storage=bad)


def test_a_sqlite_url_from_the_environment_is_taken(tmp_path, monkeypatch):
    db = tmp_path / "elsewhere" / "x.db"
    db.parent.mkdir()
    monkeypatch.setenv("COFFEE_ML_HPO_STORAGE", f"sqlite:///{db}")
    study = hpo.optimize(_config(method="random", trials=1, storage="env"), progress=False)
    assert len(study.trials) == 1 and db.is_file()
    assert not (Path(os.environ["COFFEE_ML_OUTPUTS"]) / "hpo").exists()


def test_server_urls_are_taken():
    from coffee_ml.hpo.storage import check_storage

    for url in ("postgresql://hpo@db.internal/optuna", "mysql+pymysql://hpo@db/optuna", "postgresql+psycopg://h/o"):
        check_storage(url)
    for seed in (-1, 2**32, "abc", 1.5, True):
        with pytest.raises(ValueError, match=r"seed must be a whole number in \[0, 2\*\*32\)"):
            _config(seed=seed)


class _PruneAtOnce(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_neural_trials_are_pruned_by_their_learning_curve(monkeypatch):
    from coffee_ml.hpo import study as search_module

    monkeypatch.setattr(search_module, "_pruner", lambda config: _PruneAtOnce())
    config = hpo.HPOConfig(model="lstm_fast", space={"hidden": [8]}, model_params={"max_epochs": 5}, trials=1, **RANGE)
    study = hpo.optimize(config, progress=False)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]  # stopped after epoch 1


def test_walk_forward_validation_reports_each_fold():
    study = hpo.optimize(_config(method="random", trials=2, validation="walk_forward", folds=2), progress=False)
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE and sorted(trial.intermediate_values) == [0, 1]


def test_cli_runs_a_params_file_and_reports_in_one_line_on_error(capsys, tmp_path):
    params = tmp_path / "hpo.yaml"
    params.write_text(f"""name: hpo-test
parameters: {{symbol: BTCUSDT, interval: 1h, start: "{RANGE["start"]}", end: "{RANGE["end"]}"}}
notebooks:
  - notebook: 05_hpo.ipynb
    parameters: {{model: gbm, method: random, trials: 2,
                  space: {{num_leaves: [4, 8], n_estimators: [20], n_jobs: [1]}}}}
""")
    assert main(["hpo", str(params), "-p", "trials=1"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert (
        out.startswith("BTCUSDT 1h gbm · random search on mae: best num_leaves=") and "saved as BTCUSDT/1h/gbm/v" in out
    )
    # -p trials=1 overrides the file's 2 (this used to be checked by a wall-clock bound, which a
    # loaded machine broke: the count in the study is the fact)
    db = Path(os.environ["COFFEE_ML_OUTPUTS"]) / "hpo" / "BTCUSDT-1h-gbm-random-mae.db"
    assert len(optuna.load_study(study_name=db.stem, storage=f"sqlite:///{db}").trials) == 1
    assert main(["hpo", str(params), "-p", "space={hidden: [32]}"]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        "\n" not in err
        and err.startswith("coffee-ml: error: ")
        and "space: model 'gbm' has no parameter 'hidden'; valid: " in err
    )
