"""The ops HTTP app: /healthz (alive), /readyz (able to do its job), /metrics (Prometheus).

Readiness is a set of named checks supplied by the daemon, reported individually so an operator
sees *why* a pod is not ready (broker down, consumers stopped, store failing, ingress not
listening...), with ``reasons`` where a check knows more than true or false. The
checks read liveness (a thread alive, a loop turning), never flags a dead thread left behind.
Once a long-lived thread died (``problem`` says which), the process is not alive either: both
endpoints answer 503 with the reason while the process exits to be restarted.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["ops_app"]

Checks = Callable[[], dict[str, bool]]
Problem = Callable[[], str | None]
Reasons = Callable[[], dict[str, str]]


def ops_app(checks: Checks, problem: Problem = lambda: None,
            reasons: Reasons = dict) -> Starlette:
    """``reasons`` explains failing checks where the daemon knows more (the store's error)."""

    async def healthz(_request: Request) -> Response:
        reason = problem()
        if reason is not None:
            return JSONResponse({"status": "dead", "reason": reason}, status_code=503)
        return JSONResponse({"status": "alive"})

    async def readyz(_request: Request) -> Response:
        results = checks()
        reason = problem()
        ready = all(results.values()) and reason is None
        body: dict[str, object] = {"ready": ready, "checks": results}
        explained = reasons()
        if explained:
            body["reasons"] = explained
        if reason is not None:
            body["reason"] = reason
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ])
