"""Several processes on one study: each runs trials until the shared count is reached."""

from __future__ import annotations

import multiprocessing as mp

from coffee_ml.hpo.study import HPOConfig, SearchResult, finish, open_study, optimize, remaining_trials


def _work(config: HPOConfig, quota: int, workers: int) -> None:
    import torch

    torch.set_num_threads(1)  # n processes x 1 thread: no oversubscription of the cores
    optimize(config, quota=quota, workers=workers, progress=False)


def run_workers(config: HPOConfig, workers: int, progress: bool = True) -> SearchResult:
    """Run `workers` processes (spawned, so each opens its own storage connection) on the study,
    splitting the trials it still lacks between them, then refit and save the best trial here. A failing worker fails the call, naming its exit code;
    the trials it finished stay in the study, and running again resumes."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    study, _ = open_study(config, workers, recover=True)
    left = remaining_trials(config, study)
    quotas = [left // workers + (k < left % workers) for k in range(workers)]  # exactly `left` in all
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_work, args=(config, q, workers), name=f"hpo-worker-{k}")
             for k, q in enumerate(quotas) if q > 0]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [f"{p.name} (exit {p.exitcode})" for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"HPO study {config.study!r}: {', '.join(failed)} failed; finished trials are kept, "
                           "run again to resume")
    study, where = open_study(config, workers)
    return finish(config, study, where)
