"""REST enrich steps on a route of the in-memory broker, against a real HTTP peer on loopback:
the answer is merged before delivery, a 503 is retried after its Retry-After, a 404 and answers
that are no JSON or too large are dead-lettered with stage 'enrich', the cache saves a second
GET, hostile ids stay inside their path segment or are refused, a hanging peer costs only its
timeout."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from adapters.rest.enrich import RestSystem, RestSystemConfig
from middleware import headers as h
from middleware.broker.topology import dlq_name
from middleware.envelope import Envelope
from tests.integration.rest_helpers import Peer, json_response
from tests.unit.enrich.helpers import enriched_route
from tests.unit.pipeline_helpers import take, wait_until

CONTACT = {"id": "123", "properties": {"email": "ada@example.com", "firstname": "Ada"}}
GET = "/crm/v3/objects/contacts/{payload.objectId}?properties=email,firstname"


def hook(prefix: str, object_id: Any, n: int = 1) -> Envelope:
    """What the ingress makes of a HubSpot contact.creation event: the id and nothing else."""
    return Envelope.new(source="crm/hubspot", type=f"{prefix}.customer.created",
                        subject=str(object_id),
                        data={"objectId": object_id, "subscriptionType": "contact.creation",
                              "eventId": n})


def calls(route: str, result: str) -> float:
    return REGISTRY.get_sample_value("silobridge_enrich_calls_total",
                                     {"route": route, "system": "crm", "result": result}) or 0.0


def system(url: str, **extra: Any) -> RestSystem:
    return RestSystem(RestSystemConfig.model_validate(
        {"type": "rest", "base_url": url, "timeout": 2, **extra}))


async def crm(request: Request, body: bytes) -> Response:
    """A CRM API: contact 123 exists, 404 exists nowhere, 503 is busy for a second."""
    object_id = request.url.path.rsplit("/", 1)[-1]
    if object_id == "404":
        return json_response({"status": "error", "message": "resource not found"}, 404)
    if object_id == "503":
        return json_response({"status": "error"}, 503, **{"Retry-After": "1"})
    return json_response({**CONTACT, "id": object_id})


def test_enrich_rest_merges_the_answer_before_delivery(tmp_path: Path, prefix: str) -> None:
    with Peer(crm) as peer, enriched_route(
            tmp_path, prefix, system(peer.url),
            [{"system": "crm", "get": GET, "select": "properties", "into": "contact"}]) as r:
        envelope = hook(prefix, 123)
        r.route.send(envelope)
        assert wait_until(lambda: len(r.target.calls) == 1)
        assert r.target.calls[0][1] == {**envelope.data, "contact": CONTACT["properties"]}
        [(method, path, headers, _)] = peer.requests
        assert (method, path) == ("GET", "/crm/v3/objects/contacts/123?properties=email,firstname")
        assert headers["accept"] == "application/json"


def test_enrich_rest_503_is_retried_after_its_retry_after_then_delivered(
        tmp_path: Path, prefix: str) -> None:
    busy = {"left": 1}
    seen: list[float] = []

    async def flaky(request: Request, body: bytes) -> Response:
        seen.append(time.monotonic())
        if busy["left"]:
            busy["left"] -= 1
            return json_response({"status": "busy"}, 503, **{"Retry-After": "1"})
        return json_response(CONTACT)

    # tiers of 0.25 s, 1 s and 4 s: Retry-After: 1 skips the first, the second waits long enough
    retry = {"attempts": 3, "initial_delay": 0.25, "multiplier": 4}
    with Peer(flaky) as peer, enriched_route(
            tmp_path, prefix, system(peer.url),
            [{"system": "crm", "get": GET, "into": "contact"}], retry=retry) as r:
        r.route.send(hook(prefix, 123))
        assert wait_until(lambda: len(r.target.calls) == 1, 6)
        assert len(peer.requests) == 2
        assert seen[1] - seen[0] >= 0.95  # not the 0.25 s tier
        assert r.target.calls[0][1]["contact"] == CONTACT
        assert r.route.broker.depth(dlq_name(prefix)) == 0


def test_enrich_rest_404_dead_letters_with_stage_enrich_and_no_delivery(
        tmp_path: Path, prefix: str) -> None:
    with Peer(crm) as peer, enriched_route(
            tmp_path, prefix, system(peer.url),
            [{"system": "crm", "get": GET, "into": "contact"}]) as r:
        envelope = hook(prefix, 404)
        r.route.send(envelope)
        (letter,) = take(r.route.broker, dlq_name(prefix), 1)
        assert letter.properties.message_id == envelope.id
        assert letter.headers[h.STAGE] == "enrich"
        assert letter.headers[h.ERROR] == "EnrichError"
        assert letter.headers[h.REASON].startswith("permanent: enrich step 1 (crm): ")
        assert "HTTP 404" in letter.headers[h.REASON]
        assert letter.headers[f"{h.DETAIL}system"] == "crm"
        assert letter.headers[f"{h.DETAIL}status"] == "404"
        assert "resource not found" in letter.headers[f"{h.DETAIL}body"]
        assert len(peer.requests) == 1  # a 404 is not asked again
        assert r.target.calls == []
        assert calls(prefix, "failed") == 1 and calls(prefix, "fetched") == 0


def test_enrich_rest_404_with_required_false_goes_on_without_the_answer(
        tmp_path: Path, prefix: str) -> None:
    with Peer(crm) as peer, enriched_route(
            tmp_path, prefix, system(peer.url),
            [{"system": "crm", "get": GET, "into": "contact", "required": False}]) as r:
        envelope = hook(prefix, 404)
        r.route.send(envelope)
        assert wait_until(lambda: len(r.target.calls) == 1)
        assert r.target.calls[0][1] == envelope.data


def test_enrich_rest_cache_answers_the_same_request_once_per_ttl(
        tmp_path: Path, prefix: str) -> None:
    with Peer(crm) as peer, enriched_route(
            tmp_path, prefix, system(peer.url),
            [{"system": "crm", "get": GET, "into": "contact",
              "cache": {"ttl": 60, "max_entries": 10}}]) as r:
        r.route.send(hook(prefix, 123, n=1))
        assert wait_until(lambda: len(r.target.calls) == 1)
        r.route.send(hook(prefix, 123, n=2), hook(prefix, 124, n=3))
        assert wait_until(lambda: len(r.target.calls) == 3)
        paths = [path.split("?")[0] for _, path, _, _ in peer.requests]
        assert paths == ["/crm/v3/objects/contacts/123", "/crm/v3/objects/contacts/124"]
        assert all(call[1]["contact"]["id"] in ("123", "124") for call in r.target.calls)
        cache = r.enrichment.steps[0].cache
        assert cache is not None and (cache.hits, cache.misses) == (1, 2)
        assert [calls(prefix, result) for result in ("fetched", "cached", "failed")] == [2, 1, 0]
        assert REGISTRY.get_sample_value("silobridge_enrich_seconds_count",
                                         {"route": prefix, "system": "crm"}) == 2


@pytest.mark.parametrize(("object_id", "path"), [
    ("../../admin", "/crm/v3/objects/contacts/..%2F..%2Fadmin"),
    ("a/b?c=d#e f", "/crm/v3/objects/contacts/a%2Fb%3Fc%3Dd%23e%20f"),
    ("Ünï", "/crm/v3/objects/contacts/%C3%9Cn%C3%AF"),
])
def test_enrich_rest_odd_ids_stay_inside_their_path_segment(
        tmp_path: Path, prefix: str, object_id: str, path: str) -> None:
    with Peer(crm) as peer, enriched_route(
            tmp_path, prefix, system(peer.url),
            [{"system": "crm", "get": "/crm/v3/objects/contacts/{payload.objectId}",
              "into": "contact"}]) as r:
        r.route.send(hook(prefix, object_id))
        assert wait_until(lambda: len(r.target.calls) == 1)
        [(_, raw, _, _)] = peer.requests
        assert raw == path


@pytest.mark.parametrize(("object_id", "reason"), [
    ("..", "path segment '.' or '..'"),
    (".", "path segment '.' or '..'"),
    ("9" * 100_000, "characters long"),
    ("", "is empty; the request would ask for the collection"),
    (None, "has no scalar value"),
    ({"nested": 1}, "has no scalar value"),
])
def test_enrich_rest_unusable_ids_dead_letter_without_a_request(
        tmp_path: Path, prefix: str, object_id: Any, reason: str) -> None:
    with Peer(crm) as peer, enriched_route(
            tmp_path, prefix, system(peer.url),
            [{"system": "crm", "get": GET, "into": "contact"}]) as r:
        r.route.send(hook(prefix, object_id))
        (letter,) = take(r.route.broker, dlq_name(prefix), 1)
        assert letter.headers[h.STAGE] == "enrich"
        assert reason in letter.headers[h.REASON]
        assert letter.headers[h.REASON].startswith("permanent: ")
        assert peer.requests == []


def test_enrich_rest_answer_that_is_no_json_dead_letters(tmp_path: Path, prefix: str) -> None:
    async def html(request: Request, body: bytes) -> Response:
        return Response("<html>maintenance</html>", media_type="text/html")

    with Peer(html) as peer, enriched_route(
            tmp_path, prefix, system(peer.url),
            [{"system": "crm", "get": GET, "into": "contact"}]) as r:
        r.route.send(hook(prefix, 123))
        (letter,) = take(r.route.broker, dlq_name(prefix), 1)
        assert "answered text/html" in letter.headers[h.REASON]
        assert "not JSON" in letter.headers[h.REASON]


@pytest.mark.parametrize("streamed", [False, True])
def test_enrich_rest_answer_past_the_size_limit_dead_letters_unread(
        tmp_path: Path, prefix: str, streamed: bool) -> None:
    sent = {"bytes": 0}

    async def endless() -> AsyncIterator[bytes]:
        while True:  # a peer that would stream forever
            sent["bytes"] += 65536
            yield b" " * 65536
            await asyncio.sleep(0)

    async def huge(request: Request, body: bytes) -> Response:
        if streamed:
            return StreamingResponse(endless(), media_type="application/json")
        return Response(b'{"a": "' + b"x" * 50_000 + b'"}', media_type="application/json")

    with Peer(huge) as peer, enriched_route(
            tmp_path, prefix, system(peer.url, max_response_bytes=10_000),
            [{"system": "crm", "get": GET, "into": "contact"}]) as r:
        r.route.send(hook(prefix, 123))
        (letter,) = take(r.route.broker, dlq_name(prefix), 1)
        assert "more than 10000 bytes" in letter.headers[h.REASON]
        assert "max_response_bytes" in letter.headers[h.REASON]
        assert len(peer.requests) == 1
    assert r.target.calls == []


def test_enrich_rest_hanging_peer_costs_its_timeout_and_blocks_no_other_message(
        tmp_path: Path, prefix: str) -> None:
    released = threading.Event()  # set when the test ends, so the peer can stop at once

    async def hangs_for_one(request: Request, body: bytes) -> Response:
        deadline = time.monotonic() + 30
        while request.url.path.endswith("/hang") and not released.is_set() \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return json_response(CONTACT)

    with Peer(hangs_for_one) as peer, enriched_route(
            tmp_path, prefix, system(peer.url, timeout=0.3),
            [{"system": "crm", "get": GET, "into": "contact"}]) as r, _releasing(released):
        started = time.monotonic()
        r.route.send(hook(prefix, "hang", n=1), hook(prefix, 123, n=2))
        # the second message is delivered while the first waits for its peer
        assert wait_until(lambda: len(r.target.calls) == 1, 2)
        assert r.target.calls[0][1]["objectId"] == 123
        # the first times out on every try (0.3 s each), then is dead-lettered as exhausted
        (letter,) = take(r.route.broker, dlq_name(prefix), 1)
        assert time.monotonic() - started < 5
        assert letter.headers[h.STAGE] == "enrich"
        assert letter.headers[h.REASON].startswith("retries_exhausted: ")
        assert "timed out" in letter.headers[h.REASON]
        assert len(peer.calls("/hang")) == 3
        assert r.route.worker.wait_idle(1)


@contextmanager
def _releasing(event: threading.Event) -> Iterator[None]:
    try:
        yield
    finally:
        event.set()
