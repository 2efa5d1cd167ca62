"""A ClickHouse host that accepts connections but never answers fails fast and says so; duration
settings from the environment are checked, not trusted."""

from __future__ import annotations

import socket
import time

import pytest

from coffee_ml import config
from coffee_ml.cli import main


@pytest.fixture
def silent_server(monkeypatch):
    """A loopback TCP listener that completes handshakes (the kernel's backlog) but never replies."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    monkeypatch.setenv("CLICKHOUSE_HOST", "127.0.0.1")
    monkeypatch.setenv("CLICKHOUSE_PORT", str(port))
    monkeypatch.setenv("CLICKHOUSE_SEND_RECEIVE_TIMEOUT", "1")
    yield port
    listener.close()


def test_a_silent_server_times_out_with_host_port_and_setting(silent_server, capsys):
    from coffee_ml.data import open_store

    t0 = time.perf_counter()
    with pytest.raises(
        ConnectionError,
        match=rf"127\.0\.0\.1:{silent_server} timed out: no answer within "
        r"CLICKHOUSE_SEND_RECEIVE_TIMEOUT=1 s",
    ):
        open_store("server")
    assert time.perf_counter() - t0 < 10  # not the driver's 300 s default
    assert main(["data", "list"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("coffee-ml: error: ClickHouse at 127.0.0.1") and "timed out" in err[-1]


@pytest.mark.parametrize(
    "name, value",
    [
        ("COFFEE_ML_STORE_TIMEOUT", "-1"),
        ("COFFEE_ML_STORE_TIMEOUT", "abc"),
        ("CLICKHOUSE_CONNECT_TIMEOUT", "inf"),
        ("CLICKHOUSE_SEND_RECEIVE_TIMEOUT", "soon"),
    ],
)
def test_durations_must_be_seconds(monkeypatch, name, value):
    monkeypatch.setenv("CLICKHOUSE_HOST", "127.0.0.1")
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=rf"{name} must be a number of seconds >= 0, got '{value}'"):
        config.store_lock_timeout() if name.startswith("COFFEE") else config.ClickHouseSettings.from_env()
    monkeypatch.setenv(name, "2.5")
    assert (
        config.store_lock_timeout() == 2.5
        if name.startswith("COFFEE")
        else getattr(config.ClickHouseSettings.from_env(), name.removeprefix("CLICKHOUSE_").lower()) == 2.5
    )


def test_outputs_must_be_a_folder(monkeypatch, tmp_path):
    afile = tmp_path / "outputs.txt"
    afile.write_text("x")
    monkeypatch.setenv("COFFEE_ML_OUTPUTS", str(afile))
    with pytest.raises(ValueError, match="COFFEE_ML_OUTPUTS must be a folder, but .* is a file"):
        config.outputs_dir()
