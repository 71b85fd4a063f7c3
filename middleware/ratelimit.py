"""Rate limits and a concurrency cap per ingress endpoint, as ASGI middleware around its route.

The ingress wraps every mounted route (REST webhooks, SOAP endpoints, the OpenAPI document) in
one :class:`EndpointGuard`, so the adapters stay unaware of it and REST and SOAP are limited
alike. The guard runs after routing and before the endpoint reads a byte of the body, in order
of cost to the sender: the concurrency cap (503 + Retry-After: the endpoint is busy, come back
soon), the client address's token bucket, then the endpoint's (429 + Retry-After: the time until
a token is free). A refused request takes no token from a later bucket.

Everything runs on the ingress's event loop thread, one request at a time between awaits, so
the buckets and the counter need no lock. The table of client buckets is an LRU bounded by
``max_clients``: an attacker cycling through addresses only evicts the least recently seen ones
(who start again with a full burst); the endpoint's own bucket still bounds the total rate.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from middleware import metrics
from middleware.config.models import EndpointLimits

__all__ = ["ClientBuckets", "EndpointGuard", "TokenBucket"]

Clock = Callable[[], float]


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; a request takes one."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), now

    def take(self, now: float) -> float:
        """Take a token: 0.0 when one was free, else the seconds until one will be."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class ClientBuckets:
    """One bucket per client address, at most ``max_clients`` of them (least recent evicted)."""

    def __init__(self, rate: float, burst: int, max_clients: int) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, client: str, now: float) -> float:
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._buckets.popitem(last=False)
            bucket = self._buckets[client] = TokenBucket(self.rate, self.burst, now)
        else:
            self._buckets.move_to_end(client)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


def _burst(burst: int | None, rate: float) -> int:
    return burst if burst is not None else max(1, math.ceil(rate))


class EndpointGuard:
    """ASGI middleware enforcing one endpoint's :class:`EndpointLimits`."""

    def __init__(self, app: ASGIApp, endpoint: str, limits: EndpointLimits, max_clients: int,
                 clock: Clock = time.monotonic) -> None:
        self.app, self.endpoint, self.limits, self._clock = app, endpoint, limits, clock
        now = clock()
        self._bucket = (None if limits.rate is None else
                        TokenBucket(limits.rate, _burst(limits.burst, limits.rate), now))
        self._clients = (None if limits.client_rate is None else
                         ClientBuckets(limits.client_rate,
                                       _burst(limits.client_burst, limits.client_rate),
                                       max_clients))
        self.active = 0  # requests inside the endpoint now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await _answer(send, *refusal)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1

    def _refusal(self, scope: Scope) -> tuple[int, int, dict[str, object]] | None:
        """(status, Retry-After seconds, JSON document) when the request must be refused."""
        limits, name = self.limits, self.endpoint
        if limits.max_concurrent is not None and self.active >= limits.max_concurrent:
            return self._refuse(503, "over_capacity", limits.retry_after,
                                f"endpoint {name!r} is handling {limits.max_concurrent} requests "
                                f"already (setting max_concurrent)")
        now = self._clock()
        if self._clients is not None:
            client = scope["client"][0] if scope.get("client") else "unknown"
            wait = self._clients.take(client, now)
            if wait:
                return self._refuse(429, "client_rate_limited", wait,
                                    f"endpoint {name!r} accepts {limits.client_rate:g} requests/s "
                                    f"per client address (setting client_rate)")
        if self._bucket is not None:
            wait = self._bucket.take(now)
            if wait:
                return self._refuse(429, "rate_limited", wait,
                                    f"endpoint {name!r} accepts {limits.rate:g} requests/s "
                                    f"(setting rate)")
        return None

    def _refuse(self, status: int, reason: str, wait: float,
                why: str) -> tuple[int, int, dict[str, object]]:
        seconds = max(1, math.ceil(wait))
        metrics.REJECTED.labels(self.endpoint, "http", reason).inc()
        # No log line per refusal: under the flood that causes them, logging would cost more than
        # answering (silobridge_rejected_total counts them by reason).
        error = "too many requests" if status == 429 else "endpoint busy"
        return status, seconds, {"error": error, "detail": f"{why}; retry in {seconds}s",
                                 "retry_after": seconds}


async def _answer(send: Send, status: int, retry_after: int, document: dict[str, object]) -> None:
    body = orjson.dumps(document)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()),
    ]})
    await send({"type": "http.response.body", "body": body})
