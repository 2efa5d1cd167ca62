"""Where studies live: a SQLite file (one process), a journal file (many processes on one
machine) or a database server (many machines), all under Optuna's storage API.

`storage` in a params file is "sqlite" (default for one worker), "journal" (default for several),
or a database *server* URL without a password, e.g. `postgresql://hpo@db.internal/optuna` (the
password from ~/.pgpass or PGPASSWORD). A URL with credentials goes in the environment variable
COFFEE_ML_HPO_STORAGE (storage: "env"): papermill writes parameters into every output notebook,
so secrets never belong there. Files go to outputs/hpo/<study>.db or .journal, and only there:
a `sqlite:///...` URL or a file path in a params file is refused (it would write outside the
outputs folder); a URL read from the environment is the operator's choice and is taken as is.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

from coffee_ml import config

ENV = "COFFEE_ML_HPO_STORAGE"
_STUDY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


# SQLAlchemy dialects of database servers (Optuna's RDBStorage); file databases are refused
SERVERS = ("postgresql", "mysql", "mariadb", "oracle", "mssql", "cockroachdb")


def check_storage(storage: Any) -> None:
    """Refuse, in one line, a `storage` setting that is not "sqlite", "journal", "env" or a
    database server URL without a password: before anything runs or is written."""
    if storage is None or storage in ("sqlite", "journal", "env"):
        return
    if not isinstance(storage, str):
        raise ValueError(f"storage must be 'sqlite', 'journal', 'env' or a database server URL, got {storage!r}")
    url = storage.strip()
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite" or (
        not scheme and (url.endswith((".db", ".sqlite", ".sqlite3", ".journal")) or "/" in url or "\\" in url)
    ):
        raise ValueError(
            f"storage {redact(url)!r}: a sqlite URL or a file path writes outside the outputs folder; "
            "use storage: sqlite or journal (files under outputs/hpo), a database server URL, "
            f"or env (the URL in {ENV})"
        )
    if not scheme:
        raise ValueError(f"storage must be 'sqlite', 'journal', 'env' or a database server URL, got {storage!r}")
    if scheme not in SERVERS:
        raise ValueError(
            f"storage {redact(url)!r}: {scheme!r} is not a database server; use storage: sqlite or "
            f"journal (files under outputs/hpo), a URL of {', '.join(SERVERS)}, or env (the URL in {ENV})"
        )
    if redact(url) != url:
        raise ValueError(
            f"storage URL {redact(url)} holds a password: put the URL in {ENV} and set "
            "storage: env (parameters are written into every output notebook)"
        )


def open_storage(storage: str | None, study: str, workers: int = 1) -> tuple[Any, str]:
    """(Optuna storage, a description safe to record)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    check_storage(storage)
    if not isinstance(study, str) or not _STUDY.fullmatch(study):
        raise ValueError(f"study name {study!r} must be 1-128 letters, digits, '.', '_' or '-' (it names a file)")
    kind = storage or ("journal" if workers > 1 else "sqlite")
    if kind == "sqlite" and workers > 1:
        raise ValueError(
            "storage 'sqlite' serves one process; with --workers > 1 use storage: journal "
            "(one machine) or a database URL (several machines)"
        )
    root = config.outputs_dir() / "hpo"
    if kind == "sqlite":
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{study}.db"
        return optuna.storages.RDBStorage(f"sqlite:///{path}"), str(path)
    if kind == "journal":
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{study}.journal"
        return optuna.storages.JournalStorage(JournalFileBackend(str(path))), str(path)
    if kind == "env":
        url = os.environ.get(ENV, "").strip()
        if not url:
            raise ValueError(f"storage 'env' reads the database URL from {ENV}, which is not set")
    else:
        url = kind.strip()  # a server URL without a password (check_storage)
    try:
        # machines that die mid-trial stop beating: their trials fail after the grace period and
        # are retried with the same parameters (Optuna calls both "experimental": said once here)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"pool_pre_ping": True},
                heartbeat_interval=60,
                grace_period=180,
                heartbeat_stale_trial_callback=retry,
            ), redact(url)
    except Exception as exc:  # driver errors name neither the study nor the setting
        raise ConnectionError(f"cannot open HPO storage {redact(url)}: {' '.join(str(exc).split())[:300]}") from None
