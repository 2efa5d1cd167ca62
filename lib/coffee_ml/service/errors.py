"""The service's one error shape: `{"error": {"status", "field", "message", "allowed"}}`.

Every refusal names the field it is about and, where the choices are few, what is allowed, so a
caller can fix the request without reading the server's log. User input never produces a 500 or
a traceback; a genuine bug answers 500 with one line and logs its traceback on the server.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("coffee_ml.service")


class ApiError(Exception):
    """A refusal: the HTTP status, the request field it is about, one line, and the allowed values."""

    def __init__(
        self, status: int, message: str, field: str | None = None, allowed: Sequence[Any] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.allowed = list(allowed) if allowed is not None else None
        self.extra = extra


def body(
    status: int, message: str, field: str | None = None, allowed: list[Any] | None = None, **extra: Any
) -> dict[str, Any]:
    error = {"status": status, "field": field, "message": message}
    if allowed is not None:
        error["allowed"] = allowed
    return {"error": {**error, **extra}}


def _location(loc: Sequence[Any]) -> str:
    """A validation error's location as the caller wrote it: `horizon`, `body.symbol`."""
    parts = [str(p) for p in loc if p not in ("query", "path")]
    return ".".join(parts) or "request"


def install(app: FastAPI) -> None:
    """Register the handlers: ApiError, FastAPI's validation errors, HTTP errors, anything else."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(body(exc.status, exc.message, exc.field, exc.allowed, **exc.extra), exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = _location(first.get("loc", ()))
        message = f"{field}: {first.get('msg', 'invalid value')}"
        if first.get("type") == "json_invalid":
            field, message = "body", "the request body is not valid JSON"
        return JSONResponse(body(422, message, field), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such path: {request.url.path} (see /docs for the endpoints)"
        field = "body" if exc.status_code == 413 else None
        return JSONResponse(
            body(exc.status_code, message, field), exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error answering %s %s", request.method, request.url.path)
        return JSONResponse(body(500, f"internal error ({type(exc).__name__}); the server log has the traceback"), 500)
