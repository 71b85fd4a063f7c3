"""REST target: send one mapped payload per envelope over HTTP, classified for retry or DLQ.

``deliver`` returns at once: the request runs as a task on an event loop (aiohttp), at most
``concurrency`` of them at a time, so a slow ERP ties up only its own connections, never a
thread. In a daemon that loop is the broker's I/O loop, where the consumer hands the message
over, so a request starts and its answer settles the message without a thread switch
(``adapters.rest.session``); without a broker loop (the in-memory broker of the unit tier, the
CLI) the target gets a loop thread of its own. One loop rather than a thread per request in
flight: measured
against a loopback server with 16 requests in flight, a thread pool with httpx cost about
1.2 ms of client CPU per request (GIL hand-overs between the threads, httpcore's pool lock),
aiohttp on one loop about 0.26 ms, which is what lets one process deliver 1,000 events/s
(``bench/sync_lag.py``). With ``cloudevents`` the payload goes out as a CloudEvent
(``adapters.rest.cloudevents``). The envelope id goes out as the Idempotency-Key, so a
redelivery after a lost answer never creates a second record; the envelope's W3C trace context
(the worker's deliver span while tracing is on) goes out as ``traceparent`` / ``tracestate``.
The parsed JSON answer is handed back for the route's mapping to capture cross-references (for
example the id the ERP created). It is read up to ``max_response_bytes``: parsing it runs on the
broker loop, and an ERP that answered 100 MB held that loop for 0.5 s and ~440 MB more peak
memory than with the limit; a larger 2xx answer is not read, the delivery stands and nothing is
captured.
Auth, ``tls`` (a private CA, a client certificate, loaded at start), the proxy and the
translation of client errors are ``adapters.rest.session.HttpClient``'s, shared with REST enrich
steps; a handshake that fails is retried like any connection error, with a message that says
what to set.

``connector`` is a test seam: the unit tier passes a factory of ``aiohttp.UnixConnector`` so
the target talks to a peer on a unix socket, without TCP (``tests/unit/targets``). The factory
runs on the target's loop, where aiohttp wants its connectors made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog

from adapters._http import status_error
from adapters.rest.client import render
from adapters.rest.cloudevents import STRUCTURED, binary_headers, structured_body
from adapters.rest.outbound_config import RestTargetConfig
from adapters.rest.session import HttpClient, json_body
from middleware.adapter import AdapterContext, Delivered
from middleware.envelope import Envelope
from middleware.tracing import outgoing

__all__ = ["RestTarget"]

log = structlog.get_logger(__name__)


class RestTarget:
    def __init__(self, config: RestTargetConfig,
                 connector: Callable[[], aiohttp.BaseConnector] | None = None) -> None:
        self._config = config
        self._label = f"{config.method} {urlsplit(config.url).netloc}"
        self._connector = connector
        self._client: HttpClient | None = None
        templates = [config.url, *config.headers.values()]
        self._uses_envelope = any("{envelope." in template for template in templates)

    def start(self, context: AdapterContext) -> None:
        """The client runs on the broker's I/O loop if it turns (see the module doc)."""
        config = self._config
        self._client = HttpClient(
            url=config.url, label=self._label, auth=config.auth, where="routes.target.auth",
            timeout=config.timeout, concurrency=config.concurrency,
            verify_tls=config.verify_tls, tls=config.tls, tls_where="routes.target",
            connector=self._connector, shared=_running_loop(context))
        self._client.start()

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        assert self._client is not None, "start() must run before the first delivery"
        return self._client.submit(self._send(envelope, payload))

    async def _send(self, envelope: Envelope, payload: Any) -> Delivered:
        config = self._config
        values = {
            # the attributes only: serialising the payload just to drop it cost ~20 µs a call
            "envelope": (orjson.loads(envelope.to_json(data=None)) if self._uses_envelope
                         else None),
            "payload": payload,
        }
        url = render(config.url, values, in_url=True)
        headers = {name: render(value, values, in_url=False)
                   for name, value in config.headers.items()}
        headers.setdefault("Accept", "application/json")
        # the deliver span's W3C context (configured headers of the same name win, whatever
        # their case: two traceparent fields would make the receiver ignore both)
        configured = {name.lower() for name in headers}
        headers.update((name, value) for name, value in
                       outgoing(envelope.traceparent, envelope.tracestate).items()
                       if name.lower() not in configured)
        if config.idempotency_header:
            headers[config.idempotency_header] = envelope.id
        content = None
        if config.cloudevents == "structured":
            content = structured_body(envelope, payload)
            headers["Content-Type"] = STRUCTURED
        elif config.send_body:
            content = orjson.dumps(payload)
            headers["Content-Type"] = "application/json"
            if config.cloudevents == "binary":
                headers.update(binary_headers(envelope, payload))
        assert self._client is not None
        limit = config.max_response_bytes
        answer = await self._client.send(config.method, url, headers, content, limit)
        if not 200 <= answer.status < 300:
            raise status_error(answer.status, answer.body.decode(errors="replace"),
                               answer.headers.get("Retry-After"), self._label)
        if answer.cut:  # accepted: delivered, but the answer is too large to parse on the loop
            log.warning("target answer larger than max_response_bytes, not read: nothing "
                        "captured from it", target=self._label, status=answer.status,
                        limit=limit, message_id=envelope.id)
            return Delivered(response=None, details={"status": answer.status,
                                                     "answer_over_bytes": limit})
        log.debug("delivered", target=self._label, status=answer.status, message_id=envelope.id)
        return Delivered(response=json_body(answer.body, answer.headers.get("Content-Type", "")),
                         details={"status": answer.status})

    def close(self) -> None:
        """Let the requests in flight finish, then close the connections."""
        if self._client is not None:
            self._client.close()


def _running_loop(context: AdapterContext) -> asyncio.AbstractEventLoop | None:
    """The broker's asyncio loop, if it is running: one that is not would never start a
    request handed to it (a tool that starts a target before any broker connection)."""
    loop = context.messaging.event_loop() if context.messaging is not None else None
    return loop if loop is not None and loop.is_running() else None
