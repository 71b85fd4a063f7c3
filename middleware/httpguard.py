"""Request-head limits and a head-read timeout for every HTTP listener (ingress and ops).

Why a protocol subclass: httptools (llhttp) has no header size limit at all; its Python binding
accumulates a header name and value until the line ends and only then calls ``on_header``, so a
1 MB header is buffered whole before uvicorn or any ASGI middleware could see it. uvicorn has no
header-read timeout either (``timeout_keep_alive`` only covers idle connections between
requests, and sending one byte cancels it). Both limits therefore sit where the bytes arrive:

- ``data_received`` counts the bytes fed to the parser while a head is incomplete and never feeds
  more than ``max_head_bytes`` of one head: memory stays bounded whatever the client sends;
- ``on_header`` checks each header line against ``max_header_bytes`` and counts the lines
  against ``max_headers`` (exact, at the parser's own callback, nothing extra to buffer);
- a timer started when a head begins (the connection opens, or the first byte of the next
  request on a kept-alive connection) closes the connection if the head is not complete within
  ``header_timeout``, however slowly it keeps trickling in.

A refused head is answered 431 with a JSON detail naming the limit and the setting, counted in
``silobridge_rejected_total{adapter="http"}``, and the connection is closed: no endpoint runs.
This leans on ``HttpToolsProtocol``'s parser callbacks (uvicorn 0.3x-0.5x); the tests in
tests/integration/test_http_limits.py fail loudly if a uvicorn upgrade changes them.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import httptools
import orjson
import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from middleware import metrics
from middleware.config.models import HttpLimits

__all__ = ["GuardedHttpToolsProtocol", "guarded_protocol"]

log = structlog.get_logger(__name__)

_REASONS = {431: "Request Header Fields Too Large", 408: "Request Timeout"}


class _HeadRefused(Exception):
    """Raised from a parser callback; httptools wraps it into HttpParserCallbackError."""

    def __init__(self, detail: str, limit: int) -> None:
        super().__init__(detail)
        self.detail, self.limit = detail, limit


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads; see the module docstring."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    listener: ClassVar[str] = "http"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a request head is expected or being read
        self._head_fed = 0  # bytes of the current head fed to the parser
        self._header_lines = 0
        self._head_timer: asyncio.TimerHandle | None = None

    # --- connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            super().data_received(data)
            return
        if self._head_timer is None:  # the first byte of the next head on a kept-alive connection
            self._arm_head_timer()
        room = self.limits.max_head_bytes - self._head_fed
        if room <= 0:
            self._refuse(_HeadRefused(
                f"the request head exceeds {self.limits.max_head_bytes} bytes (request line and "
                f"headers; setting ingress.http.max_head_bytes)", self.limits.max_head_bytes))
            return
        chunk, rest = data[:room], data[room:]
        self._head_fed += len(chunk)
        self._feed(chunk)
        if rest and not self.transport.is_closing():
            self.data_received(rest)  # the body; or still the head, then room is 0: refused

    def _feed(self, chunk: bytes) -> None:
        """uvicorn's ``data_received``, telling a refused head from a malformed request."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(chunk)
        except httptools.HttpParserError as exc:  # HttpParserCallbackError included
            if isinstance(exc.__context__, _HeadRefused):
                self._refuse(exc.__context__)
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    # --- parser callbacks --------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_lines += 1
        if self._header_lines > self.limits.max_headers:
            raise _HeadRefused(
                f"more than {self.limits.max_headers} header lines (setting "
                f"ingress.http.max_headers)", self.limits.max_headers)
        size = len(name) + len(value)
        if size > self.limits.max_header_bytes:
            shown = name[:64].decode("latin-1")
            raise _HeadRefused(
                f"header {shown!r} has {size} bytes (name and value); at most "
                f"{self.limits.max_header_bytes} per header (setting "
                f"ingress.http.max_header_bytes)", self.limits.max_header_bytes)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_fed, self._header_lines = True, 0, 0

    # --- refusing ----------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        metrics.REJECTED.labels(self.listener, "http", "header_timeout").inc()
        log.warning("request head timed out", listener=self.listener, client=self._client(),
                    received=self._head_fed, timeout=self.limits.header_timeout)
        if self._head_fed:
            self._answer(408, {
                "error": "request head timeout",
                "detail": f"the request head was not complete within "
                          f"{self.limits.header_timeout:g}s (setting ingress.http.header_timeout)",
            })
        self.transport.close()

    def _refuse(self, refused: _HeadRefused) -> None:
        metrics.REJECTED.labels(self.listener, "http", "header_too_large").inc()
        log.warning("request head refused", listener=self.listener, client=self._client(),
                    detail=refused.detail)
        self._answer(431, {"error": "request header fields too large", "detail": refused.detail,
                           "limit": refused.limit})
        self._disarm_head_timer()
        self.transport.close()

    def _answer(self, status: int, document: dict[str, Any]) -> None:
        body = orjson.dumps(document)
        head = [f"HTTP/1.1 {status} {_REASONS[status]}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in
                 self.server_state.default_headers]
        head += [b"content-type: application/json\r\n",
                 b"content-length: " + str(len(body)).encode() + b"\r\n",
                 b"connection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))

    def _client(self) -> str | None:
        return self.client[0] if self.client else None


def guarded_protocol(limits: HttpLimits, listener: str) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to *limits*.

    uvicorn takes a class (``Config(http=...)``), not an instance, so the limits and the
    listener's name (the metric's ``endpoint`` label) become class attributes of a subclass.
    """
    return type(f"Guarded{listener.title()}Protocol", (GuardedHttpToolsProtocol,),
                {"limits": limits, "listener": listener})
