"""Hyperparameter search: grid, random and Optuna with pruning; resumable, many workers.

space.py    search spaces from params entries, validated before anything runs
storage.py  SQLite / journal file / database URL (credentials from the environment)
study.py    `HPOConfig`, `optimize` (trials in this process), `finish` (refit the best, test
            once, save to the registry), `search` (both)
workers.py  `run_workers(config, n)`: n processes on one study (`coffee-ml hpo --workers n`)
"""

from coffee_ml.hpo.space import DEFAULT_SPACE, SearchSpace
from coffee_ml.hpo.storage import open_storage
from coffee_ml.hpo.study import HPOConfig, SearchResult, finish, open_study, optimize, search, trials_frame
from coffee_ml.hpo.workers import run_workers

__all__ = [
    "DEFAULT_SPACE",
    "HPOConfig",
    "SearchResult",
    "SearchSpace",
    "finish",
    "open_storage",
    "open_study",
    "optimize",
    "run_workers",
    "search",
    "trials_frame",
]
