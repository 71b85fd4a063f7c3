"""The console in the daemon: the admin API under /api/v1 and the pages under /console, on the
ops server's port or on a port of its own (``console.port``, optionally HTTPS).

Opening the console store migrates the store first (as the daemon's own stores do). Responses
carry a strict Content-Security-Policy (scripts and styles from this origin only, no inline
code) and refuse framing, so an injected string cannot run and the console cannot be clickjacked.
"""

from __future__ import annotations

import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from middleware.config.loader import LoadedConfig
from middleware.console.api import Context, api_routes
from middleware.console.auth import Authenticator
from middleware.console.handlers import HANDLERS
from middleware.console.livestate import LiveState
from middleware.console.oidc import OidcClient
from middleware.console.store import open_console_store
from middleware.console.studio import Studio
from middleware.http import ServerThread
from middleware.watchdog import Watchdog

__all__ = ["STATIC", "Console", "console_app"]

STATIC = Path(__file__).parent / "static"
_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; "
                                 b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def console_routes(context: Context) -> list[BaseRoute]:
    async def home(_request: object) -> Response:
        return RedirectResponse("/console/", status_code=307)

    return [*api_routes(context, HANDLERS),
            Mount("/console", StaticFiles(directory=STATIC, html=True), name="console"),
            Route("/", home)]


def console_app(context: Context, rest: ASGIApp | None = None) -> ASGIApp:
    """The console's routes, then (when sharing the ops port) everything ``rest`` serves."""
    routes = console_routes(context)
    if rest is not None:
        routes.append(Mount("/", rest))
    return _SecurityHeaders(Starlette(routes=routes))


class Console:
    """The console of one daemon: its store, and its own server when it has its own port."""

    def __init__(self, loaded: LoadedConfig) -> None:
        config = loaded.config
        settings = config.console
        files = {route.name: loaded.resolve(route.mapping).resolve()
                 for route in config.routes if route.mapping}
        self.store = open_console_store(config.store)
        now = time.time()
        self.store.prune(now, now - settings.audit_retention_days * 86400)
        self.context = Context(config, self.store, Authenticator(self.store, settings),
                               LiveState(config), settings.secure_cookies, Studio(files),
                               OidcClient(settings.oidc) if settings.oidc else None)
        self.server: ServerThread | None = None
        if settings.port is not None:
            self.server = ServerThread(console_app(self.context), settings.host, settings.port,
                                       "console", tls=settings.tls, limits=config.ingress.http)

    def around(self, ops: ASGIApp) -> ASGIApp:
        """The ops app, with the console in front of it when they share the port."""
        return ops if self.server is not None else console_app(self.context, ops)

    def start(self, watchdog: Watchdog) -> None:
        if self.server is not None:
            self.server.start_and_wait()
            watchdog.watch_thread(self.server)

    @property
    def port(self) -> int | None:
        return self.server.port if self.server is not None else None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.store.close()

