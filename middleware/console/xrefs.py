"""The admin API's cross-reference endpoints: search, fix (replace) and unlink.

Fixing replaces whatever links either record had, which is what the console's "fix a wrong
link" page means; unlinking removes one link on purpose, which is what ``silobridge xref
unlink`` does through the API. Both write one audit record with the links before and after.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from middleware.console.api import ApiError, Context, Handler
from middleware.console.audit import record
from middleware.console.auth import Principal
from middleware.console.bodies import XrefFixBody, XrefUnlinkBody, query_int, query_text, read
from middleware.console.store import XrefLink

__all__ = ["XREF_HANDLERS"]


def _who(principal: Principal | None) -> str:
    assert principal is not None  # the guard admits no anonymous caller to these
    return principal.name


async def xref_search(request: Request, _p: Principal | None, context: Context) -> Response:
    limit, offset = query_int(request, "limit", 50, 1, 500), query_int(request, "offset", 0, 0,
                                                                        1_000_000)
    found = await run_in_threadpool(context.store.xref_search, query_text(request, "namespace"),
                                    query_text(request, "key"), limit, offset)
    return JSONResponse({"offset": offset, "limit": limit,
                         "links": [link.__dict__ for link in found]})


async def xref_fix(request: Request, principal: Principal | None, context: Context) -> Response:
    body = await read(request, XrefFixBody)
    link = XrefLink(body.ns_a, body.key_a, body.ns_b, body.key_b)

    def fix() -> list[XrefLink]:
        before = [*context.store.xref_search(body.ns_a, body.key_a, 100, 0),
                  *context.store.xref_search(body.ns_b, body.key_b, 100, 0)]
        context.store.xref_fix(link)
        return [old for old in before
                if {old.ns_a, old.ns_b} == {body.ns_a, body.ns_b}
                and (body.key_a in (old.key_a, old.key_b) or body.key_b in (old.key_a, old.key_b))]

    replaced = await run_in_threadpool(fix)
    await run_in_threadpool(record, context.store, _who(principal), "xref.fix",
                            f"{body.ns_a}:{body.key_a}", [old.__dict__ for old in replaced],
                            link.__dict__)
    return JSONResponse({"link": link.__dict__, "replaced": [old.__dict__ for old in replaced]})


async def xref_unlink(request: Request, principal: Principal | None, context: Context
                      ) -> Response:
    body = await read(request, XrefUnlinkBody)
    target = f"{body.namespace}:{body.key}"

    def unlink() -> XrefLink | None:
        removed = context.store.xref_unlink(body.namespace, body.key, body.other)
        if removed is not None:
            record(context.store, _who(principal), "xref.unlink", target, removed.__dict__, None)
        return removed

    removed = await run_in_threadpool(unlink)
    if removed is None:
        raise ApiError(404, f"{target} has no link to {body.other}; GET /api/v1/xref?key="
                            f"{body.key} shows its links")
    return JSONResponse({"removed": removed.__dict__})


XREF_HANDLERS: dict[str, Handler] = {
    "xref_search": xref_search, "xref_fix": xref_fix, "xref_unlink": xref_unlink,
}
