"""The admin API as a Starlette app, built from ``rbac.ENDPOINTS``.

Each request passes one guard before its handler: who is calling (session cookie or bearer
token), the CSRF token on a mutating request made with a session, the endpoint's permission, and
for ``{route}`` endpoints the user's route scope. The handler table (``handlers.HANDLERS``) must
name exactly the endpoints of the table, so an endpoint cannot be served without a permission.

Store, broker and argon2 calls block, so they run on worker threads (``run_in_threadpool``), never
on the server's event loop. Failures map to answers that say what to do: 400/422 bad input,
401 sign in, 403 not allowed (or a missing CSRF token), 404 unknown, 409 conflict, 429 slow down,
503 broker or store unavailable (with Retry-After).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from middleware.config.models import Config
from middleware.console.auth import SESSION_COOKIE, Authenticator, Principal
from middleware.console.livestate import LiveState
from middleware.console.oidc import OidcClient
from middleware.console.rbac import ENDPOINTS, Endpoint, allowed
from middleware.console.store import ConsoleStore
from middleware.console.studio import Studio
from middleware.errors import BrokerUnavailable, ProcessingError, SilobridgeError

__all__ = ["ApiError", "Context", "api_routes"]



class ApiError(Exception):
    """An answer other than success, with a message that says what to do."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.details = details


@dataclass
class Context:
    """What handlers share: the daemon's config, the console store, auth and live state."""

    config: Config
    store: ConsoleStore
    auth: Authenticator
    live: LiveState
    secure_cookies: bool
    studio: Studio
    oidc: OidcClient | None = None
    """The OpenID Connect provider, when ``console.oidc`` is configured."""

    @property
    def route_names(self) -> list[str]:
        return [route.name for route in self.config.routes]


Handler = Callable[[Request, Principal | None, Context], Awaitable[Response]]


def error(status: int, message: str, headers: dict[str, str] | None = None,
          details: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def _guard(endpoint: Endpoint, handler: Handler, context: Context) -> Callable[
        [Request], Awaitable[Response]]:
    async def call(request: Request) -> Response:
        try:
            principal = await _admit(endpoint, request, context)
            return await handler(request, principal, context)
        except ApiError as exc:
            return error(exc.status, str(exc), exc.headers, exc.details)
        except BrokerUnavailable as exc:
            return error(503, f"the broker cannot be reached ({exc}); try again shortly",
                         {"Retry-After": "5"})
        except ProcessingError as exc:
            if exc.retryable:
                return error(503, f"the store is unavailable ({exc}); try again shortly",
                             {"Retry-After": "5"})
            return error(409, str(exc))
        except SilobridgeError as exc:
            return error(503, f"{exc}; try again shortly", {"Retry-After": "5"})
    return call


async def _admit(endpoint: Endpoint, request: Request, context: Context) -> Principal | None:
    if endpoint.permission is None:
        return None
    principal = await run_in_threadpool(context.auth.resolve,
                                        request.cookies.get(SESSION_COOKIE),
                                        request.headers.get("authorization"))
    if principal is None:
        raise ApiError(401, "not signed in, or the session expired: sign in again "
                            "(POST /api/v1/login) or send 'Authorization: Bearer <token>'")
    if endpoint.mutating and not principal.csrf_ok(request.headers.get("x-csrf-token")):
        raise ApiError(403, "missing or wrong X-CSRF-Token header: send the csrf_token "
                            "from the login answer or GET /api/v1/me")
    if not allowed(principal.role, endpoint.permission):
        raise ApiError(403, f"the role {principal.role!r} may not do this (needs "
                            f"{endpoint.permission.value}); ask an admin for a role that may")
    if endpoint.route_scoped:
        route = request.path_params["route"]
        if not principal.may_see_route(route):
            raise ApiError(403, f"your account is limited to other routes than {route!r}")
        if route not in context.route_names:
            raise ApiError(404, f"no route {route!r}; GET /api/v1/routes lists them")
    return principal


def api_routes(context: Context, handlers: dict[str, Handler]) -> list[BaseRoute]:
    """One route per endpoint of the table, each behind the guard."""
    names = {endpoint.name for endpoint in ENDPOINTS}
    if names != set(handlers):
        raise RuntimeError(f"handlers and endpoint table differ: {sorted(names ^ set(handlers))}")
    return [Route(e.path, _guard(e, handlers[e.name], context), methods=[e.method], name=e.name)
            for e in ENDPOINTS]


def app(context: Context, handlers: dict[str, Handler]) -> Starlette:
    return Starlette(routes=api_routes(context, handlers))
