"""The HTTP API the platform calls: forecasts, the registry, regimes, anomalies and long jobs.

`create_app()` builds the FastAPI application (uvicorn runs it: `coffee-ml serve`). Settings come
from the environment only (`ServiceSettings.from_env`), so every uvicorn worker of one server
reads the same ones. Answers are JSON; every refusal is `{"error": {...}}` naming the field
(`service.errors`). Reads are open; whatever starts work or changes state (jobs, promotion)
needs the token in `COFFEE_ML_API_TOKEN`, and is off when none is set.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from coffee_ml import config, registry, serving
from coffee_ml.data.schema import interval_timedelta
from coffee_ml.service import jobs
from coffee_ml.service.errors import ApiError, install
from coffee_ml.service.limits import BodyLimit
from coffee_ml.service.predictors import Predictors, check_name, parse_horizon

DEFAULT_INTERVAL = "1h"
ANOMALY_TTL_S = 60.0  # anomaly scans (three detectors over weeks of bars) are reused this long
REGIME_TTL_S = 1.0
MAX_DAYS = 366
MAX_CANDLES = 5000


@dataclass(frozen=True)
class ServiceSettings:
    """What the environment says: the API token (None: state-changing endpoints are off), CORS
    origins (none: CORS off), jobs allowed at once, the body size limit, the store backend."""

    token: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    max_jobs: int = 1
    max_body_bytes: int = 64 * 1024
    backend: str = "auto"
    job_threads: int = 1

    @classmethod
    def from_env(cls) -> "ServiceSettings":
        env = os.environ

        def whole(name: str, default: int, low: int = 1) -> int:
            text = env.get(name, "").strip()
            if not text:
                return default
            if not text.isdigit() or int(text) < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {text!r}")
            return int(text)

        backend = env.get("COFFEE_ML_BACKEND", "auto").strip() or "auto"
        if backend not in ("auto", "embedded", "server"):
            raise ValueError(f"COFFEE_ML_BACKEND must be auto, embedded or server, got {backend!r}")
        origins = tuple(o.strip() for o in env.get("COFFEE_ML_CORS_ORIGINS", "").split(",") if o.strip())
        return cls(
            token=env.get("COFFEE_ML_API_TOKEN") or None,
            cors_origins=origins,
            max_jobs=whole("COFFEE_ML_MAX_JOBS", 1),
            max_body_bytes=whole("COFFEE_ML_MAX_BODY", 64 * 1024),
            backend=backend,
            job_threads=whole("COFFEE_ML_JOB_THREADS", 1),
        )


class PredictRequest(BaseModel):
    """The guide's POST body: `model_type` as `{model}` in the GET form."""

    model_config = ConfigDict(extra="forbid")
    symbol: str = Field(max_length=64)
    horizon: str | int | None = None
    model_type: str = Field("production", max_length=80)
    interval: str = Field(DEFAULT_INTERVAL, max_length=8)
    strategy: str | None = Field(None, max_length=40)
    level: float = Field(0.8, gt=0, lt=1)


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    symbol: str = Field(max_length=64)
    interval: str = Field(max_length=8)
    model: str = Field(max_length=64)
    version: str = Field(max_length=12)


JOB_ROUTES = [  # path, job kind, what it does (the OpenAPI summary)
    (
        "/api/ml/backtest",
        "backtest",
        "Start a backtest (notebooks/03_backtesting.ipynb with these parameters) as a run.",
    ),
    ("/api/ml/hpo", "hpo", "Start a hyperparameter search (notebooks/05_hpo.ipynb) as a run."),
    ("/api/ml/optimize", "hpo", "The guide's name for POST /api/ml/hpo."),
    ("/api/ml/train", "train", "Train and save models (notebooks/02_training.ipynb) as a run."),
]


class _Busy(Exception):
    """The predictor must load or read before it can answer: not on the event loop."""


class _Cache:
    """Values kept `ttl` seconds per key (regimes, anomaly scans): one computation per key at a time."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._items: dict[Any, tuple[float, Any]] = {}
        self._key_locks: dict[Any, threading.Lock] = {}

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._items.get(key)
            if hit and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
            value = compute()
            self._items[key] = (time.monotonic(), value)
            return value


def _iso(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _series(symbol: str, interval: str) -> tuple[str, str]:
    """A request's symbol and interval, checked (422 naming the field)."""
    return check_name("symbol", symbol), _interval(interval)


def _interval(value: str) -> str:
    check_name("interval", value)
    try:
        interval_timedelta(value)
    except ValueError:
        raise ApiError(
            422, f"interval {value!r}: expected a bar interval such as 1m, 5m, 1h, 4h or 1d", "interval"
        ) from None
    return value


def _data_error(exc: Exception, symbol: str, interval: str) -> ApiError:
    """A store or registry refusal as the request's fault (404 naming the field) or the data's (503)."""
    if isinstance(exc, serving.StaleDataError):
        age = exc.age.total_seconds() if exc.age is not None else None
        return ApiError(503, str(exc), "symbol", age_seconds=age)
    if isinstance(exc, serving.OptionError):
        return ApiError(422, str(exc).removeprefix("--"), exc.option)
    if isinstance(exc, registry.RegistryError):
        return ApiError(404, str(exc), "model")
    if isinstance(exc, serving.NoCandlesError):
        return ApiError(404, f"{symbol} {interval}: {exc}", "symbol")
    return ApiError(422, str(exc), None)


_PARAM_FIELD = re.compile(r"\.ipynb: (\w+) = |declares no parameter\(s\) (\w+)|'(\w+)' is set by")


def _param_field(text: str) -> str | None:
    """The parameter a runner refusal names first ("03_backtesting.ipynb: epochs = -1: expected ...")."""
    if "candles in the store" in text:
        return "symbol"
    match = _PARAM_FIELD.search(text)
    return next((g for g in match.groups() if g), None) if match else None


def _registered() -> list[tuple[str, str]]:
    """(symbol, interval) of every registry folder."""
    root = registry.models_dir()
    return sorted((p.parts[-2], p.parts[-1]) for p in root.glob("*/*") if p.is_dir()) if root.is_dir() else []


def _promotions() -> list[tuple[str, str, dict[str, Any]]]:
    """(symbol, interval, production record) of each symbol and interval that something serves."""
    out = []
    for symbol, interval in _registered():
        try:
            record = registry.promotion(symbol, interval)
        except registry.RegistryError:  # a damaged record: that series is served by nothing readable
            continue
        if record:
            out.append((symbol, interval, record))
    return out


def _token_check(settings: ServiceSettings) -> Callable[[Request], None]:
    def require(request: Request) -> None:
        if settings.token is None:
            raise ApiError(
                403,
                "this endpoint starts work or changes state and is off: set COFFEE_ML_API_TOKEN "
                "where the server runs to enable it",
                "Authorization",
            )
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), settings.token.encode()):
            raise ApiError(
                401, "a valid API token is required: Authorization: Bearer <COFFEE_ML_API_TOKEN>", "Authorization"
            )

    return require


def _run_links(run_id: str | None) -> dict[str, Any]:
    if not run_id:
        return {}
    folder = config.outputs_dir() / "runs" / run_id
    reports = (
        sorted(p.name for p in folder.glob("*.html") if not p.name.endswith(".code.html")) if folder.is_dir() else []
    )
    return {
        "run": f"/runs/{run_id}/",
        "index": f"/runs/{run_id}/index.html",
        "summary": f"/runs/{run_id}/summary.html",
        "reports": [f"/runs/{run_id}/{r}" for r in reports if r not in ("index.html", "summary.html")],
    }


def _job_answer(job_id: str) -> dict[str, Any]:
    record = jobs.status(job_id)
    if record is None:
        raise ApiError(404, f"no job {job_id!r} (see GET /api/ml/jobs)", "job_id")
    return {**record, "links": _run_links(record.get("run_id"))}


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """The application (`uvicorn --factory coffee_ml.service.app:create_app`)."""
    settings = settings or ServiceSettings.from_env()
    app = FastAPI(
        title="coffee-ml",
        version="1",
        description=__doc__.split("\n\n")[0],
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    predictors = Predictors(settings.backend)
    regimes, anomalies = _Cache(REGIME_TTL_S), _Cache(ANOMALY_TTL_S)
    stores: dict[str, Any] = {}
    require_token = Depends(_token_check(settings))
    app.state.settings, app.state.predictors = settings, predictors

    def store() -> Any:
        if "store" not in stores:
            from coffee_ml.data import open_store

            stores["store"] = open_store(settings.backend)
        return stores["store"]

    def _serving(symbol: str, interval: str) -> None:
        """Refuse a symbol or interval that nothing serves, naming those that are served."""
        try:
            registry.production(symbol, interval)
        except registry.RegistryError as exc:
            served = _promotions()
            field_name = "interval" if any(s == symbol for s, _, _ in served) else "symbol"
            raise ApiError(404, str(exc), field_name, [f"{s} {i}" for s, i, _ in served]) from None

    def closed_tail(symbol: str, interval: str, bars: int) -> pd.DataFrame:
        """The newest `bars` closed candles (a bar still open now is left out, as in serving)."""
        frame = store().load_last(symbol, interval, bars + 1)
        frame = frame[frame.index + interval_timedelta(interval) <= pd.Timestamp.now(tz="UTC")].iloc[-bars:]
        if frame.empty:
            raise ApiError(404, f"no {symbol} {interval} candles stored (see GET /health)", "symbol")
        return frame

    # ---- forecasts -------------------------------------------------------------------------------

    def _predict(
        model: str, symbol: str, horizon: Any, interval: str, strategy: str | None, level: float, wait: bool = True
    ) -> Response:
        symbol, interval = _series(symbol, interval)
        if strategy is not None:
            check_name("strategy", strategy)
        bars = parse_horizon(None if horizon is None else str(horizon), interval)
        target = predictors.resolve(symbol, interval, model, strategy)
        if target.name is None:  # only what is served gets a predictor: made-up symbols cannot grow the cache
            _serving(symbol, interval)
        predictor = predictors.get(symbol, interval, target, level)
        if not wait and not predictor.warm:
            raise _Busy
        try:
            answer = predictor.predict(bars)
        except ApiError:
            raise
        except (ValueError, registry.RegistryError) as exc:
            raise _data_error(exc, symbol, interval) from None
        return predictors.encoded(predictor, answer)

    async def _predict_async(*args: Any) -> Response:
        """Answered on the event loop when the predictor holds its answer (a few hundred microseconds,
        no thread hop: fair under many concurrent clients); in the thread pool when it must load a
        model or read the store."""
        try:
            return _predict(*args, wait=False)
        except _Busy:
            return await run_in_threadpool(_predict, *args)

    @app.get("/api/ml/predict/{model}", tags=["forecasts"])
    async def predict_get(
        model: str,
        symbol: Annotated[str, Query(max_length=64)],
        horizon: Annotated[str | None, Query(max_length=16)] = None,
        interval: Annotated[str, Query(max_length=8)] = DEFAULT_INTERVAL,
        strategy: Annotated[str | None, Query(max_length=40)] = None,
        level: Annotated[float, Query(gt=0, lt=1)] = 0.8,
    ) -> Response:
        """The forecast path with its interval and confidence per step, the version, the regime and
        the tested edge per step. `model`: production, a model type, a registry name, NAME@vNNNN."""
        return await _predict_async(model, symbol, horizon, interval, strategy, level)

    @app.post("/api/ml/predict", tags=["forecasts"])
    async def predict_post(request: PredictRequest) -> Response:
        return await _predict_async(
            request.model_type, request.symbol, request.horizon, request.interval, request.strategy, request.level
        )

    @app.get("/api/ml/candles", tags=["forecasts"])
    def candles(
        symbol: Annotated[str, Query(max_length=64)],
        interval: Annotated[str, Query(max_length=8)] = DEFAULT_INTERVAL,
        bars: Annotated[int, Query(ge=1, le=MAX_CANDLES)] = 168,
    ) -> dict[str, Any]:
        """The newest closed candles (what the trading page draws next to the forecast)."""
        symbol, interval = _series(symbol, interval)
        frame = closed_tail(symbol, interval, bars)
        return {
            "symbol": symbol,
            "interval": interval,
            "candles": [
                {
                    "timestamp": t.isoformat(),
                    "open": r.open,
                    "high": r.high,
                    "low": r.low,
                    "close": r.close,
                    "volume": r.volume,
                }
                for t, r in frame.iterrows()
            ],
        }

    # ---- the registry ----------------------------------------------------------------------------

    @app.get("/api/ml/models", tags=["registry"])
    def models(
        symbol: Annotated[str | None, Query(max_length=64)] = None,
        interval: Annotated[str | None, Query(max_length=8)] = None,
    ) -> dict[str, Any]:
        """Every saved version (type, metrics on validation and test, run, training date) and the
        production pointer of each symbol and interval, with why it was promoted."""

        def wanted(sym: str, ivl: str) -> bool:
            return (symbol is None or sym == symbol) and (interval is None or ivl == interval)

        served = {(sym, ivl): record for sym, ivl, record in _promotions() if wanted(sym, ivl)}
        production = [
            {"symbol": sym, "interval": ivl, **{k: r.get(k) for k in ("model", "version", "promoted_at", "reason")}}
            for (sym, ivl), r in served.items()
        ]
        out = []
        for sym, ivl in (pair for pair in _registered() if wanted(*pair)):
            record = served.get((sym, ivl), {})
            for ref, meta in registry.versions(sym, ivl):
                out.append(
                    {
                        "symbol": sym,
                        "interval": ivl,
                        "model": ref.model,
                        "version": ref.version,
                        "model_type": meta.get("model_type"),
                        "strategy": (meta.get("params") or {}).get("strategy"),
                        "production": record.get("model") == ref.model and record.get("version") == ref.version,
                        "trained_at": meta.get("trained_at"),
                        "saved_at": meta.get("saved_at"),
                        "run_id": meta.get("run_id"),
                        "horizon": meta.get("horizon"),
                        "window": meta.get("window"),
                        "metrics": meta.get("metrics") or {},
                    }
                )
        return {"models": out, "production": production}

    @app.post("/api/ml/models/promote", tags=["registry"], dependencies=[require_token])
    def promote(request: PromoteRequest) -> dict[str, Any]:
        """Make a saved version the one serving its symbol and interval (checked to load first)."""
        from coffee_ml.models.persistence import load_model

        for name in ("symbol", "interval", "model"):
            check_name(name, getattr(request, name))
        try:
            ref = registry.resolve(request.symbol, request.interval, request.model, request.version)
            load_model(ref.symbol, ref.interval, ref.model, ref.version)
        except (registry.RegistryError, ValueError) as exc:
            raise ApiError(404, str(exc), "version") from None
        registry.promote(ref, reason="promoted through the API (POST /api/ml/models/promote)")
        return {
            "symbol": ref.symbol,
            "interval": ref.interval,
            "model": ref.model,
            "version": ref.version,
            "production": True,
        }

    # ---- market structure ------------------------------------------------------------------------

    @app.get("/api/ml/advanced/regime", tags=["market"])
    def regime(
        symbol: Annotated[str, Query(max_length=64)], interval: Annotated[str, Query(max_length=8)] = DEFAULT_INTERVAL
    ) -> dict[str, Any]:
        """The current regime as the sidebar shows it (`serving.market_regime`), since when, how sure."""
        symbol, interval = _series(symbol, interval)

        def compute() -> dict[str, Any]:
            frame = closed_tail(symbol, interval, serving.REGIME_BARS)
            try:
                now = serving.market_regime(frame, interval)
            except ValueError as exc:
                raise ApiError(422, f"{symbol} {interval}: {exc}", "symbol") from None
            return {"symbol": symbol, "interval": interval, **{k: _iso(v) for k, v in now.items()}}

        return regimes.get((symbol, interval), compute)

    def _events(symbol: str, interval: str, days: float) -> Any:
        from coffee_ml import anomalies as detectors

        try:
            candles, first = detectors.load_window(symbol, interval, days)
        except ValueError as exc:
            raise ApiError(404, str(exc), "symbol") from None
        return detectors.scan(candles, interval, report_from=first), first

    def _event_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
        return [
            {
                "start": _iso(r["start"]),
                "end": _iso(r["end"]),
                "type": r["type"],
                "severity": r["severity"],
                "score": _iso(float(r["score"])),
                "max_score": _iso(float(r["max_score"])),
                "parts": r["parts"],
                "final": bool(r["final"]),
            }
            for _, r in table.iterrows()
        ]

    @app.get("/api/ml/advanced/anomalies", tags=["market"])
    def anomaly_events(
        symbol: Annotated[str, Query(max_length=64)],
        days: Annotated[float, Query(gt=0, le=MAX_DAYS)] = 30,
        interval: Annotated[str, Query(max_length=8)] = DEFAULT_INTERVAL,
    ) -> dict[str, Any]:
        """Events of the last `days` days (pump-and-dump, flash-crash, statistical), newest first:
        type, severity, score, parts, and whether the event is final or still provisional."""
        symbol, interval = _series(symbol, interval)

        def compute() -> dict[str, Any]:
            scan, first = _events(symbol, interval, days)
            events = scan.events.sort_values("start", ascending=False)
            return {
                "symbol": symbol,
                "interval": interval,
                "from": first.isoformat(),
                "to": scan.pump.index[-1].isoformat(),
                "events": _event_rows(events),
            }

        return anomalies.get(("events", symbol, interval, days), compute)

    @app.get("/api/ml/anomalies/detect", tags=["market"])
    def anomaly_now(
        symbol: Annotated[str, Query(max_length=64)], interval: Annotated[str, Query(max_length=8)] = DEFAULT_INTERVAL
    ) -> dict[str, Any]:
        """What is anomalous now: each detector's score at the newest bar and the last day's events."""
        symbol, interval = _series(symbol, interval)

        def compute() -> dict[str, Any]:
            scan, first = _events(symbol, interval, 1)
            latest = {
                "pump_dump": {"score": _iso(float(scan.pump["score"].iloc[-1]))},
                "flash_crash": {"score": _iso(float(scan.crash["score"].iloc[-1]))},
                "statistical": {
                    "score": _iso(float(scan.isolation["score"].iloc[-1])),
                    "anomaly": bool(scan.isolation["anomaly"].iloc[-1]),
                },
            }
            return {
                "symbol": symbol,
                "interval": interval,
                "as_of": scan.pump.index[-1].isoformat(),
                "latest": latest,
                "events": _event_rows(scan.events.sort_values("start", ascending=False)),
            }

        return anomalies.get(("now", symbol, interval), compute)

    # ---- long jobs -------------------------------------------------------------------------------

    def _start(kind: str, parameters: Any) -> JSONResponse:
        from coffee_ml import runner

        if not isinstance(parameters, dict):
            raise ApiError(422, f"the body must be a JSON object of {jobs.KINDS[kind]} parameters", "body")
        try:
            started = jobs.start(kind, parameters, max_jobs=settings.max_jobs, threads=settings.job_threads)
        except jobs.JobLimit as exc:
            raise ApiError(429, str(exc), None, running=jobs.running()) from None
        except (runner.ParamsError, ValueError) as exc:
            text = re.sub(rf"(^|; )run api-{kind}(-[\w.-]+)?: ", r"\1", str(exc))
            raise ApiError(422, text, _param_field(text)) from None
        url = f"/api/ml/jobs/{started.job_id}"
        return JSONResponse(
            {"job_id": started.job_id, "status": "queued", "kind": kind, "status_url": url},
            status_code=202,
            headers={"Location": url},
        )

    async def _job_request(kind: str, request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            parameters = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise ApiError(422, "the request body is not valid JSON", "body") from None
        return await run_in_threadpool(_start, kind, parameters)  # checks read notebooks and the store

    job_body = {
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": "the notebook's parameters (coffee_ml.parameters), e.g. "
                        '{"symbol": "BTCUSDT", "models": ["gbm"]}',
                    }
                }
            }
        }
    }

    def job_endpoint(kind: str, doc: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> JSONResponse:
            return await _job_request(kind, request)

        endpoint.__doc__ = doc
        endpoint.__name__ = f"start_{kind}"
        return endpoint

    for path, kind, doc in JOB_ROUTES:
        app.add_api_route(
            path,
            job_endpoint(kind, doc),
            methods=["POST"],
            tags=["jobs"],
            status_code=202,
            dependencies=[require_token],
            openapi_extra=job_body,
            name=path.rsplit("/", 1)[-1],
            response_class=JSONResponse,
        )

    @app.get("/api/ml/jobs/{job_id}", tags=["jobs"])
    def job(job_id: str) -> dict[str, Any]:
        """Status (queued, running, ok, failed, interrupted, died), the last progress line, the run it
        made and links to its reports under /runs/."""
        return _job_answer(job_id)

    @app.get("/api/ml/jobs", tags=["jobs"])
    def job_list() -> dict[str, Any]:
        folder = jobs.jobs_dir()
        ids = sorted((p.name for p in folder.iterdir() if p.is_dir()), reverse=True)[:100] if folder.is_dir() else []
        return {
            "jobs": [r for i in ids if (r := jobs.status(i)) is not None],
            "running": jobs.running(),
            "max_jobs": settings.max_jobs,
        }

    # ---- health, the page, the reports -----------------------------------------------------------

    @app.get("/health", tags=["service"])
    def health() -> JSONResponse:
        """Liveness and readiness: the store reachable, the production model of each symbol and
        interval with its data age, the versions this worker holds warm. 503 when not ready."""
        try:
            coverage = store().list_symbols()
            reachable, problem = True, None
        except Exception as exc:  # any failure to reach the store makes the service not ready
            coverage, reachable, problem = pd.DataFrame(), False, " ".join(str(exc).split())[:300]
        newest = {(r.symbol, r.interval): r.last for r in coverage.itertuples()} if reachable else {}
        production = []
        for sym, ivl, record in _promotions():
            last = newest.get((sym, ivl))
            age = (
                None
                if last is None
                else max(0.0, (pd.Timestamp.now(tz="UTC") - last - interval_timedelta(ivl)).total_seconds())
            )
            production.append(
                {
                    "symbol": sym,
                    "interval": ivl,
                    "model": record.get("model"),
                    "version": record.get("version"),
                    "newest_candle": _iso(last),
                    "data_age_seconds": age,
                }
            )
        ready = reachable
        answer = {
            "status": "ok" if ready else "unavailable",
            "pid": os.getpid(),
            "store": {
                "reachable": reachable,
                "backend": settings.backend,
                **({"error": problem} if problem else {}),
                "series": [
                    {
                        "symbol": r.symbol,
                        "interval": r.interval,
                        "first": _iso(r.first),
                        "last": _iso(r.last),
                        "rows": int(r.rows),
                    }
                    for r in coverage.itertuples()
                ],
            },
            "production": production,
            "loaded": list(predictors.loaded()),
            "jobs": {"running": len(jobs.running()), "max": settings.max_jobs},
            "token_required_for": [
                "POST /api/ml/backtest",
                "POST /api/ml/hpo",
                "POST /api/ml/train",
                "POST /api/ml/optimize",
                "POST /api/ml/models/promote",
            ],
            "state_changes_enabled": settings.token is not None,
        }
        return JSONResponse(answer, 200 if ready else 503)

    page = resources.files("coffee_ml.service").joinpath("trading.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def trading_page() -> HTMLResponse:
        return HTMLResponse(page)

    runs = config.outputs_dir() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    app.mount("/runs", StaticFiles(directory=Path(runs), html=True, follow_symlink=False), name="runs")
    return app
