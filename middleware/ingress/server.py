"""The shared HTTP ingress: one server on which REST and SOAP inbound adapters mount endpoints.

Adapters register their routes during ``start``; the daemon starts the server afterwards, so the
route table is fixed before the first request. An endpoint registered with ``client_cert`` makes
the TLS listener ask clients for a certificate; the endpoint itself decides who is let in
(``middleware.tls.ClientCertCheck``). Every route is wrapped in its endpoint's rate limits and
concurrency cap (``middleware.ratelimit``, configured under ``ingress.limits``), and the server
bounds request heads (``middleware.httpguard``, ``ingress.http``): both here, once, so every
inbound adapter gets them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from middleware.config.models import ClientCertConfig, IngressConfig
from middleware.errors import ConfigError, Problem
from middleware.http import ServerThread
from middleware.ratelimit import EndpointGuard

__all__ = ["Endpoint", "Ingress"]

Endpoint = Callable[[Request], Awaitable[Response]]


class Ingress:
    def __init__(self, config: IngressConfig) -> None:
        self._config = config
        self._routes: list[BaseRoute] = []
        self._owners: dict[str, str] = {}  # path -> the endpoint serving it
        self._server: ServerThread | None = None
        self._client_certs = False  # some endpoint authenticates clients by certificate

    def add_route(self, path: str, endpoint: Endpoint, methods: Sequence[str],
                  owner: str, client_cert: ClientCertConfig | None = None) -> None:
        """Mount an inbound endpoint; ``owner`` (its config name) names it in errors."""
        self.add(Route(path, endpoint, methods=list(methods)), owner, client_cert)

    def add(self, route: Route, owner: str, client_cert: ClientCertConfig | None = None) -> None:
        """Mount a prepared Starlette route; a path served twice is a config error."""
        if self._server is not None:
            raise RuntimeError("routes must be added before the ingress starts")
        if client_cert is not None:
            self._want_client_certs(owner)
        taken = self._owners.get(route.path)
        if taken is not None:
            raise ConfigError([Problem("inbound", None, owner,
                                       f"path {route.path!r} is already served by {taken!r}; "
                                       f"give each endpoint its own path")])
        self._owners[route.path] = owner
        limits = self._config.limits
        route.app = EndpointGuard(route.app, owner, limits.for_endpoint(owner), limits.max_clients)
        self._routes.append(route)

    def _want_client_certs(self, owner: str) -> None:
        tls = self._config.tls
        if tls is None or not tls.client_ca_file:
            raise ConfigError([Problem("inbound", None, f"{owner}.client_cert",
                                       "client certificates need HTTPS on the ingress: set "
                                       "ingress.tls with cert_file, key_file and client_ca_file "
                                       "(the CA that signs the clients' certificates)")])
        self._client_certs = True

    @property
    def routes(self) -> list[BaseRoute]:
        return list(self._routes)

    @property
    def has_routes(self) -> bool:
        return bool(self._routes)

    def start(self) -> None:
        self._server = ServerThread(Starlette(routes=self._routes), self._config.host,
                                    self._config.port, "ingress", tls=self._config.tls,
                                    client_certs=self._client_certs, limits=self._config.http,
                                    reuse_port=self._config.reuse_port)
        self._server.start_and_wait()

    @property
    def port(self) -> int:
        return self._server.port if self._server else self._config.port

    @property
    def thread(self) -> ServerThread | None:
        """The server's thread once started, for the daemon's watchdog to observe."""
        return self._server

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.listening

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
