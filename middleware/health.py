"""The ops HTTP app: /healthz (alive), /readyz (able to do its job), /metrics (Prometheus).

Readiness is a set of named checks supplied by the daemon, reported individually so an operator
sees *why* a pod is not ready (broker down, consumers stopped, ingress not listening...).
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


def ops_app(checks: Checks) -> Starlette:
    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(_request: Request) -> Response:
        results = checks()
        ready = all(results.values())
        return JSONResponse({"ready": ready, "checks": results}, status_code=200 if ready else 503)

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ])
