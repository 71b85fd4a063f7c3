"""A REST target runs on the broker's I/O loop (issue 18): no thread of its own, no hand-over.

The worker calls ``deliver`` on the broker loop and settles the message in the Future's
callback; with the target's requests on the same asyncio loop both happen on that thread, and
a slow ERP holds connections, never the loop. Against the real RabbitMQ (its loop turns only
once a connection uses it) and a real HTTP peer on loopback.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from adapters.rest import RestTarget, RestTargetConfig
from middleware.adapter import AdapterContext, Delivered
from middleware.broker.rabbitmq.broker import RabbitBroker
from middleware.config.models import BrokerConfig
from middleware.envelope import Envelope
from middleware.errors import DeliveryError
from tests.integration.rest_helpers import Peer, json_response

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(amqp_url: str) -> Iterator[RabbitBroker]:
    """A broker whose loop turns: one publisher connection holds it."""
    broker = RabbitBroker(BrokerConfig(url=amqp_url))
    publisher = broker.publisher()
    assert publisher.start(wait=10)
    yield broker
    publisher.stop()


def _target(url: str, broker: RabbitBroker | None, concurrency: int = 4,
            **extra: Any) -> RestTarget:
    target = RestTarget(RestTargetConfig.model_validate(
        {"type": "rest", "url": url, "concurrency": concurrency, "timeout": 10, **extra}))
    target.start(AdapterContext(None, None, None, Path("."),  # type: ignore[arg-type]
                                messaging=broker))
    return target


def _envelope(n: int) -> Envelope:
    return Envelope.new(source="crm/test", type="crm.customer.updated", subject=f"C-{n}",
                        data={"customer_no": f"C-{n}"})


def _rest_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("rest-")]


def _on_loop(broker: RabbitBroker, count: int, target: RestTarget,
             resolved_on: list[str]) -> list[Future[Delivered]]:
    """``count`` deliveries started on the broker loop, as the worker starts them."""
    started: Future[list[Future[Delivered]]] = Future()

    def start() -> None:
        futures = [target.deliver(_envelope(n), {"n": n}) for n in range(count)]
        for future in futures:
            future.add_done_callback(
                lambda _f: resolved_on.append(threading.current_thread().name))
        started.set_result(futures)

    assert broker.loop.call_soon(start)
    return started.result(10)


def test_rest_target_requests_start_and_settle_on_the_broker_loop(broker: RabbitBroker) -> None:
    async def created(request: Request, body: bytes) -> Response:
        return json_response({"id": "A-1"}, 201)

    with Peer(created) as erp:
        before = _rest_threads()
        target = _target(f"{erp.url}/accounts", broker)
        try:
            # Given a target started with a broker whose loop turns: no loop thread of its own
            assert _rest_threads() == before
            resolved_on: list[str] = []
            # When 50 deliveries start at once on the loop, as the worker starts them
            futures = _on_loop(broker, 50, target, resolved_on)
            results = [future.result(10) for future in futures]
        finally:
            target.close()
    # Then every one was delivered, and each Future was resolved on the broker loop's thread
    assert results == [Delivered(response={"id": "A-1"}, details={"status": 201})] * 50
    assert len(erp.calls("/accounts")) == 50
    assert resolved_on == ["amqp-loop"] * 50


def test_a_slow_erp_holds_connections_not_the_broker_loop(broker: RabbitBroker) -> None:
    async def slow(request: Request, body: bytes) -> Response:
        await asyncio.sleep(0.3)
        return json_response({}, 201)

    with Peer(slow) as erp:
        target = _target(f"{erp.url}/slow", broker, concurrency=2)
        try:
            # When 12 requests queue behind 2 connections to an ERP that takes 0.3 s each
            futures = _on_loop(broker, 12, target, [])
            # Then the loop keeps turning (its heartbeat runs every second) while they wait
            deadline = time.monotonic() + 15
            while not all(f.done() for f in futures) and time.monotonic() < deadline:
                assert broker.loop.turning(within=1.5)
                time.sleep(0.1)
            assert all(f.result(0).details == {"status": 201} for f in futures)
        finally:
            target.close()
    assert len(erp.calls("/slow")) == 12


def test_close_waits_for_the_requests_in_flight_on_the_shared_loop(
    broker: RabbitBroker,
) -> None:
    async def slow(request: Request, body: bytes) -> Response:
        await asyncio.sleep(0.5)
        return json_response({}, 201)

    with Peer(slow) as erp:
        target = _target(f"{erp.url}/slow", broker)
        # Given requests in flight, handed over from another thread (a route's store thread)
        futures = [target.deliver(_envelope(n), {"n": n}) for n in range(3)]
        time.sleep(0.1)
        # When the target closes
        target.close()
        # Then close returned only once they finished, and the loop still turns for the rest
        assert all(f.done() and f.exception() is None for f in futures)
        assert broker.loop.turning()


def test_without_a_running_broker_loop_the_target_keeps_a_loop_of_its_own(
    amqp_url: str,
) -> None:
    async def created(request: Request, body: bytes) -> Response:
        return json_response({}, 201)

    idle = RabbitBroker(BrokerConfig(url=amqp_url))  # no connection yet: its loop is not running
    with Peer(created) as erp:
        target = _target(f"{erp.url}/a", idle)
        try:
            # Then a request handed to it is not left on a loop that never turns
            assert target.deliver(_envelope(1), {}).result(10).details == {"status": 201}
            assert _rest_threads() == ["rest-127.0.0.1"]
        finally:
            target.close()
    assert _rest_threads() == []


def test_an_oversized_answer_is_not_read_on_the_loop_and_the_delivery_stands(
    broker: RabbitBroker,
) -> None:
    huge = b'{"id": "A-1", "lines": ["' + b"x" * 20_000_000 + b'"]}'

    async def accepted(request: Request, body: bytes) -> Response:
        return Response(huge, status_code=201, media_type="application/json")

    async def failed(request: Request, body: bytes) -> Response:
        return Response(b"<html>" + b"e" * 20_000_000, status_code=503)

    with Peer(accepted) as erp, Peer(failed) as broken:
        target = _target(f"{erp.url}/a", broker, max_response_bytes=65_536)
        down = _target(f"{broken.url}/a", broker, max_response_bytes=65_536)
        try:
            # When an ERP accepts and answers 20 MB, and another refuses with 20 MB of HTML
            [ok] = _on_loop(broker, 1, target, [])
            [refused] = _on_loop(broker, 1, down, [])
            delivered = ok.result(10)
            error = refused.exception(10)
        finally:
            target.close()
            down.close()
    # Then the first delivery stands, without an answer to capture from (it was not read)
    assert delivered == Delivered(response=None,
                                  details={"status": 201, "answer_over_bytes": 65_536})
    # and the refusal is classified by its status as ever, with a short excerpt of the body
    assert isinstance(error, DeliveryError) and error.retryable
    assert error.details["status"] == 503 and len(error.details["body"]) <= 600


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_close_does_not_hang_on_a_broker_loop_that_died(broker: RabbitBroker) -> None:
    async def never(request: Request, body: bytes) -> Response:
        await asyncio.sleep(30)
        return json_response({}, 201)

    def escape() -> None:
        raise RuntimeError("past the guards")

    with Peer(never) as erp:
        target = _target(f"{erp.url}/never", broker)
        in_flight = _on_loop(broker, 2, target, [])
        # Given a broker loop whose thread died (the watchdog ends the process next)
        broker.loop.ioloop.call_soon_threadsafe(escape)
        broker.loop.thread.join(5)
        assert not broker.loop.thread.is_alive()
        # When the daemon closes the target on its way out, it returns at once
        started = time.monotonic()
        target.close()
        assert time.monotonic() - started < 1
        assert not any(f.done() for f in in_flight)  # their messages are redelivered
        # (and should what is left of the loop be wound up, they fail as retryable)
        _cancel_what_is_left(broker.loop.ioloop)
    errors = [f.exception(0) for f in in_flight]
    assert all(isinstance(e, DeliveryError) and e.retryable for e in errors), errors


def _cancel_what_is_left(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks of a loop that stopped, and close it: left to the garbage collector,
    the loop is closed first and the tasks' connections cannot close on it any more."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()
