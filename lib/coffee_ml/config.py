"""Settings from the environment and the project's paths.

Credentials and hosts come from the environment (or a `.env` file at the project root), never
from notebook parameters: papermill writes parameters verbatim into every output notebook.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values


def _find_project_root() -> Path:
    """The checkout root for an editable install (lib/coffee_ml -> repo), else the working dir."""
    if env := os.environ.get("COFFEE_ML_HOME"):
        return Path(env).resolve()
    candidate = Path(__file__).resolve().parents[2]
    if (candidate / "pyproject.toml").is_file() and (candidate / "notebooks").is_dir():
        return candidate
    return Path.cwd().resolve()


PROJECT_ROOT: Path = _find_project_root()
NOTEBOOKS_DIR: Path = PROJECT_ROOT / "notebooks"
PARAMS_DIR: Path = PROJECT_ROOT / "params"
# set by the runner for the kernels of a run, so that saved models and promotions can name it
RUN_ID_ENV = "COFFEE_ML_RUN_ID"


def _env() -> dict[str, str]:
    """Process environment layered over the project's optional `.env` (the environment wins)."""
    dot = PROJECT_ROOT / ".env"
    values = {k: v for k, v in dotenv_values(dot).items() if v is not None} if dot.is_file() else {}
    values.update(os.environ)
    return values


def outputs_dir() -> Path:
    """Where runs, the embedded store and models live (`COFFEE_ML_OUTPUTS` overrides)."""
    path = Path(_env().get("COFFEE_ML_OUTPUTS", PROJECT_ROOT / "outputs")).resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"COFFEE_ML_OUTPUTS must be a folder, but {path} is a file")
    return path


def store_path() -> Path:
    """Directory of the embedded ClickHouse (chdb) store (`COFFEE_ML_STORE` overrides)."""
    return Path(_env().get("COFFEE_ML_STORE", outputs_dir() / "store")).resolve()


def seconds_setting(name: str, default: float) -> float:
    """A duration from the environment: a finite number of seconds >= 0, or a clear error."""
    text = _env().get(name, "")
    if not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 and value != float("inf")):
        raise ValueError(f"{name} must be a number of seconds >= 0, got {text!r}")
    return value


def store_lock_timeout() -> float:
    """Seconds a process waits for the embedded store held by another (`COFFEE_ML_STORE_TIMEOUT`)."""
    return seconds_setting("COFFEE_ML_STORE_TIMEOUT", 120.0)


@dataclass(frozen=True)
class ClickHouseSettings:
    """Connection settings for a ClickHouse server, read from `CLICKHOUSE_*` variables."""

    host: str
    port: int = 8123
    user: str = "default"
    password: str = field(default="", repr=False)
    database: str = "coffee_ml"
    secure: bool = False
    connect_timeout: float = 10.0  # seconds to open a connection
    send_receive_timeout: float = 60.0  # seconds a request may wait for the server's answer

    @classmethod
    def from_env(cls) -> "ClickHouseSettings | None":
        """Settings when `CLICKHOUSE_HOST` is set, else None (the embedded store is used)."""
        env = _env()
        host = env.get("CLICKHOUSE_HOST", "").strip()
        if not host:
            return None
        port_text = env.get("CLICKHOUSE_PORT", "8123")
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"CLICKHOUSE_PORT must be an integer, got {port_text!r}") from None
        return cls(
            host=host,
            port=port,
            user=env.get("CLICKHOUSE_USER", "default"),
            password=env.get("CLICKHOUSE_PASSWORD", ""),
            database=env.get("CLICKHOUSE_DATABASE", "coffee_ml"),
            secure=env.get("CLICKHOUSE_SECURE", "").lower() in {"1", "true", "yes"},
            connect_timeout=seconds_setting("CLICKHOUSE_CONNECT_TIMEOUT", cls.connect_timeout),
            send_receive_timeout=seconds_setting("CLICKHOUSE_SEND_RECEIVE_TIMEOUT", cls.send_receive_timeout),
        )


@contextmanager
def environ(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (None: unset) environment variables for a block, then restore them: what kernels,
    started by papermill with this process's environment, inherit for one run."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
