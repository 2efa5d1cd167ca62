"""Several processes on one study: each runs trials until the shared count is reached."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time

from coffee_ml.hpo.study import HPOConfig, SearchResult, finish, open_study, optimize, trials_to_run


def _exit_with(parent: int) -> None:
    """End this worker when the process that started it is gone (killed with -9, say): an
    orphan would go on writing to a study that the next run recovers, and run trials twice."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(70)  # the trial it ran stays "running", and the next run queues it again

    threading.Thread(target=watch, name="hpo-parent-watch", daemon=True).start()


def _work(config: HPOConfig, quota: int, workers: int, parent: int) -> None:
    import torch

    _exit_with(parent)
    torch.set_num_threads(1)  # n processes x 1 thread: no oversubscription of the cores
    optimize(config, quota=quota, workers=workers, progress=False)


def _how(p: mp.process.BaseProcess) -> str:
    code = p.exitcode
    return f"{p.name} (pid {p.pid}, {f'killed by signal {-code}' if code is not None and code < 0 else f'exit {code}'})"


def run_workers(config: HPOConfig, workers: int, progress: bool = True) -> SearchResult:
    """Run `workers` processes (spawned, so each opens its own storage connection) on the study,
    splitting the trials it still lacks between them, then refit and save the best trial here.

    Here, before any worker starts, trials a killed run left running are queued again
    (`open_study(recover=True)`) and a grid's missing points are queued (`queue_grid`), so the
    workers only take queued trials and no grid point runs twice; random and TPE draw per trial
    number (see study.py), so the workers explore different streams. A failing (or killed)
    worker fails the call, naming its exit code; the trials finished stay in the study, and
    running again resumes, running the killed worker's trial again."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    study, _ = open_study(config, workers, recover=True)
    left = trials_to_run(config, study)
    quotas = [left // workers + (k < left % workers) for k in range(workers)]  # exactly `left` in all
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_work, args=(config, q, workers, os.getpid()), name=f"hpo-worker-{k}")
        for k, q in enumerate(quotas)
        if q > 0
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [_how(p) for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(
            f"HPO study {config.study!r}: {', '.join(failed)} failed; finished trials are kept, run again to resume"
        )
    study, where = open_study(config, workers)
    return finish(config, study, where)
