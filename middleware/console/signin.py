"""Sign-in through an OpenID Connect provider: the endpoints a browser goes through.

``GET /api/v1/login`` tells the sign-in page which ways to sign in exist; ``/oidc/start`` sends
the browser to the provider with the flow's secrets in a cookie; ``/oidc/callback`` finishes
(``oidc.OidcClient`` does every check), keeps the user's row in step with the provider's role
claim (audited as ``user.oidc`` when it changes) and opens an ordinary session, so everything
after sign-in is the same as for a local user.

The callback is a browser navigation, not a script's call: failures send the browser back to
the sign-in page with the reason in the address (``#/signin-error/...``, shown as text), and
the reason never includes a token or a code.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from middleware.console.api import ApiError, Context, Handler
from middleware.console.audit import record
from middleware.console.auth import SESSION_COOKIE, Principal
from middleware.console.oidc import FLOW_COOKIE, FLOW_SECONDS, Identity, OidcClient, OidcError

__all__ = ["SIGNIN_HANDLERS", "sync_user"]

_HOME = "/console/#/overview"
_PARAM_MAX = 2048
"""Longest callback parameter (the OpenAPI document says the same)."""


def _client(context: Context) -> OidcClient:
    if context.oidc is None:
        raise ApiError(404, "OpenID Connect sign-in is not configured ('console.oidc'); sign "
                            "in with a name and password")
    return context.oidc


def _back_with(error: OidcError) -> Response:
    response = RedirectResponse(f"/console/#/signin-error/{quote(str(error), safe='')}",
                                status_code=303)
    response.delete_cookie(FLOW_COOKIE, path="/api/v1/oidc")
    return response


async def login_options(_request: Request, _p: Principal | None, context: Context) -> Response:
    oidc = None
    if context.oidc is not None:
        oidc = {"label": context.oidc.config.label, "start": "/api/v1/oidc/start"}
    return JSONResponse({"password": True, "oidc": oidc})


async def oidc_start(_request: Request, _p: Principal | None, context: Context) -> Response:
    client = _client(context)
    try:
        url, flow = await run_in_threadpool(client.start)
    except OidcError as exc:
        return _back_with(exc)
    response = RedirectResponse(url, status_code=303)
    # Lax, not Strict: the provider's redirect back is a cross-site navigation, and a Strict
    # cookie would not come with it.
    response.set_cookie(FLOW_COOKIE, flow.cookie(), max_age=FLOW_SECONDS, httponly=True,
                        samesite="lax", secure=context.secure_cookies, path="/api/v1/oidc")
    return response


def sync_user(context: Context, identity: Identity) -> None:
    """Create or update the provider's user so its role follows the provider's claim."""
    store = context.store
    before = store.user(identity.name)
    if before is not None and before.password is not None:
        raise OidcError(409, f"a local user named {identity.name!r} exists; rename it with "
                             f"'silobridge users' before signing in through the provider")
    if before is None:
        user = store.add_user(identity.name, None, identity.role, identity.routes)
        record(store, "oidc", "user.oidc", identity.name, None,
               {**user.public(), "subject": identity.subject})
    elif (before.role, before.routes) != (identity.role, identity.routes):
        store.set_role(identity.name, identity.role, identity.routes)
        after = store.user(identity.name)
        record(store, "oidc", "user.oidc", identity.name, before.public(),
               after.public() if after else None)


async def oidc_callback(request: Request, _p: Principal | None, context: Context) -> Response:
    client = _client(context)
    params = dict(request.query_params.items())
    long = sorted(key for key, value in params.items() if len(value) > _PARAM_MAX)
    if long:
        raise ApiError(400, f"query parameter(s) {', '.join(long)} longer than {_PARAM_MAX} "
                            f"characters: not an answer of an OpenID Connect provider")

    def finish() -> tuple[str, str]:
        identity = client.finish(params, request.cookies.get(FLOW_COOKIE))
        sync_user(context, identity)
        return context.auth.new_session(identity.name, time.time())

    try:
        cookie, _csrf = await run_in_threadpool(finish)
    except OidcError as exc:
        return _back_with(exc)
    response = RedirectResponse(_HOME, status_code=303)
    response.delete_cookie(FLOW_COOKIE, path="/api/v1/oidc")
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(context.config.console.session_ttl),
                        httponly=True, samesite="strict", secure=context.secure_cookies,
                        path="/")
    return response


SIGNIN_HANDLERS: dict[str, Handler] = {
    "login_options": login_options, "oidc_start": oidc_start, "oidc_callback": oidc_callback,
}
