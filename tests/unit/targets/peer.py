"""An HTTP peer on a unix socket, for target tests without TCP: it accepts, fails like a
server in trouble (5xx), refuses (4xx, or a SOAP Client fault) or stalls, as a test says.

It runs an aiohttp server on its own event loop thread; every request it answers is kept in
``requests`` (path, headers, body), so a test reads what reached the peer, not what a target
says it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from aiohttp import web

__all__ = ["Answer", "Received", "UnixPeer"]

Answer = Literal["accept", "trouble", "refuse", "stall"]

_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
_STALL = 5.0  # far longer than any target timeout a test sets


@dataclass(frozen=True)
class Received:
    answer: Answer  # what the peer answered: only "accept" means it took the message
    path: str
    headers: dict[str, str]
    body: bytes
    names: tuple[str, ...] = ()  # every header field's name as sent, repeats included


def _soap(inner: str) -> bytes:
    return (f'<soap:Envelope xmlns:soap="{_SOAP}"><soap:Body>{inner}</soap:Body>'
            "</soap:Envelope>").encode()


def _fault(code: str) -> bytes:
    return _soap(f"<soap:Fault><faultcode>soap:{code}</faultcode>"
                 f"<faultstring>{code} says no</faultstring></soap:Fault>")


_REST: dict[Answer, tuple[int, bytes, str]] = {
    "accept": (201, b'{"id": "ERP-1"}', "application/json"),
    "trouble": (503, b'{"error": "maintenance"}', "application/json"),
    "refuse": (422, b'{"error": "AccountNo is unknown"}', "application/json"),
}
_SOAP_ANSWERS: dict[Answer, tuple[int, bytes, str]] = {
    "accept": (200, _soap('<CreateSalesOrderResponse xmlns="urn:silobridge:demo:erp"/>'),
               "text/xml"),
    "trouble": (500, _fault("Server"), "text/xml"),
    "refuse": (500, _fault("Client"), "text/xml"),
}


class UnixPeer:
    """Serves ``/rest/...`` as a JSON API and ``/soap`` as the demo ERP's CreateSalesOrder."""

    def __init__(self) -> None:
        # a short directory of our own: a unix socket path must stay under ~100 bytes
        self._dir = Path(tempfile.mkdtemp(prefix="sbpeer"))
        self.socket = self._dir / "peer.sock"
        self.answer: Answer = "accept"
        self.requests: list[Received] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="unix-peer")
        self._runner: web.AppRunner | None = None
        self._released: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        """``http+unix://`` URL of the socket (how requests-unixsocket2 addresses it)."""
        return f"http+unix://{quote(str(self.socket), safe='')}"

    def start(self) -> UnixPeer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(5)
        return self

    async def _serve(self) -> None:
        self._released = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.UnixSite(self._runner, str(self.socket)).start()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        answer = self.answer
        self.requests.append(Received(answer, request.path, dict(request.headers), body,
                                      tuple(request.headers.keys())))
        if answer == "stall":
            assert self._released is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), _STALL)
            answer = "trouble"
        table = _SOAP_ANSWERS if request.path.startswith("/soap") else _REST
        status, content, content_type = table[answer]
        return web.Response(status=status, body=content, content_type=content_type)

    def stop(self) -> None:
        async def close() -> None:
            assert self._released is not None and self._runner is not None
            self._released.set()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        shutil.rmtree(self._dir, ignore_errors=True)
