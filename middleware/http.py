"""Run an ASGI app under uvicorn on a background thread.

The daemon's own work happens on pika threads; the ops server and the ingress each get a thread
with their own event loop, so an HTTP burst never stalls a broker connection. Requests are
parsed by httptools (C), through a protocol subclass (``middleware.httpguard``) that bounds request
heads and how long they may take, so a missing wheel fails loudly instead of falling back to h11:
with the pure-Python parser the ingress took a third fewer webhooks per second
(``bench/RESULTS.md``, ingress).

With ``tls`` the server speaks HTTPS only (``middleware/tls/server.py``: protocol floor, ciphers,
certificate reload) and every request scope carries the peer certificate
(``middleware/tls/peer.py``).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from middleware.config.models import HttpLimits, ServerTlsConfig
from middleware.httpguard import guarded_protocol
from middleware.tls import ReloadingContext, with_peer_certificate

__all__ = ["ServerThread"]


class ServerThread(threading.Thread):
    """uvicorn.Server in a thread; ``port`` is the bound port (useful when configured as 0)."""

    def __init__(self, app: ASGIApp, host: str, port: int, name: str,
                 tls: ServerTlsConfig | None = None, client_certs: bool = False,
                 limits: HttpLimits | None = None, reuse_port: bool = False) -> None:
        super().__init__(name=f"http-{name}", daemon=True)
        self.tls = (ReloadingContext(tls, client_certs=client_certs, name=name, where=name)
                    if tls is not None else None)
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                                lifespan="off", timeout_graceful_shutdown=5,
                                **_tls_options(self.tls,
                                               guarded_protocol(limits or HttpLimits(), name)))
        self._server = uvicorn.Server(config)
        self.port = port
        self._socket = _reuse_port_socket(host, port) if reuse_port else None

    def run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket] if self._socket else None))

    def start_and_wait(self, timeout: float = 10.0) -> None:
        """Start and return once the socket listens; raise if it could not bind."""
        self.start()
        if self.tls is not None:
            self.tls.start()
        deadline = threading.Event()
        for _ in range(int(timeout * 50)):
            if self._server.started:
                break
            if not self.is_alive():
                raise OSError(f"HTTP server {self.name} failed to start (port in use?)")
            deadline.wait(0.02)
        else:
            raise OSError(f"HTTP server {self.name} did not start within {timeout:g}s")
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = sockets[0].getsockname()[1]

    @property
    def listening(self) -> bool:
        return bool(self._server.started) and not self._server.should_exit

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self.tls is not None:
            self.tls.stop()
        self.join(timeout)


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind as well (SO_REUSEPORT, Linux and BSD):
    the kernel spreads new connections over the processes, with no proxy in between.

    Bound here, on the caller's thread, so that a port taken by an unrelated program is an
    OSError at start, as with uvicorn's own bind.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(False)
    except OSError:
        sock.close()
        raise
    return sock


def _tls_options(tls: ReloadingContext | None,
                 protocol: type[HttpToolsProtocol]) -> dict[str, Any]:
    """uvicorn settings for plain HTTP, or for HTTPS from a reloading context; ``protocol`` is
    the guarded httptools protocol, which HTTPS extends with the peer certificate."""
    if tls is None:
        return {"http": protocol}
    context = tls.context

    def factory(_config: uvicorn.Config, _default: Any) -> ssl.SSLContext:
        return context

    return {"http": with_peer_certificate(protocol), "ssl_context_factory": factory}
