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
CHEAP = {"model": "gbm", "model_params": {"n_estimators": 20, "early_stopping_rounds": 5, "n_jobs": 1},
         "space": {"num_leaves": [4, 8], "learning_rate": [0.05, 0.2]}, **RANGE}


def _config(**kw) -> hpo.HPOConfig:
    return hpo.HPOConfig(**(CHEAP | kw))


@pytest.mark.parametrize(("kw", "message"), [
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
])
def test_bad_search_fails_before_anything_runs(kw, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        _config(**kw)
    assert not (Path(os.environ["COFFEE_ML_OUTPUTS"]) / "hpo").exists()


def test_platform_default_space_is_valid_for_recurrent_models():
    for model in ("lstm", "gru"):
        space = hpo.SearchSpace.parse(model, None)
        assert space.grid() == {"hidden": [32, 64, 128], "window": [20, 40, 60], "max_epochs": [50, 100, 150]}
        assert space.size == 27 and space.max_window == 60


def test_grid_is_exhaustive_tests_once_and_saves_the_best():
    result = hpo.search(_config(method="grid", trials=100), progress=False)
    trials = result.trials
    assert len(trials) == 4 and (trials["state"] == "COMPLETE").all()
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
    config = hpo.HPOConfig(model="gbm", method="grid", trials=10, **RANGE,
                           space={"model": ["drift", "gbm"], "num_leaves": [4, 8]},
                           model_params={"n_estimators": 20, "n_jobs": 1})
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


def test_killed_search_resumes_and_reruns_the_interrupted_trial(tmp_path):
    """A real `coffee-ml hpo` killed while a trial trains; running it again completes the study
    with exactly the trials asked for, the interrupted one run again with its parameters."""
    import signal
    import sys

    params = tmp_path / "hpo.yaml"
    params.write_text(f"""name: hpo-kill
parameters: {{symbol: BTCUSDT, interval: 1h, start: "{RANGE['start']}", end: "{RANGE['end']}"}}
notebooks:
  - notebook: 05_hpo.ipynb
    parameters: {{model: lstm_fast, method: grid, trials: 3, save: false,
                  space: {{hidden: [8, 16, 24], epochs: [30]}}}}
""")
    cmd = [sys.executable, "-m", "coffee_ml.cli", "hpo", str(params)]
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "lib")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = Path(os.environ["COFFEE_ML_OUTPUTS"]) / "hpo" / "BTCUSDT-1h-lstm_fast-grid-mae.db"
    storage = f"sqlite:///{db}"
    deadline = time.monotonic() + 120
    running = []
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            trials = optuna.load_study(study_name="BTCUSDT-1h-lstm_fast-grid-mae", storage=storage).trials
        except Exception:  # the file or the study is not there yet
            trials = []
        running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
        if running:  # a trial has trained an epoch and goes on
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert running, proc.stderr.read().decode()[-2000:]
    interrupted = running[0]
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
    study = optuna.load_study(study_name="BTCUSDT-1h-lstm_fast-grid-mae", storage=storage)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.params["hidden"] for t in done) == [8, 16, 24]
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.number for t in failed] == [interrupted.number]
    assert any(t.user_attrs.get("retry_of") == interrupted.number and t.params == interrupted.params for t in done)


def _count_runs(study) -> None:
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 6 == len(study.trials), [t.state for t in study.trials]
    assert sorted(t.number for t in study.trials) == list(range(6))


def test_two_workers_share_a_journal_study():
    result = hpo.run_workers(_config(method="random", trials=6, storage="journal"), 2)
    _count_runs(result.study)
    assert Path(result.storage).suffix == ".journal" and result.model_ref is not None


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
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "hpo", "--auth=trust"], check=True,
                   capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-l", str(data / "log"), "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
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
        hpo.search(_config(storage="postgresql://hpo:s3cret@db/optuna"))
    with pytest.raises(ValueError, match="storage 'env' reads the database URL from COFFEE_ML_HPO_STORAGE"):
        hpo.search(_config(storage="env"))
    with pytest.raises(ValueError, match="storage 'sqlite' serves one process"):
        hpo.run_workers(_config(storage="sqlite"), 2)


class _PruneAtOnce(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_neural_trials_are_pruned_by_their_learning_curve(monkeypatch):
    from coffee_ml.hpo import study as search_module

    monkeypatch.setattr(search_module, "_pruner", lambda config: _PruneAtOnce())
    config = hpo.HPOConfig(model="lstm_fast", space={"hidden": [8]}, model_params={"max_epochs": 5}, trials=1,
                           **RANGE)
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
parameters: {{symbol: BTCUSDT, interval: 1h, start: "{RANGE['start']}", end: "{RANGE['end']}"}}
notebooks:
  - notebook: 05_hpo.ipynb
    parameters: {{model: gbm, method: random, trials: 2, space: {{num_leaves: [4, 8]}}}}
""")
    t0 = time.perf_counter()
    assert main(["hpo", str(params), "-p", "trials=1"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.startswith("BTCUSDT 1h gbm · random search on mae: best num_leaves=") and "saved as BTCUSDT/1h/gbm/v" in out
    assert time.perf_counter() - t0 < 120
    assert main(["hpo", str(params), "-p", "space={hidden: [32]}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "coffee-ml: error: space: model 'gbm' has no parameter 'hidden'; valid: " + err.split("valid: ")[1]
