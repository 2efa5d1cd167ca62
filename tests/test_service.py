"""The ML service over real HTTP: `coffee-ml serve` (uvicorn on a free port, its own process, a
temporary outputs folder and store) called the way the platform calls it.

Every endpoint and its shape; 4xx answers that name the field for bad input (never a 500);
the token on whatever starts work or changes state; the body limit; the warm predictor answering
what `serving.predict` answers; a promotion followed without a restart; a backtest job run to
completion whose report is then served read-only; a killed job shown as died; two workers.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from coffee_ml import registry, serving
from coffee_ml.data import load_sample
from coffee_ml.features import build_dataset
from coffee_ml.models import make_model
from coffee_ml.models.persistence import save_model
from service_server import serve

SYMBOL, INTERVAL, HORIZON = "BTCUSDT", "1h", 6
TOKEN = "test-token-8f2c"
JOB_PARAMS = {
    "symbol": SYMBOL,
    "models": ["drift"],
    "method": "simple",
    "start": "2025-06-01",
    "test_start": "2025-10-15",
    "horizon": 6,
}  # a backtest of a few seconds


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """A registry with a promoted hybrid and a saved gbm-free drift, over the bundled sample."""
    root = tmp_path_factory.mktemp("service-outputs")
    ds = build_dataset(
        load_sample().loc["2025-06-01":"2025-10-01"],
        INTERVAL,
        groups=["price", "volatility"],
        window=24,
        horizon=HORIZON,
    )
    models = root / "models"
    registry.promote(save_model(make_model("hybrid", window=24).fit(ds), ds, symbol=SYMBOL, name="hybrid", root=models))
    save_model(make_model("drift", window=24).fit(ds), ds, symbol=SYMBOL, name="drift", root=models)
    return root


@pytest.fixture(scope="module")
def server(outputs):
    with serve(outputs, env={"COFFEE_ML_API_TOKEN": TOKEN, "COFFEE_ML_MAX_JOBS": "1"}) as (url, _):
        yield url


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server, timeout=120) as c:
        yield c


def _error(response: httpx.Response, status: int, field: str | None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["status"] == status and body["field"] == field and body["message"], body
    assert "Traceback" not in response.text
    return body


def test_health_says_what_is_ready(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["store"]["reachable"]
    assert {"symbol": SYMBOL, "interval": INTERVAL} in [
        {k: s[k] for k in ("symbol", "interval")} for s in body["store"]["series"]
    ]
    (prod,) = body["production"]
    assert prod["model"] == "hybrid" and prod["version"] == "v0001" and prod["data_age_seconds"] > 0
    assert body["state_changes_enabled"] is True


def test_predict_production_is_the_cli_answer(client, outputs, monkeypatch):
    body = client.get("/api/ml/predict/production", params={"symbol": SYMBOL, "horizon": "3h"}).json()
    assert [set(p) for p in body["predictions"]] == [{"timestamp", "price", "lower", "upper", "confidence"}] * 3
    assert body["model"] == "hybrid" and body["version"] == "v0001" and body["trained_at"]
    assert set(body["regime"]) == {"name", "confidence"} and body["level"] == 0.8 and body["snapshot"] is True
    assert [e["step"] for e in body["edge"]] == [1, 2, 3] and all(isinstance(e["edge"], bool) for e in body["edge"])
    # the same numbers as a fresh in-process predictor over the same store and registry
    monkeypatch.setenv("COFFEE_ML_OUTPUTS", str(outputs))
    monkeypatch.setenv("COFFEE_ML_STORE", str(outputs / "store"))
    expected = serving.Predictor(SYMBOL, INTERVAL).predict(3).to_json()
    assert body == json.loads(json.dumps(expected))
    bars = client.get("/api/ml/predict/production", params={"symbol": SYMBOL, "horizon": "3"}).json()
    assert bars == body
    post = client.post("/api/ml/predict", json={"symbol": SYMBOL, "horizon": "3h", "model_type": "production"})
    assert post.json() == body


def test_predict_by_type_and_version(client):
    drift = client.get("/api/ml/predict/drift", params={"symbol": SYMBOL}).json()
    assert drift["model"] == "drift" and len(drift["predictions"]) == HORIZON
    pinned = client.get("/api/ml/predict/hybrid@v0001", params={"symbol": SYMBOL, "level": 0.95}).json()
    assert pinned["version"] == "v0001" and pinned["level"] == 0.95
    assert all(p["lower"] <= p["price"] <= p["upper"] for p in pinned["predictions"])
    wide = pinned["predictions"][-1]
    narrow = client.get("/api/ml/predict/hybrid", params={"symbol": SYMBOL}).json()["predictions"][-1]
    assert wide["upper"] - wide["lower"] > narrow["upper"] - narrow["lower"]


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"symbol": "NOSUCH"}, 404, "symbol"),
        ({"symbol": "BTC USDT"}, 422, "symbol"),
        ({"symbol": SYMBOL, "horizon": "48h"}, 422, "horizon"),
        ({"symbol": SYMBOL, "horizon": "90min"}, 422, "horizon"),
        ({"symbol": SYMBOL, "horizon": "0"}, 422, "horizon"),
        ({"symbol": SYMBOL, "horizon": "soon"}, 422, "horizon"),
        ({"symbol": SYMBOL, "interval": "7x"}, 422, "interval"),
        ({"symbol": SYMBOL, "interval": "4h"}, 404, "interval"),
        ({"symbol": SYMBOL, "level": "1.5"}, 422, "level"),
        ({"symbol": SYMBOL, "level": "0.5"}, 422, "level"),
        ({}, 422, "symbol"),
    ],
)
def test_bad_predict_requests_name_the_field(client, params, status, field):
    _error(client.get("/api/ml/predict/production", params=params), status, field)


def test_unknown_models_and_versions(client):
    body = _error(client.get("/api/ml/predict/lstm", params={"symbol": SYMBOL}), 404, "model")
    assert {"production", "hybrid", "drift"} <= set(body["allowed"])
    _error(client.get("/api/ml/predict/hybrid@v0009", params={"symbol": SYMBOL}), 404, "model")
    _error(client.get("/api/ml/predict/hybrid@9", params={"symbol": SYMBOL}), 422, "model")
    _error(client.get("/api/ml/predict/production", params={"symbol": SYMBOL, "strategy": "stacking"}), 422, "model")
    _error(client.post("/api/ml/predict", json={"symbol": SYMBOL, "colour": "red"}), 422, "body.colour")
    _error(
        client.post("/api/ml/predict", content=b"{not json", headers={"content-type": "application/json"}), 422, "body"
    )
    _error(client.get("/api/ml/nothing-here"), 404, None)


def test_models_lists_versions_and_the_production_pointer(client):
    body = client.get("/api/ml/models").json()
    rows = {(m["model"], m["version"]): m for m in body["models"]}
    assert set(rows) == {("hybrid", "v0001"), ("drift", "v0001")}
    hybrid = rows[("hybrid", "v0001")]
    assert hybrid["production"] and hybrid["model_type"] == "hybrid" and hybrid["trained_at"]
    assert "skill" in hybrid["metrics"]["test"] and not rows[("drift", "v0001")]["production"]
    assert body["production"] == [
        {
            "symbol": SYMBOL,
            "interval": INTERVAL,
            "model": "hybrid",
            "version": "v0001",
            "promoted_at": body["production"][0]["promoted_at"],
            "reason": body["production"][0]["reason"],
        }
    ]


def test_regime_is_the_sidebars(client):
    body = client.get("/api/ml/advanced/regime", params={"symbol": SYMBOL}).json()
    assert body["regime"] in ("BULL", "BEAR", "SIDEWAYS") and body["method"] == serving.REGIME_METHOD
    assert 0 <= body["confidence"] <= 100 and body["since"] <= body["as_of"]
    sidebar = client.get("/api/ml/predict/production", params={"symbol": SYMBOL}).json()["regime"]
    assert sidebar == {"name": body["regime"], "confidence": body["confidence"]}
    _error(client.get("/api/ml/advanced/regime", params={"symbol": "NOSUCH"}), 404, "symbol")


def test_anomalies(client):
    body = client.get("/api/ml/advanced/anomalies", params={"symbol": SYMBOL, "days": 30}).json()
    assert pd.Timestamp(body["to"]) - pd.Timestamp(body["from"]) == pd.Timedelta(days=30)
    for event in body["events"]:
        assert event["type"] in ("pump_dump", "flash_crash", "statistical")
        assert event["severity"] in ("LOW", "MEDIUM", "HIGH", "CRITICAL") and isinstance(event["final"], bool)
        assert pd.Timestamp(body["from"]) <= pd.Timestamp(event["start"]) <= pd.Timestamp(event["end"])
    starts = [e["start"] for e in body["events"]]
    assert starts == sorted(starts, reverse=True)
    now = client.get("/api/ml/anomalies/detect", params={"symbol": SYMBOL}).json()
    assert set(now["latest"]) == {"pump_dump", "flash_crash", "statistical"}
    assert now["as_of"] == body["to"]
    _error(client.get("/api/ml/advanced/anomalies", params={"symbol": SYMBOL, "days": 0}), 422, "days")
    _error(client.get("/api/ml/advanced/anomalies", params={"symbol": "NOSUCH"}), 404, "symbol")


def test_candles_for_the_page(client):
    body = client.get("/api/ml/candles", params={"symbol": SYMBOL, "bars": 5}).json()
    assert len(body["candles"]) == 5 and set(body["candles"][0]) == {
        "timestamp",
        "open",
        "high",
        "low",
        "close",
        "volume",
    }
    sample = load_sample()
    assert body["candles"][-1]["close"] == sample["close"].iloc[-1]
    _error(client.get("/api/ml/candles", params={"symbol": SYMBOL, "bars": 10**6}), 422, "bars")


def test_state_changes_need_the_token(client):
    for path in ("/api/ml/backtest", "/api/ml/hpo", "/api/ml/train", "/api/ml/optimize"):
        _error(client.post(path, json={"symbol": SYMBOL}), 401, "Authorization")
        _error(
            client.post(path, json={"symbol": SYMBOL}, headers={"Authorization": "Bearer wrong"}), 401, "Authorization"
        )
    promote = {"symbol": SYMBOL, "interval": INTERVAL, "model": "drift", "version": "v0001"}
    _error(client.post("/api/ml/models/promote", json=promote), 401, "Authorization")
    assert client.get("/api/ml/predict/production", params={"symbol": SYMBOL}).json()["model"] == "hybrid"


def test_job_parameters_are_checked_before_anything_starts(client, outputs):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = _error(client.post("/api/ml/backtest", json={"symbol": SYMBOL, "epochs": -1}, headers=auth), 422, "epochs")
    assert "expected" in body["message"]
    _error(client.post("/api/ml/backtest", json={"symbol": SYMBOL, "epoks": 3}, headers=auth), 422, "epoks")
    _error(client.post("/api/ml/backtest", json={"symbol": "NOSUCH"}, headers=auth), 422, "symbol")
    _error(client.post("/api/ml/hpo", json={"trials": "ten"}, headers=auth), 422, "trials")
    _error(client.post("/api/ml/backtest", json=[1, 2], headers=auth), 422, "body")
    assert not (outputs / "runs").exists() or not any((outputs / "runs").iterdir())


def test_body_limit(client):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    big = {"symbol": SYMBOL, "models": ["x" * 100] * 1000}
    _error(client.post("/api/ml/backtest", json=big, headers=auth), 413, "body")

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(100):
            yield b" " * 1024

    _error(client.post("/api/ml/predict", content=chunks(), headers={"content-type": "application/json"}), 413, "body")


def test_promotion_through_the_api_is_followed_without_a_restart(outputs):
    with serve(outputs, env={"COFFEE_ML_API_TOKEN": TOKEN}) as (url, _), httpx.Client(base_url=url, timeout=120) as c:
        before = c.get("/api/ml/predict/production", params={"symbol": SYMBOL}).json()
        promote = {"symbol": SYMBOL, "interval": INTERVAL, "model": "drift", "version": "v0001"}
        auth = {"Authorization": f"Bearer {TOKEN}"}
        _error(c.post("/api/ml/models/promote", json={**promote, "version": "v0042"}, headers=auth), 404, "version")
        assert c.post("/api/ml/models/promote", json=promote, headers=auth).json()["production"] is True
        after = c.get("/api/ml/predict/production", params={"symbol": SYMBOL}).json()
        assert before["model"] == "hybrid" and after["model"] == "drift"
        assert c.post("/api/ml/models/promote", json={**promote, "model": "hybrid"}, headers=auth).status_code == 200
        assert c.get("/api/ml/predict/production", params={"symbol": SYMBOL}).json() == before


def test_without_a_token_state_changes_are_off(outputs):
    with serve(outputs, env={"COFFEE_ML_API_TOKEN": ""}) as (url, _), httpx.Client(base_url=url, timeout=120) as c:
        _error(
            c.post("/api/ml/backtest", json={"symbol": SYMBOL}, headers={"Authorization": "Bearer anything"}),
            403,
            "Authorization",
        )
        assert c.get("/health").json()["state_changes_enabled"] is False
        assert "access-control-allow-origin" not in c.get("/health", headers={"Origin": "http://x.test"}).headers


def test_two_workers_share_the_registry_and_store(outputs):
    with serve(outputs, workers=2) as (url, _), httpx.Client(base_url=url, timeout=120) as c:
        answers = [
            c.get(
                "/api/ml/predict/production", params={"symbol": SYMBOL, "horizon": 2}, headers={"Connection": "close"}
            )
            for _ in range(12)
        ]
        assert {a.status_code for a in answers} == {200}
        pids: set[int] = set()
        for _ in range(200):  # fresh connections until both workers have answered (each accepts some)
            pids.add(c.get("/health", headers={"Connection": "close"}).json()["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2, "one worker answered every connection"
        assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1


def _start_job(client: httpx.Client) -> str:
    """POST the small backtest; its status URL (also in Location)."""
    started = client.post("/api/ml/backtest", json=JOB_PARAMS, headers={"Authorization": f"Bearer {TOKEN}"})
    assert started.status_code == 202, started.text
    assert started.headers["location"] == started.json()["status_url"]
    return started.json()["status_url"]


def _wait_job(c: httpx.Client, url: str, done: tuple[str, ...], timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(url).json()
        if job["status"] in done or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


def test_a_backtest_job_runs_to_completion_and_its_report_is_served(client, outputs):
    params = JOB_PARAMS
    url = _start_job(client)
    # one job at a time here: a second is refused while the first runs
    second = client.post("/api/ml/backtest", json=params, headers={"Authorization": f"Bearer {TOKEN}"})
    job = client.get(url).json()
    if job["status"] in ("queued", "running"):
        _error(second, 429, None)
    job = _wait_job(client, url, ("ok", "failed", "died"))
    assert job["status"] == "ok", job
    assert job["run_id"] and job["run_status"] == "ok" and job["progress"]
    written = [f for f in outputs.rglob("*") if f.is_file() and "store" not in f.parts]
    assert written and not [f for f in written if TOKEN.encode() in f.read_bytes()]  # no record holds the token
    links = job["links"]
    page = client.get(links["index"])
    assert page.status_code == 200 and "03_backtesting" in page.text
    report = next(r for r in links["reports"] if r.endswith("03_backtesting.html"))
    assert "drift" in client.get(report).text
    manifest = client.get(f"{links['run']}manifest.json").json()
    assert manifest["notebooks"][0]["parameters"] == params
    assert client.get("/api/ml/jobs").json()["jobs"][0]["id"] == job["id"]
    # read-only, and nothing outside the runs folder is reachable
    assert client.put(links["index"], content=b"x").status_code in (405, 404)
    for escape in (
        "/runs/../models/BTCUSDT/1h/production.json",
        "/runs/%2e%2e/models/BTCUSDT/1h/production.json",
        "/runs/..%2fstore",
    ):
        assert client.get(escape).status_code == 404
    _error(client.get("/api/ml/jobs/../../etc"), 404, None)
    _error(client.get("/api/ml/jobs/nosuch-job"), 404, "job_id")


def test_a_killed_job_reads_as_died(client, outputs):
    url = _start_job(client)
    job = _wait_job(client, url, ("running", "ok", "failed"), timeout=120)
    pid = json.loads((outputs / "jobs" / job["id"] / "job.json").read_text())["owner"]["pid"]
    os.killpg(pid, signal.SIGKILL)
    job = _wait_job(client, url, ("died", "ok"), timeout=60)
    assert job["status"] == "died" and "killed" in job["error"]
    assert client.get("/health").json()["jobs"]["running"] == 0


def test_openapi_docs_list_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/health",
        "/api/ml/models",
        "/api/ml/predict/{model}",
        "/api/ml/predict",
        "/api/ml/advanced/regime",
        "/api/ml/advanced/anomalies",
        "/api/ml/anomalies/detect",
        "/api/ml/backtest",
        "/api/ml/hpo",
        "/api/ml/train",
        "/api/ml/optimize",
        "/api/ml/jobs/{job_id}",
        "/api/ml/models/promote",
    } <= paths
    assert client.get("/docs").status_code == 200
    assert "prediction-line" in client.get("/").text


def test_the_server_binds_to_loopback_by_default():
    from coffee_ml.cli import _parser

    assert _parser().parse_args(["serve"]).host == "127.0.0.1"
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--port", "99999"])


def test_edges_follow_the_one_verdict_rule():
    meta = {
        "metrics_by_horizon": {
            "test": {
                "1": {"skill": 0.02, "dm_pvalue": 0.01, "dm_stat": -2.5},
                "2": {"skill": 0.01, "dm_pvalue": 0.2, "dm_stat": -1.0},
                "3": {"skill": -0.02, "dm_pvalue": 0.01, "dm_stat": 2.5},
            }
        }
    }
    edges = serving.step_edges(meta, 4)
    assert [e["edge"] for e in edges] == [True, False, False, None]
    assert edges[0]["skill"] == 0.02 and edges[3]["dm_pvalue"] is None
    assert np.isclose(edges[1]["dm_pvalue"], 0.2)


def test_a_model_type_resolves_to_its_newest_version_and_an_ensemble_to_its_strategy(tmp_path, monkeypatch):
    """`{model}` naming: a type picks the newest saved version of that type across registry names;
    `strategy=` picks among ensembles; unknown ones name what exists."""
    from coffee_ml.service.errors import ApiError
    from coffee_ml.service.predictors import Predictors, Target

    monkeypatch.setenv("COFFEE_ML_OUTPUTS", str(tmp_path))

    def saved(name: str, model_type: str, strategy: str | None = None) -> None:  # newest last (saved_at)
        registry.save(
            {},
            {"model_type": model_type, "params": {"strategy": strategy}},
            symbol=SYMBOL,
            interval=INTERVAL,
            model=name,
        )
        time.sleep(0.01)

    saved("lstm", "lstm")
    saved("lstm_fast", "lstm")
    saved("ensemble_stacking", "ensemble", "stacking")
    saved("ensemble_average", "ensemble", "average")
    p = Predictors()
    assert p.resolve(SYMBOL, INTERVAL, "lstm") == Target("lstm_fast", "latest")  # the type's newest, any name
    assert p.resolve(SYMBOL, INTERVAL, "lstm_fast@v0001") == Target("lstm_fast", "v0001")
    assert p.resolve(SYMBOL, INTERVAL, "ensemble") == Target("ensemble_average", "latest")
    assert p.resolve(SYMBOL, INTERVAL, "ensemble", "stacking") == Target("ensemble_stacking", "latest")
    assert p.resolve(SYMBOL, INTERVAL, "production") == Target(None, "production")
    with pytest.raises(ApiError) as no_strategy:
        p.resolve(SYMBOL, INTERVAL, "ensemble", "voting")
    assert no_strategy.value.field == "strategy" and set(no_strategy.value.allowed) == {"stacking", "average"}
    with pytest.raises(ApiError) as no_type:
        p.resolve(SYMBOL, INTERVAL, "gbm")
    assert no_type.value.status == 404 and {"lstm", "ensemble", "lstm_fast"} <= set(no_type.value.allowed)
