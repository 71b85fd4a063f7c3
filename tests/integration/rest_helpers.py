"""Helpers for the REST adapter tests: real loopback HTTP peers, signing, endpoint configs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from middleware.http import ServerThread

REALWORLD = Path(__file__).resolve().parents[3] / "shared" / "realworld" / "crm-events"


def realworld(name: str) -> bytes:
    """A vendor sample, byte for byte; the test is skipped where the samples are absent."""
    path = REALWORLD / name
    if not path.is_file():
        pytest.skip(f"real-world sample {path} not present")
    return path.read_bytes()


def hmac_hex(secret: str, data: bytes) -> str:
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def hmac_b64(secret: str, data: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha256).digest()).decode()


class Peer:
    """A real HTTP server on 127.0.0.1 whose handler a test scripts.

    Every request is recorded as (method, raw path with query, headers, body).
    """

    def __init__(self, handler: Callable[[Request, bytes], Awaitable[Response]]) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._handler = handler

        async def endpoint(request: Request) -> Response:
            body = await request.body()
            query = request.scope["query_string"].decode()
            raw = request.scope["raw_path"].decode() + (f"?{query}" if query else "")
            with self._lock:
                self.requests.append((request.method, raw, dict(request.headers), body))
            return await self._handler(request, body)

        app = Starlette(routes=[Route("/{path:path}", endpoint,
                                      methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])
        self._server = ServerThread(app, "127.0.0.1", 0, "peer")

    def __enter__(self) -> Peer:
        self._server.start_and_wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def calls(self, path: str) -> list[tuple[str, str, dict[str, str], bytes]]:
        with self._lock:
            return [r for r in self.requests if r[1].split("?")[0].endswith(path)]


def json_response(data: Any, status: int = 200, **headers: str) -> Response:
    return Response(json.dumps(data), status_code=status, media_type="application/json",
                    headers=headers)


def endpoint(prefix: str, name: str, **extra: Any) -> dict[str, Any]:
    """A REST endpoint config publishing '<prefix>.<entity>.<action>' events."""
    section: dict[str, Any] = {
        "type": "rest", "name": f"{prefix}-{name}", "path": f"/hooks/{prefix}/{name}",
        "system": prefix,
        "derive": {"entity": {"value": "customer"}, "action": {"value": "updated"}},
    }
    section.update(extra)
    return section


def catch_all_route(prefix: str) -> dict[str, Any]:
    """A route that keeps every '<prefix>.#' event in its queue (nothing consumes it)."""
    return {"name": f"{prefix}-r", "bind": [f"{prefix}.#"],
            "target": {"type": "amqp", "exchange": f"{prefix}.out", "routing_key": "x"}}
