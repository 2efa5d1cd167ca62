"""A limit on request bodies, enforced before the application reads them.

A declared `Content-Length` over the limit is refused at once (413); a body sent without one
(chunked) is counted as it arrives and refused the moment it passes the limit, so no request can
make a worker hold more than `max_bytes` of it in memory.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException

from coffee_ml.service.errors import body


class BodyLimit:
    """ASGI middleware: 413 with the service's error shape for a body over `max_bytes`."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"request body over the limit of {self.max_bytes} bytes (COFFEE_ML_MAX_BODY)"

    async def _refuse(self, send: Any) -> None:
        payload = json.dumps(body(413, self._message(), "body")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = True
            if too_big:
                await self._refuse(send)
                return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # FastAPI passes an HTTPException from the body read on as it is
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counted, send)
