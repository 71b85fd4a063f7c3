"""Token buckets, the bounded client table and the endpoint guard (middleware.ratelimit)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from middleware.config.models import Config, EndpointLimits, IngressLimits
from middleware.ratelimit import ClientBuckets, EndpointGuard, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_burst_then_waits_for_refill() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert bucket.take(0.5) == 0.0
    assert bucket.take(10.0) == 0.0  # refilled, but never beyond the burst
    assert [bucket.take(10.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


def test_client_buckets_are_per_address_and_bounded() -> None:
    clients = ClientBuckets(rate=1.0, burst=1, max_clients=3)
    assert clients.take("10.0.0.1", 0.0) == 0.0
    assert clients.take("10.0.0.1", 0.0) > 0  # this address is spent...
    assert clients.take("10.0.0.2", 0.0) == 0.0  # ...another one is not
    for n in range(1000):  # an attacker cycling through addresses
        clients.take(f"192.0.2.{n}", 0.0)
    assert len(clients) == 3


def test_client_buckets_evict_the_least_recently_seen() -> None:
    clients = ClientBuckets(rate=1.0, burst=1, max_clients=2)
    clients.take("a", 0.0)
    clients.take("b", 0.0)
    clients.take("a", 0.0)  # a seen again: b is now the oldest
    clients.take("c", 0.0)
    assert clients.take("a", 0.0) > 0  # a kept its (spent) bucket
    assert clients.take("b", 0.0) == 0.0  # b was forgotten and starts afresh


def _scope(client: str = "127.0.0.1") -> Scope:
    return {"type": "http", "method": "POST", "path": "/hook", "headers": [],
            "client": (client, 5000)}


async def _call(guard: EndpointGuard, scope: Scope) -> tuple[int, dict[str, str], Any]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await guard(scope, receive, send)
    start, body = sent[0], sent[1]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, json.loads(body["body"])


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def test_endpoint_guard_client_rate_answers_429_with_retry_after() -> None:
    clock = Clock()
    guard = EndpointGuard(_ok, "hook", EndpointLimits(client_rate=0.5, client_burst=2), 100,
                          clock=clock)
    statuses = [asyncio.run(_call(guard, _scope()))[0] for _ in range(2)]
    status, headers, document = asyncio.run(_call(guard, _scope()))
    assert statuses == [202, 202]
    assert status == 429 and headers["retry-after"] == "2"  # one token per 2 s
    assert document["retry_after"] == 2 and "client_rate" in document["detail"]
    assert asyncio.run(_call(guard, _scope("10.1.1.1")))[0] == 202  # other address
    clock.now += 2
    assert asyncio.run(_call(guard, _scope()))[0] == 202


def test_endpoint_guard_endpoint_rate_covers_all_addresses() -> None:
    guard = EndpointGuard(_ok, "hook", EndpointLimits(rate=1, burst=1), 100, clock=Clock())
    first = asyncio.run(_call(guard, _scope("10.0.0.1")))[0]
    status, headers, document = asyncio.run(_call(guard, _scope("10.0.0.2")))
    assert (first, status, headers["retry-after"]) == (202, 429, "1")
    assert "(setting rate)" in document["detail"]


def test_endpoint_guard_concurrency_cap_answers_503_and_frees_slots() -> None:
    async def scenario() -> tuple[list[int], int, int]:
        release = asyncio.Event()

        async def slow(scope: Scope, receive: Receive, send: Send) -> None:
            await release.wait()
            await _ok(scope, receive, send)

        guard = EndpointGuard(slow, "hook", EndpointLimits(max_concurrent=5, retry_after=3), 100)
        admitted = [asyncio.ensure_future(_call(guard, _scope())) for _ in range(5)]
        await asyncio.sleep(0)  # all five are inside the endpoint now
        refused = [await _call(guard, _scope()) for _ in range(3)]
        assert {(s, h["retry-after"]) for s, h, _ in refused} == {(503, "3")}
        release.set()
        done = [status for status, _, _ in await asyncio.gather(*admitted)]
        after = (await _call(guard, _scope()))[0]
        return done, guard.active, after

    done, active, after = asyncio.run(scenario())
    assert done == [202] * 5 and active == 0 and after == 202


def test_endpoint_guard_slot_is_freed_when_the_endpoint_fails() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("endpoint bug")

    guard = EndpointGuard(broken, "hook", EndpointLimits(max_concurrent=1), 100)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            asyncio.run(_call(guard, _scope()))
    assert guard.active == 0


def test_ingress_limits_overrides_per_endpoint_keep_other_defaults() -> None:
    limits = IngressLimits(client_rate=5, max_concurrent=64,
                           endpoints={"soap-in": EndpointLimits(max_concurrent=4),
                                      "open": EndpointLimits(client_rate=None)})
    assert limits.for_endpoint("soap-in").model_dump() == {
        "rate": None, "burst": None, "client_rate": 5.0, "client_burst": None,
        "max_concurrent": 4, "retry_after": 1}
    assert limits.for_endpoint("open").client_rate is None
    assert limits.for_endpoint("other").max_concurrent == 64


def test_config_limits_for_unknown_endpoint_is_an_error_naming_known_ones() -> None:
    with pytest.raises(ValueError, match=r"names no inbound endpoint: typo; known: orders"):
        Config.model_validate({
            "inbound": [{"type": "rest", "name": "orders"}],
            "ingress": {"limits": {"endpoints": {"typo": {"rate": 1}}}},
        })
