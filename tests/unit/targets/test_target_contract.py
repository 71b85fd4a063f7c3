"""Every target passes the same contract (STYLE.md habit 6), on a route of the in-memory
broker, read where the outcome lands: delivered (the peer holds it and the route recorded it),
a server in trouble -> retried through the tiers then dead-lettered as exhausted, a refusal ->
dead-lettered at once, a timeout -> retried like trouble.

The REST and SOAP targets reach a peer on a unix socket (``peer.UnixPeer``), no TCP; the AMQP
target's peer is the broker itself: a confirm delivers, a nack (a full ``reject-publish``
queue) is trouble, a routing key that cannot be encoded is a refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
import pytest
import requests_unixsocket
from lxml import etree

from adapters.amqp.config import AmqpTargetConfig
from adapters.amqp.outbound import AmqpTarget
from adapters.rest.outbound import RestTarget
from adapters.rest.outbound_config import RestTargetConfig
from adapters.soap.config import SoapTargetConfig
from adapters.soap.outbound import SoapTarget
from middleware import headers as h
from middleware.adapter import AdapterContext, Delivered, OutboundAdapter
from middleware.broker.topology import QueueSpec, Topology, dlq_name, queue_name
from middleware.config.models import BrokerConfig
from middleware.envelope import Envelope
from tests.unit.pipeline_helpers import Route, running_route, take, wait_until
from tests.unit.targets.peer import Answer, UnixPeer

_ROOT = Path(__file__).resolve().parents[3]
_WSDL = _ROOT / "mappings" / "examples" / "soap-erp" / "demo-erp.wsdl"
_ERP = "{urn:silobridge:demo:erp}"
ORDER = {"OrderNo": "CRM-O-1", "AccountNo": "A-77", "Currency": "EUR"}
TIMEOUT = 0.3  # seconds a target waits for its peer; the stalling peer waits far longer


class Counting:
    """The route's target: counts the calls, and forwards them to the target under test
    (which is started once the route, whose publisher and broker it may need, runs)."""

    def __init__(self) -> None:
        self.inner: OutboundAdapter | None = None
        self.calls = 0

    def start(self, context: AdapterContext) -> None:
        """The target under test is started by its ``Kind``."""

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        assert self.inner is not None
        self.calls += 1  # the worker calls deliver one message at a time in these tests
        return self.inner.deliver(envelope, payload)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


@dataclass
class Bench:
    route: Route
    peer: UnixPeer
    tmp_path: Path
    prefix: str
    answer: Answer
    subject: str = "C-1"
    extra: dict[str, Any] = field(default_factory=dict)


class Kind(Protocol):
    """One target under the contract: how to start it with its peer answering
    ``bench.answer``, and how to read what the peer accepted."""

    def make(self, bench: Bench) -> OutboundAdapter: ...

    def accepted(self, bench: Bench) -> list[tuple[str, dict[str, Any]]]:
        """(idempotency key, fields) of every message the peer accepted."""
        ...


class RestKind:
    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self.headers = headers or {}

    def make(self, bench: Bench) -> OutboundAdapter:
        target = RestTarget(RestTargetConfig.model_validate({
            "type": "rest", "url": "http://erp.test/rest/orders", "timeout": TIMEOUT,
            "headers": self.headers}),
            connector=lambda: aiohttp.UnixConnector(path=str(bench.peer.socket)))
        target.start(AdapterContext(None, BrokerConfig(), None, bench.tmp_path))  # type: ignore[arg-type]
        return target

    def accepted(self, bench: Bench) -> list[tuple[str, dict[str, Any]]]:
        return [(got.headers["Idempotency-Key"], orjson.loads(got.body))
                for got in bench.peer.requests if got.answer == "accept"]


class SoapKind:
    def make(self, bench: Bench) -> OutboundAdapter:
        target = SoapTarget(SoapTargetConfig.model_validate({
            "type": "soap", "wsdl": str(_WSDL), "operation": "CreateSalesOrder",
            "address": f"{bench.peer.base_url}/soap", "timeout": TIMEOUT,
            "idempotency": {"argument": "RequestId"}}),
            transports={"http+unix://": requests_unixsocket.UnixAdapter()})
        target.start(AdapterContext(None, BrokerConfig(), None, bench.tmp_path))  # type: ignore[arg-type]
        return target

    def accepted(self, bench: Bench) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for got in bench.peer.requests:
            if got.answer != "accept":
                continue
            (call,) = etree.fromstring(got.body).iter(f"{_ERP}CreateSalesOrder")
            fields = {etree.QName(node).localname: node.text for node in call}
            found.append((fields.pop("RequestId"), fields))
        return found


class AmqpKind:
    def make(self, bench: Bench) -> OutboundAdapter:
        if bench.answer == "stall":
            pytest.skip("the in-memory broker confirms or refuses at once; a confirm that "
                        "never comes (PublishTimeout) needs the real broker")
        out = f"{bench.prefix}.out"
        config: dict[str, Any] = {"type": "amqp", "exchange": out, "routing_key": "erp.order",
                                  "queue": out}
        if bench.answer == "refuse":  # the routing key outgrows an AMQP short string
            config["routing_key"] = "erp.order.{subject}"
            bench.subject = "S" * 250
        target = AmqpTarget(AmqpTargetConfig.model_validate(config))
        route = bench.route
        target.start(AdapterContext(route.publisher, BrokerConfig(), None, bench.tmp_path,  # type: ignore[arg-type]
                                    messaging=route.broker))
        if bench.answer == "trouble":  # a queue that refuses every message: publishes are nacked
            route.broker.declare(Topology([], [QueueSpec(
                f"{bench.prefix}.full", {"x-max-length": 0, "x-overflow": "reject-publish"},
                ((out, "#"),))]))
        return target

    def accepted(self, bench: Bench) -> list[tuple[str, dict[str, Any]]]:
        queue = f"{bench.prefix}.out"
        depth = bench.route.broker.depth(queue) or 0
        return [(got.properties.message_id, orjson.loads(got.body)["data"])
                for got in take(bench.route.broker, queue, depth)]


@pytest.fixture(params=[RestKind(), SoapKind(), AmqpKind()], ids=["rest", "soap", "amqp"])
def kind(request: pytest.FixtureRequest) -> Kind:
    chosen: Kind = request.param
    return chosen


@contextmanager
def contract_route(kind: Kind, tmp_path: Path, prefix: str, answer: Answer) -> Iterator[Bench]:
    """A running route whose target is ``kind``'s, its peer answering ``answer``."""
    counting = Counting()
    peer = UnixPeer().start()
    try:
        with running_route(tmp_path, prefix, counting) as route:
            peer.answer = answer
            bench = Bench(route, peer, tmp_path, prefix, answer)
            counting.inner = kind.make(bench)
            bench.extra["counting"] = counting
            yield bench
            assert route.worker.wait_idle(5)
            counting.close()
    finally:
        peer.stop()


def send(bench: Bench) -> Envelope:
    envelope = Envelope.new(source="crm/test", type=f"{bench.prefix}.customer.updated",
                            subject=bench.subject, data=dict(ORDER))
    bench.route.send(envelope)
    return envelope


def calls(bench: Bench) -> int:
    counting: Counting = bench.extra["counting"]
    return counting.calls


def test_target_delivers_and_the_route_records_it(kind: Kind, tmp_path: Path,
                                                  prefix: str) -> None:
    with contract_route(kind, tmp_path, prefix, "accept") as bench:
        envelope = send(bench)
        assert wait_until(lambda: bench.route.stores.idempotency.seen(prefix, envelope.id))
        assert kind.accepted(bench) == [(envelope.id, ORDER)]
        assert calls(bench) == 1
        assert bench.route.broker.depth(queue_name(prefix)) == 0
        assert bench.route.broker.depth(dlq_name(prefix)) == 0


def test_target_server_trouble_is_retried_through_the_tiers_then_dead_lettered(
    kind: Kind, tmp_path: Path, prefix: str
) -> None:
    with contract_route(kind, tmp_path, prefix, "trouble") as bench:
        envelope = send(bench)
        (letter,) = take(bench.route.broker, dlq_name(prefix), 1)
        assert calls(bench) == 3  # the first try and two retry tiers
        assert letter.properties.message_id == envelope.id
        assert letter.headers[h.ATTEMPTS] == 2
        assert letter.headers[h.REASON].startswith("retries_exhausted: ")
        assert kind.accepted(bench) == []
        assert not bench.route.stores.idempotency.seen(prefix, envelope.id)


def test_target_refusal_is_dead_lettered_at_once(kind: Kind, tmp_path: Path,
                                                 prefix: str) -> None:
    with contract_route(kind, tmp_path, prefix, "refuse") as bench:
        envelope = send(bench)
        (letter,) = take(bench.route.broker, dlq_name(prefix), 1)
        assert calls(bench) == 1
        assert letter.properties.message_id == envelope.id
        assert letter.headers[h.ATTEMPTS] == 0
        assert letter.headers[h.REASON].startswith("permanent: ")
        assert kind.accepted(bench) == []


def test_target_timeout_is_retried_through_the_tiers_then_dead_lettered(
    kind: Kind, tmp_path: Path, prefix: str
) -> None:
    with contract_route(kind, tmp_path, prefix, "stall") as bench:
        envelope = send(bench)
        (letter,) = take(bench.route.broker, dlq_name(prefix), 1)
        assert calls(bench) == 3
        assert letter.properties.message_id == envelope.id
        assert letter.headers[h.REASON].startswith("retries_exhausted: ")
        assert "timed out" in letter.headers[h.REASON]
