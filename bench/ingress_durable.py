"""The honest ingress baseline: a minimal durable webhook receiver.

A bare app that answers 202 without storing anything says little about a receiver whose every
202 is backed by a broker confirm. This one does the least a durable receiver must do, written
the way someone tuning it by hand would: the same ASGI server and uvicorn settings as the
ingress, the HMAC check over the raw body (constant time), a JSON parse, a small CloudEvents
envelope, and a persistent, mandatory publish with a publisher confirm awaited before the 202.
It publishes with aiormq on the server's own event loop (no thread hand-over), on one channel
in confirm mode, to the same exchange and routing key as silobridge, so the message lands in the
same route queue and the harness can count that every 202 was stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import Any

import aiormq
import orjson
from pamqp.commands import Basic
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

EVENTS_EXCHANGE = "silobridge.events"
"""silobridge's events exchange: the route queue of the run is bound to it."""


class DurableReceiver:
    """One aiormq channel in confirm mode, opened on the first request (on the server loop)."""

    def __init__(self, url: str, secret: str, routing_key: str) -> None:
        self.url, self.secret, self.routing_key = url, secret.encode(), routing_key
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._opening = asyncio.Lock()
        self.accepted = orjson.dumps({"status": "accepted"})

    async def channel(self) -> aiormq.abc.AbstractChannel:
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                connection = await aiormq.connect(self.url)
                self._channel = await connection.channel(publisher_confirms=True,
                                                         on_return_raises=True)
            return self._channel

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        signature = request.headers.get("x-signature", "").removeprefix("sha256=")
        expected = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        try:
            data: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        event_id = str(uuid.uuid4())
        envelope = orjson.dumps({
            "specversion": "1.0", "id": event_id, "source": "crm/bench",
            "type": self.routing_key, "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json", "data": data})
        try:
            channel = await self.channel()
            confirm = await channel.basic_publish(
                envelope, exchange=EVENTS_EXCHANGE, routing_key=self.routing_key,
                mandatory=True, timeout=10,
                properties=aiormq.spec.Basic.Properties(
                    delivery_mode=2, message_id=event_id, content_type="application/json"))
        except (aiormq.exceptions.AMQPError, TimeoutError, ConnectionError):
            return JSONResponse({"error": "broker unavailable"}, status_code=503)
        if not isinstance(confirm, Basic.Ack):
            return JSONResponse({"error": "broker refused the event"}, status_code=503)
        return Response(self.accepted, status_code=202, media_type="application/json")


def durable_app(url: str, secret: str, routing_key: str, path: str) -> Starlette:
    receiver = DurableReceiver(url, secret, routing_key)
    return Starlette(routes=[Route(path, receiver.hook, methods=["POST"])])
