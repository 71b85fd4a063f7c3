"""What each admin API endpoint does, one coroutine per row of ``rbac.ENDPOINTS``.

The guard in ``api`` has already checked who calls and what they may do; handlers check their
input, run blocking work on worker threads, answer without bodies the role may not see, and
write one audit record per change (who, what, before and after).
"""

from __future__ import annotations

import orjson
from ruamel.yaml.error import YAMLError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from middleware import headers as h
from middleware.broker import dlq
from middleware.console import deadletters as letters
from middleware.console import routedetail as detail
from middleware.console.api import ApiError, Context, Handler
from middleware.console.audit import as_json, record
from middleware.console.auth import SESSION_COOKIE, LoginThrottled, Principal, hash_password
from middleware.console.bodies import (
    EditReplayBody,
    LinkBody,
    LoginBody,
    MappingPreviewBody,
    MappingSaveBody,
    MappingTestBody,
    PurgeBody,
    ReplayBody,
    TokenBody,
    UserAddBody,
    UserUpdateBody,
    query_int,
    query_text,
    read,
)
from middleware.console.openapi import document
from middleware.console.rbac import GRANTS, Permission, Role, allowed, body_view
from middleware.console.signin import SIGNIN_HANDLERS
from middleware.console.store import User
from middleware.console.studio import Link, with_links
from middleware.console.xrefs import XREF_HANDLERS
from middleware.envelope import Envelope
from middleware.errors import ConfigError, DecodeError

__all__ = ["HANDLERS"]


def _who(principal: Principal | None) -> Principal:
    assert principal is not None  # the guard admits no anonymous caller to these
    return principal


async def openapi(_request: Request, _p: Principal | None, _c: Context) -> Response:
    return JSONResponse(document())


async def login(request: Request, _p: Principal | None, context: Context) -> Response:
    body = await read(request, LoginBody)
    client = request.client.host if request.client else "unknown"
    try:
        session = await run_in_threadpool(context.auth.login, body.name, body.password, client)
    except LoginThrottled as exc:
        raise ApiError(429, str(exc), {"Retry-After": str(exc.retry_after)}) from None
    if session is None:
        raise ApiError(401, "wrong user name or password")
    cookie, csrf = session
    response = JSONResponse({"name": body.name, "csrf_token": csrf})
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(context.config.console.session_ttl),
                        httponly=True, samesite="strict", secure=context.secure_cookies,
                        path="/")
    return response


async def logout(_request: Request, principal: Principal | None, context: Context) -> Response:
    await run_in_threadpool(context.auth.logout, _who(principal))
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def me(_request: Request, principal: Principal | None, _c: Context) -> Response:
    who = _who(principal)
    try:
        granted = sorted(p.value for p in GRANTS[Role(who.role)])
    except ValueError:
        granted = []
    return JSONResponse({**who.user.public(), "via": who.via, "csrf_token": who.csrf,
                         "permissions": granted, "body_view": body_view(who.role).value})


def _visible(principal: Principal, context: Context) -> list[str]:
    return [name for name in context.route_names if principal.may_see_route(name)]


async def routes(_request: Request, principal: Principal | None, context: Context) -> Response:
    rows = await run_in_threadpool(context.live.routes, _visible(_who(principal), context))
    return JSONResponse({"routes": rows})


async def route(request: Request, principal: Principal | None, context: Context) -> Response:
    name = request.path_params["route"]
    config = next(r for r in context.config.routes if r.name == name)
    may_read_rules = allowed(_who(principal).role, Permission.MAPPING_READ)

    def gather() -> dict[str, object]:
        row = context.live.routes([name])[0]
        return {**row, "bind": config.bind, "reverse": config.reverse,
                "target": config.target.type,
                "retry": detail.retry_tiers(context.config, config),
                "recent_failures": detail.recent_failures(context.config, name),
                "mapping": detail.mapping_in_use(context.studio, config, may_read_rules)}

    return JSONResponse(await run_in_threadpool(gather))


async def errors(request: Request, principal: Principal | None, context: Context) -> Response:
    limit, offset = query_int(request, "limit", 100, 1, 500), query_int(request, "offset", 0, 0,
                                                                         100_000)
    visible = _visible(_who(principal), context)
    wanted = query_text(request, "route")
    if wanted is not None and wanted not in visible:
        raise ApiError(404, f"no route {wanted!r} among yours; GET /api/v1/routes lists them")
    found = await run_in_threadpool(letters.recent_errors, context.config.broker,
                                    [wanted] if wanted else visible, None)
    hits = letters.matching(found, query_text(request, "q"), query_text(request, "stage"),
                            query_text(request, "error"))
    return JSONResponse({"total": len(hits), "offset": offset, "limit": limit,
                         "errors": hits[offset:offset + limit], "routes": visible,
                         "stages": sorted({e["stage"] for e in found if e["stage"]}),
                         "error_classes": sorted({e["error"] for e in found if e["error"]})})


async def dead_letters(request: Request, _p: Principal | None, context: Context) -> Response:
    name = request.path_params["route"]
    limit, offset = query_int(request, "limit", 50, 1, 500), query_int(request, "offset", 0, 0,
                                                                        letters.BROWSE_LIMIT)
    found = await run_in_threadpool(letters.filtered, context.config.broker, name,
                                    type_=query_text(request, "type"),
                                    reason=query_text(request, "reason"),
                                    subject=query_text(request, "subject"))
    page = found[offset:offset + limit]
    return JSONResponse({"route": name, "total": len(found), "offset": offset, "limit": limit,
                         "items": [letters.summary(letter, name) for letter in page]})


async def dead_letter(request: Request, principal: Principal | None, context: Context
                      ) -> Response:
    name, message_id = request.path_params["route"], request.path_params["id"]
    letter = await _find(context, name, message_id)
    return JSONResponse(letters.view(letter, name, body_view(_who(principal).role)))


async def _find(context: Context, route: str, message_id: str) -> dlq.DeadLetter:
    try:
        return await run_in_threadpool(letters.find, context.config.broker, route, message_id)
    except letters.NotFound:
        raise ApiError(404, f"no dead letter {message_id!r} in route {route!r} (replayed or "
                            f"purged meanwhile?)") from None


async def replay(request: Request, principal: Principal | None, context: Context) -> Response:
    name, body = request.path_params["route"], await read(request, ReplayBody)
    ids = None if body.all else set(body.ids or ())
    result = await run_in_threadpool(dlq.replay, context.config.broker, name, ids)
    await run_in_threadpool(record, context.store, _who(principal).name, "dlq.replay", name,
                            None, {"ids": result.ids, "all": body.all})
    return JSONResponse({"replayed": len(result.ids), "ids": result.ids,
                         "refused_accepted": result.accepted})


async def edit_replay(request: Request, principal: Principal | None, context: Context
                      ) -> Response:
    name, message_id = request.path_params["route"], request.path_params["id"]
    body = await read(request, EditReplayBody)
    raw = orjson.dumps(body.event)
    try:
        event = Envelope.from_json(raw)
    except DecodeError as exc:
        raise ApiError(422, f"the edited event is not a valid envelope: {exc}") from None
    if event.id != message_id:
        raise ApiError(422, f"the event id must stay {message_id!r} so that idempotency at the "
                            f"target still applies; edit the data, not the id")
    before = await _find(context, name, message_id)
    if before.headers.get(h.ACCEPTED) == "true":
        raise ApiError(409, f"the target already accepted {message_id!r} (only storing its answer "
                            f"failed): fix the link under cross-references, then drop the letter")
    try:
        await run_in_threadpool(letters.edit_replay, context.config.broker, name, message_id,
                                raw)
    except letters.NotFound:
        raise ApiError(404, f"dead letter {message_id!r} left the DLQ meanwhile") from None
    await run_in_threadpool(record, context.store, _who(principal).name, "dlq.edit_replay",
                            f"{name}/{message_id}", orjson.loads(before.body), body.event)
    return JSONResponse({"replayed": 1, "ids": [message_id]})


async def purge(request: Request, principal: Principal | None, context: Context) -> Response:
    name, body = request.path_params["route"], await read(request, PurgeBody)
    if body.confirm != name:
        raise ApiError(400, f"to purge, send {{\"confirm\": \"{name}\"}} (the route's name)")
    count = await run_in_threadpool(dlq.purge, context.config.broker, name)
    await run_in_threadpool(record, context.store, _who(principal).name, "dlq.purge", name,
                            {"dead_letters": count}, {"dead_letters": 0})
    return JSONResponse({"purged": count})


def _link(body: LinkBody) -> Link:
    lookup = {} if body.remove_lookup else (body.lookup.model_dump() if body.lookup else None)
    return Link(body.target, body.source, body.transform, body.map, lookup, body.when,
                body.else_)


def _studio_route(request: Request, context: Context) -> str:
    name = str(request.path_params["route"])
    if context.studio.path(name) is None:
        raise ApiError(404, f"route {name!r} has no mapping file (it delivers the event's data "
                            f"as it is); add 'mapping:' to the route in the config")
    return name


async def mapping(request: Request, _p: Principal | None, context: Context) -> Response:
    name = _studio_route(request, context)
    return JSONResponse(await run_in_threadpool(context.studio.read, name))


async def mapping_preview(request: Request, _p: Principal | None, context: Context
                          ) -> Response:
    name, body = _studio_route(request, context), await read(request, MappingPreviewBody)
    return JSONResponse(await run_in_threadpool(context.studio.preview, name, body.yaml,
                                                body.input))


async def mapping_test(request: Request, _p: Principal | None, context: Context) -> Response:
    name, body = _studio_route(request, context), await read(request, MappingTestBody)
    return JSONResponse(await run_in_threadpool(context.studio.test, name, body.yaml))


async def mapping_save(request: Request, principal: Principal | None, context: Context
                       ) -> Response:
    name, body = _studio_route(request, context), await read(request, MappingSaveBody)

    def save() -> tuple[str, str, list[dict[str, object]]]:
        text = body.yaml
        if text is None:
            current = context.studio.read(name)["yaml"]
            try:
                text = with_links(current, [_link(link) for link in body.links or ()])
            except (ConfigError, YAMLError) as exc:
                return current, current, [{"message": f"cannot write the links: {exc}"}]
        before, problems = context.studio.save(name, text)
        if not problems:
            record(context.store, _who(principal).name, "mapping.save", name, before, text)
        return before, text, problems

    _before, text, problems = await run_in_threadpool(save)
    if problems:
        raise ApiError(422, "the mapping was not saved: " + "; ".join(
            str(p.get("text") or p["message"]) for p in problems), details=problems)
    return JSONResponse({"saved": True, "yaml": text})


async def users(_request: Request, _p: Principal | None, context: Context) -> Response:
    found = await run_in_threadpool(context.store.users)
    return JSONResponse({"users": [user.public() for user in found]})


async def user_add(request: Request, principal: Principal | None, context: Context) -> Response:
    body = await read(request, UserAddBody)

    def add() -> dict[str, object] | None:
        if context.store.user(body.name) is not None:
            return None
        hashed = hash_password(body.password) if body.password else None
        user = context.store.add_user(body.name, hashed, body.role.value, body.routes)
        record(context.store, _who(principal).name, "user.add", body.name, None, user.public())
        return user.public()

    added = await run_in_threadpool(add)
    if added is None:
        raise ApiError(409, f"user {body.name!r} exists; PUT /api/v1/users/{body.name} changes it")
    return JSONResponse(added, status_code=201)


async def user_update(request: Request, principal: Principal | None, context: Context
                      ) -> Response:
    name, body = request.path_params["name"], await read(request, UserUpdateBody)

    def update() -> dict[str, object] | None:
        before = context.store.user(name)
        if before is None:
            return None
        role = body.role.value if body.role else before.role
        if role != Role.ADMIN and _last_admin(context, before):
            raise ApiError(409, f"{name!r} is the only admin; make another user admin first")
        context.store.set_role(name, role, before.routes if body.routes is None else body.routes)
        if body.password is not None:
            context.store.set_password(name, hash_password(body.password))
        after = context.store.user(name)
        assert after is not None
        changes = {**after.public(), "password_changed": body.password is not None}
        record(context.store, _who(principal).name, "user.update", name, before.public(),
               changes)
        return after.public()

    updated = await run_in_threadpool(update)
    if updated is None:
        raise ApiError(404, f"no user {name!r}")
    return JSONResponse(updated)


async def user_remove(request: Request, principal: Principal | None, context: Context
                      ) -> Response:
    name = request.path_params["name"]

    def remove() -> bool:
        before = context.store.user(name)
        if before is not None and _last_admin(context, before):
            raise ApiError(409, f"{name!r} is the only admin; make another user admin first")
        if before is None or not context.store.remove_user(name):
            return False
        record(context.store, _who(principal).name, "user.remove", name, before.public(), None)
        return True

    if not await run_in_threadpool(remove):
        raise ApiError(404, f"no user {name!r}")
    return JSONResponse({"removed": name})


def _last_admin(context: Context, user: User) -> bool:
    """Whether ``user`` is the one admin left: the console must not lock its admins out."""
    return user.role == Role.ADMIN and not any(
        other.role == Role.ADMIN and other.name != user.name for other in context.store.users())


async def token_add(request: Request, principal: Principal | None, context: Context
                    ) -> Response:
    name, body = request.path_params["name"], await read(request, TokenBody)

    def issue() -> str | None:
        if context.store.user(name) is None:
            return None
        token = context.auth.issue_token(name, body.label)
        record(context.store, _who(principal).name, "token.add", name, None,
               {"label": body.label})
        return token

    token = await run_in_threadpool(issue)
    if token is None:
        raise ApiError(404, f"no user {name!r}")
    return JSONResponse({"token": token, "label": body.label}, status_code=201)


async def audit(request: Request, _p: Principal | None, context: Context) -> Response:
    limit, offset = query_int(request, "limit", 100, 1, 10_000), query_int(request, "offset", 0,
                                                                           0, 10_000_000)
    found = await run_in_threadpool(context.store.audit_records, limit, offset,
                                    query_text(request, "actor"), query_text(request, "action"))
    entries = [as_json(entry) for entry in found]
    output = request.query_params.get("format", "json")
    if output not in ("json", "ndjson"):
        raise ApiError(400, "query parameter 'format' must be json or ndjson")
    if output == "ndjson":
        return Response(b"".join(orjson.dumps(e) + b"\n" for e in entries),
                        media_type="application/x-ndjson")
    return JSONResponse({"offset": offset, "limit": limit, "entries": entries})


HANDLERS: dict[str, Handler] = {
    "openapi": openapi, "login": login, "logout": logout, "me": me, "routes": routes,
    "route": route, "errors": errors, "dead_letters": dead_letters, "dead_letter": dead_letter,
    "replay": replay, "edit_replay": edit_replay, "purge": purge, "users": users,
    "user_add": user_add, "user_update": user_update,
    "user_remove": user_remove, "token_add": token_add, "audit": audit, "mapping": mapping,
    "mapping_preview": mapping_preview, "mapping_test": mapping_test,
    "mapping_save": mapping_save, **SIGNIN_HANDLERS, **XREF_HANDLERS,
}
