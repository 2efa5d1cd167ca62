"""Which registry version answers a predict request, and the warm `serving.Predictor` for it.

`{model}` in a request is `production` (what serves the symbol and interval, model or ensemble),
a model type (`lstm`, `gru`, `hybrid`, `gbm`, `ensemble`, ...: the newest saved version of that
type under any registry name, an ensemble optionally of one `strategy`), a registry name that is
not a type (`lstm_fast`), or either with `@vNNNN` (a version of the name the first part resolves to). One warm predictor per resolved name, version and level is kept per worker process:
it loads its model once (again after a promotion or a newer save) and reads only new candles.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from fastapi.responses import Response

from coffee_ml import registry, serving
from coffee_ml.data.schema import interval_timedelta
from coffee_ml.service.errors import ApiError

RESOLVE_TTL_S = 2.0  # a type's newest version is looked up again after this long (a new save shows then)
POLL_S = 1.0  # the fewest seconds between two store reads of one predictor
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_VERSION = re.compile(r"^v\d{4,}$")


@dataclass(frozen=True)
class Target:
    """A resolved request: `name` None means production."""

    name: str | None
    version: str


def check_name(field: str, value: str) -> str:
    if not _SYMBOL.fullmatch(value or ""):
        raise ApiError(422, f"{field} {value!r}: expected letters, digits, '.', '_' or '-' (e.g. BTCUSDT, 1h)", field)
    return value


def parse_horizon(text: str | None, interval: str) -> int | None:
    """`24` (bars) or a duration in the interval's units (`24h`, `3d`, `90min`): whole bars >= 1."""
    if text is None or text == "":
        return None
    text = text.strip()
    if text.isdigit():
        bars = int(text)
    else:
        try:
            span = pd.Timedelta(text)
        except ValueError:
            raise ApiError(
                422, f"horizon {text!r}: expected bars (24) or a duration such as 24h or 3d", "horizon"
            ) from None
        step = interval_timedelta(interval)
        bars = int(span / step) if span % step == pd.Timedelta(0) else -1
        if bars < 0:
            raise ApiError(422, f"horizon {text!r}: not a whole number of {interval} bars", "horizon")
    if bars < 1:
        raise ApiError(422, f"horizon {text!r}: expected at least 1 bar", "horizon")
    return bars


def _versions(symbol: str, interval: str) -> list[tuple[registry.ModelRef, dict[str, Any]]]:
    try:
        return list(registry.versions(symbol, interval))
    except registry.RegistryError as exc:
        raise ApiError(404, str(exc), "symbol") from None


class Predictors:
    """The warm predictors of one worker process, safe under concurrent requests."""

    def __init__(self, backend: str = "auto", poll_s: float = POLL_S) -> None:
        self.backend = backend
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._warm: dict[tuple[Any, ...], serving.Predictor] = {}
        self._resolved: dict[tuple[Any, ...], tuple[float, Target]] = {}
        self._encoded: dict[tuple[int, int], tuple[Any, bytes]] = {}

    def resolve(self, symbol: str, interval: str, model: str, strategy: str | None = None) -> Target:
        """`model` as a request names it (see the module's docstring) -> registry name and version."""
        name, _, version = model.partition("@")
        if version and not (_VERSION.fullmatch(version) or version in ("latest", "production")):
            raise ApiError(422, f"model {model!r}: the version after '@' must be vNNNN, latest or production", "model")
        if name == "production":
            if version or strategy:
                raise ApiError(
                    422, "model 'production' takes no version or strategy: it is what serves the symbol", "model"
                )
            return Target(None, "production")
        key = (symbol, interval, name, strategy)
        cached = self._resolved.get(key)
        if cached and time.monotonic() - cached[0] < RESOLVE_TTL_S:
            target = cached[1]
        else:
            target = self._newest(symbol, interval, name, strategy)
            self._resolved[key] = (time.monotonic(), target)
        return Target(target.name, version or target.version)

    def _newest(self, symbol: str, interval: str, name: str, strategy: str | None) -> Target:
        saved = _versions(symbol, interval)
        if not saved:
            raise ApiError(404, f"no saved models for {symbol} {interval} (see GET /api/ml/models)", "symbol")
        names = sorted({ref.model for ref, _ in saved})
        types = sorted({str(meta.get("model_type")) for _, meta in saved if meta.get("model_type")})
        if name not in types and name in names and strategy is None:
            return Target(name, "latest")  # a registry name that is no type: itself
        matches = [
            (ref, meta)
            for ref, meta in saved
            if (meta.get("model_type") == name if name in types else ref.model == name)
            and (strategy is None or (meta.get("params") or {}).get("strategy") == strategy)
        ]
        if not matches:
            if name in types or name in names:  # the type exists, the strategy does not
                have = sorted(
                    {
                        str((m.get("params") or {}).get("strategy"))
                        for r, m in saved
                        if m.get("model_type") == name or r.model == name
                    }
                )
                raise ApiError(
                    404, f"no {name} of strategy {strategy!r} saved for {symbol} {interval}", "strategy", have
                )
            raise ApiError(
                404, f"model {name!r}: none saved for {symbol} {interval}", "model", ["production", *types, *names]
            )
        newest = max(
            matches, key=lambda rm: (str(rm[1].get("saved_at") or rm[1].get("trained_at") or ""), rm[0].version)
        )
        return Target(newest[0].model, "latest")

    def get(self, symbol: str, interval: str, target: Target, level: float) -> serving.Predictor:
        key = (symbol, interval, target, level)
        with self._lock:
            predictor = self._warm.get(key)
            if predictor is None:
                predictor = serving.Predictor(
                    symbol,
                    interval,
                    backend=self.backend,
                    level=level,
                    model=target.name,
                    version=target.version,
                    poll_s=self.poll_s,
                )
                self._warm[key] = predictor
            return predictor

    def encoded(self, predictor: serving.Predictor, answer: serving.Prediction) -> Response:
        """The answer as JSON, encoded once per forecast path: until a new bar closes (or another
        version serves) every request of a predictor and horizon gets the same bytes."""
        key = (id(predictor), len(answer.path))
        hit = self._encoded.get(key)
        if hit is None or hit[0] is not answer.path:
            hit = (answer.path, json.dumps(answer.to_json(), allow_nan=False).encode())
            self._encoded[key] = hit
        return Response(hit[1], media_type="application/json")

    def loaded(self) -> Iterator[dict[str, Any]]:
        """What this process holds warm: symbol, interval, model, version."""
        with self._lock:
            warm = list(self._warm.values())
        for p in warm:
            if p.loaded_ is not None:
                ref = p.loaded_.ref
                yield {
                    "symbol": ref.symbol,
                    "interval": ref.interval,
                    "model": ref.model,
                    "version": ref.version,
                    "serves": "production" if p.model is None else f"{p.model}@{p.version}",
                }
