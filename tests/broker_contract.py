"""The broker contract suite, written once and run against every implementation.

``tests/unit/test_broker_memory.py`` runs it on the in-memory broker (milliseconds);
``tests/integration/test_broker_contract.py`` on the real RabbitMQ. A behaviour the memory broker
shows but RabbitMQ does not (or the reverse) fails one of the two, so the unit tier cannot
drift from the broker it stands in for. Each subclass provides the ``harness`` fixture.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pytest

from middleware.broker.contract import Broker, Delivery, Record
from middleware.broker.properties import Properties
from middleware.broker.topology import ExchangeSpec, QueueSpec, Topology
from middleware.errors import PublishNacked, PublishReturned, TopologyConflict

WAIT = 10.0


@dataclass
class Harness:
    """A broker of the implementation under test and a name prefix unique to the test."""

    broker: Broker
    prefix: str
    declared: list[Topology] = field(default_factory=list)

    def declare(self, topology: Topology) -> None:
        self.declared.append(topology)  # the implementation's fixture deletes these after
        self.broker.declare(topology)


class Collector:
    """A handler that keeps deliveries (settling them only when told to)."""

    def __init__(self, settle: Callable[[Delivery], None] | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self._settle = settle
        self._changed = threading.Condition()

    def __call__(self, delivery: Delivery) -> None:
        with self._changed:
            self.deliveries.append(delivery)
            self._changed.notify_all()
        if self._settle is not None:
            self._settle(delivery)

    def wait_for(self, count: int, timeout: float = WAIT) -> list[Delivery]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.deliveries) >= count, timeout)
            return list(self.deliveries)


def _ack(delivery: Delivery) -> None:
    delivery.ack()


def _quorum(**extra: Any) -> dict[str, Any]:
    return {"x-queue-type": "quorum", **extra}


def _confirmed(future: Future[Any]) -> Any:
    return future.result(WAIT)


class BrokerContract:
    """Behaviour the pipeline, the ingress and the targets rely on, for every broker."""

    @pytest.fixture
    def harness(self) -> Harness:
        raise NotImplementedError  # each implementation's test class provides it

    def _consume(self, harness: Harness, queues: dict[str, Collector], prefetch: int = 10,
                 before_ack: Callable[[list[Record]], Future[None]] | None = None) -> Any:
        consumer = harness.broker.consumer(dict(queues), prefetch=prefetch,
                                           before_ack=before_ack, name="contract")
        assert consumer.start(wait=WAIT)
        return consumer

    def _publisher(self, harness: Harness) -> Any:
        publisher = harness.broker.publisher(name="contract")
        assert publisher.start(wait=WAIT)
        return publisher

    def test_broker_topic_routing_with_star_and_hash(self, harness: Harness) -> None:
        p = harness.prefix
        harness.declare(Topology([ExchangeSpec(f"{p}.x")], [
            QueueSpec(f"{p}.one", _quorum(), ((f"{p}.x", "crm.*.updated"),)),
            QueueSpec(f"{p}.many", _quorum(), ((f"{p}.x", "crm.#"),)),
        ]))
        publisher = self._publisher(harness)
        for key in ("crm.customer.updated", "crm.order.line.updated", "crm"):
            _confirmed(publisher.publish(f"{p}.x", key, key.encode(), Properties(message_id=key)))
        one, many = Collector(_ack), Collector(_ack)
        consumer = self._consume(harness, {f"{p}.one": one, f"{p}.many": many})
        try:
            many.wait_for(3)
            time.sleep(0.2)  # anything wrongly routed to "one" would have arrived by now
            assert [d.body for d in one.deliveries] == [b"crm.customer.updated"]
            assert sorted(d.body for d in many.deliveries) == [
                b"crm", b"crm.customer.updated", b"crm.order.line.updated"]
        finally:
            consumer.stop()
            publisher.stop()

    def test_broker_unroutable_goes_to_the_alternate_exchange(self, harness: Harness) -> None:
        p = harness.prefix
        harness.declare(Topology(
            [ExchangeSpec(f"{p}.ae", "fanout"),
             ExchangeSpec(f"{p}.x", "topic", {"alternate-exchange": f"{p}.ae"})],
            [QueueSpec(f"{p}.unrouted", _quorum(), ((f"{p}.ae", ""),))]))
        publisher = self._publisher(harness)
        _confirmed(publisher.publish(f"{p}.x", "nobody.listens", b"{}", Properties()))
        unrouted = Collector(_ack)
        consumer = self._consume(harness, {f"{p}.unrouted": unrouted})
        try:
            assert [d.body for d in unrouted.wait_for(1)] == [b"{}"]
        finally:
            consumer.stop()
            publisher.stop()

    def test_broker_mandatory_unroutable_is_returned(self, harness: Harness) -> None:
        p = harness.prefix
        harness.declare(Topology([ExchangeSpec(f"{p}.x")], []))
        publisher = self._publisher(harness)
        try:
            with pytest.raises(PublishReturned) as returned:
                _confirmed(publisher.publish(f"{p}.x", "no.route", b"{}",
                                             Properties(message_id="lost")))
            assert returned.value.routing_key == "no.route"
            # not mandatory: confirmed and dropped, as AMQP says
            assert _confirmed(publisher.publish(f"{p}.x", "no.route", b"{}", Properties(),
                                                mandatory=False, result="ok")) == "ok"
        finally:
            publisher.stop()

    @pytest.mark.parametrize(("kind", "taken"), [("classic", 1), ("quorum", 2)])
    def test_broker_full_reject_publish_queue_nacks(
        self, harness: Harness, kind: str, taken: int
    ) -> None:
        # a quorum queue (RabbitMQ 3.10) takes one message over its limit, a classic one none
        p = harness.prefix
        harness.declare(Topology([], [QueueSpec(f"{p}.small", {
            "x-queue-type": kind, "x-max-length": 1, "x-overflow": "reject-publish"})]))
        publisher = self._publisher(harness)
        try:
            for n in range(taken):
                _confirmed(publisher.publish("", f"{p}.small", str(n).encode(), Properties()))
            with pytest.raises(PublishNacked):
                _confirmed(publisher.publish("", f"{p}.small", b"over", Properties()))
        finally:
            publisher.stop()

    def test_broker_properties_arrive_as_sent(self, harness: Harness) -> None:
        p = harness.prefix
        harness.declare(Topology([], [QueueSpec(f"{p}.q", _quorum())]))
        publisher = self._publisher(harness)
        sent = Properties(message_id="m-1", correlation_id="c-1", type="crm.customer.updated",
                          content_type="application/cloudevents+json", timestamp=1_700_000_000,
                          headers={"x-silobridge-attempts": 2, "nested": {"a": "b"}})
        _confirmed(publisher.publish("", f"{p}.q", b"body", sent))
        got = Collector(_ack)
        consumer = self._consume(harness, {f"{p}.q": got})
        try:
            delivery = got.wait_for(1)[0]
            assert delivery.body == b"body" and not delivery.redelivered
            props = delivery.properties
            assert (props.message_id, props.correlation_id, props.type, props.content_type,
                    props.timestamp, props.delivery_mode) == (
                "m-1", "c-1", "crm.customer.updated", "application/cloudevents+json",
                1_700_000_000, 2)
            assert props.headers["x-silobridge-attempts"] == 2
            assert props.headers["nested"] == {"a": "b"}
        finally:
            consumer.stop()
            publisher.stop()

    def test_broker_prefetch_bounds_unsettled_deliveries(self, harness: Harness) -> None:
        p = harness.prefix
        harness.declare(Topology([], [QueueSpec(f"{p}.q", _quorum())]))
        publisher = self._publisher(harness)
        for n in range(5):
            _confirmed(publisher.publish("", f"{p}.q", str(n).encode(), Properties()))
        held = Collector()  # settles nothing by itself
        consumer = self._consume(harness, {f"{p}.q": held}, prefetch=2)
        try:
            held.wait_for(2)
            time.sleep(0.3)
            assert len(held.deliveries) == 2
            held.deliveries[0].ack()
            assert len(held.wait_for(3)) == 3
            time.sleep(0.2)
            assert len(held.deliveries) == 3
            assert [d.body for d in held.deliveries] == [b"0", b"1", b"2"]
        finally:
            consumer.stop()
            publisher.stop()

    def test_broker_nack_requeues_with_redelivered_and_delivery_count(
        self, harness: Harness
    ) -> None:
        # Given a quorum queue that allows one return before it dead-letters
        p = harness.prefix
        harness.declare(Topology([], [
            QueueSpec(f"{p}.q", _quorum(**{
                "x-delivery-limit": 1, "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": f"{p}.dlq",
                "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})),
            QueueSpec(f"{p}.dlq", _quorum()),
        ]))
        publisher = self._publisher(harness)
        _confirmed(publisher.publish("", f"{p}.q", b"poison", Properties(message_id="m")))
        # When every delivery is nacked
        nacking = Collector(lambda d: d.nack())
        dead = Collector(_ack)
        consumer = self._consume(harness, {f"{p}.q": nacking, f"{p}.dlq": dead})
        try:
            # Then it comes back once, marked, and then goes to the DLQ with its death recorded
            letter = dead.wait_for(1)[0]
            first, second = nacking.deliveries[:2]
            assert (first.redelivered, second.redelivered) == (False, True)
            assert "x-delivery-count" not in first.headers
            assert second.headers["x-delivery-count"] == 1
            assert len(nacking.deliveries) == 2
            death = letter.headers["x-death"][0]
            assert (death["queue"], death["reason"], death["count"]) == (
                f"{p}.q", "delivery_limit", 1)
            assert letter.headers["x-first-death-reason"] == "delivery_limit"
            assert letter.properties.message_id == "m"
        finally:
            consumer.stop()
            publisher.stop()

    def test_broker_ttl_dead_letters_back_to_the_route(self, harness: Harness) -> None:
        # Given a delay queue (a retry tier) whose expired messages go back to the route queue
        p = harness.prefix
        harness.declare(Topology([], [
            QueueSpec(f"{p}.route", _quorum()),
            QueueSpec(f"{p}.retry", _quorum(**{
                "x-message-ttl": 200, "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": f"{p}.route",
                "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})),
        ]))
        publisher = self._publisher(harness)
        route = Collector(_ack)
        consumer = self._consume(harness, {f"{p}.route": route})
        try:
            started = time.monotonic()
            _confirmed(publisher.publish("", f"{p}.retry", b"later",
                                         Properties(message_id="r", headers={"keep": "me"})))
            # Then it arrives after the TTL, not before, with one expiry recorded
            delivery = route.wait_for(1)[0]
            assert time.monotonic() - started >= 0.15
            death = delivery.headers["x-death"][0]
            assert (death["queue"], death["reason"], death["count"]) == (
                f"{p}.retry", "expired", 1)
            assert death["routing-keys"] == [f"{p}.retry"]
            assert delivery.headers["keep"] == "me"
            assert delivery.properties.message_id == "r"
        finally:
            consumer.stop()
            publisher.stop()

    def test_broker_stop_returns_unsettled_messages_as_redelivered(
        self, harness: Harness
    ) -> None:
        p = harness.prefix
        harness.declare(Topology([], [QueueSpec(f"{p}.q", _quorum())]))
        publisher = self._publisher(harness)
        _confirmed(publisher.publish("", f"{p}.q", b"again", Properties()))
        first = Collector()
        consumer = self._consume(harness, {f"{p}.q": first})
        first.wait_for(1)
        consumer.stop()
        second = Collector(_ack)
        consumer = self._consume(harness, {f"{p}.q": second})
        try:
            delivery = second.wait_for(1)[0]
            assert delivery.body == b"again" and delivery.redelivered
        finally:
            consumer.stop()
            publisher.stop()

    def test_broker_pause_of_several_queues_confirms_promptly_and_nothing_follows(
        self, harness: Harness
    ) -> None:
        # Given a consumer of three queues (a daemon consumes every route's queue on one channel)
        p = harness.prefix
        names = [f"{p}.q{n}" for n in range(3)]
        harness.declare(Topology([], [QueueSpec(name, _quorum()) for name in names]))
        collectors = {name: Collector(_ack) for name in names}
        consumer = self._consume(harness, collectors)
        publisher = self._publisher(harness)
        try:
            # When it pauses
            started = time.monotonic()
            assert consumer.pause(timeout=5)
            # Then every cancel is confirmed at once (one CancelOk per queue), not at the timeout
            assert time.monotonic() - started < 2
            for name in names:
                _confirmed(publisher.publish("", name, b"after", Properties()))
        finally:
            consumer.stop()
        # And what was published after the pause went to nobody (the first consumer acks
        # whatever reaches it): a new consumer finds every message still in its queue
        again = {name: Collector(_ack) for name in names}
        consumer = self._consume(harness, again)
        try:
            for name in names:
                assert [d.body for d in again[name].wait_for(1)] == [b"after"]
            assert not any(c.deliveries for c in collectors.values())
        finally:
            consumer.stop()
            publisher.stop()

    def test_broker_records_commit_before_acks_or_the_messages_return(
        self, harness: Harness
    ) -> None:
        p = harness.prefix
        harness.declare(Topology([], [QueueSpec(f"{p}.q", _quorum())]))
        publisher = self._publisher(harness)
        _confirmed(publisher.publish("", f"{p}.q", b"x", Properties()))
        committed: list[list[Record]] = []
        failures = [RuntimeError("store down")]

        def before_ack(records: list[Record]) -> Future[None]:
            done: Future[None] = Future()
            if failures:
                done.set_exception(failures.pop())
            else:
                committed.append(records)
                done.set_result(None)
            return done

        got = Collector(lambda d: d.ack(("route", "id-1")))
        consumer = self._consume(harness, {f"{p}.q": got}, before_ack=before_ack)
        try:
            # the first commit fails, so the ack becomes a requeue; the second one holds
            deliveries = got.wait_for(2)
            assert [d.redelivered for d in deliveries[:2]] == [False, True]
            deadline = time.monotonic() + WAIT
            while not committed and time.monotonic() < deadline:
                time.sleep(0.02)
            assert committed == [[("route", "id-1")]]
        finally:
            consumer.stop()
            publisher.stop()

    def test_broker_stop_waits_for_a_commit_in_progress_and_sends_its_acks(
        self, harness: Harness
    ) -> None:
        # Given a message acked with a record whose commit is still running (a slow store)
        p = harness.prefix
        harness.declare(Topology([], [QueueSpec(f"{p}.q", _quorum())]))
        publisher = self._publisher(harness)
        _confirmed(publisher.publish("", f"{p}.q", b"x", Properties()))

        def slow_commit(records: list[Record]) -> Future[None]:
            done: Future[None] = Future()
            threading.Timer(0.5, done.set_result, (None,)).start()
            return done

        got = Collector(lambda d: d.ack(("route", "id-1")))
        consumer = self._consume(harness, {f"{p}.q": got}, before_ack=slow_commit)
        got.wait_for(1)
        # When the consumer stops at once (a drained daemon stopping)
        consumer.stop()
        # Then the ack went out after the commit: the message does not come back, the sentinel
        # published after it is the first thing a new consumer sees
        _confirmed(publisher.publish("", f"{p}.q", b"sentinel", Properties()))
        again = Collector(_ack)
        consumer = self._consume(harness, {f"{p}.q": again})
        try:
            assert [d.body for d in again.wait_for(1)][:1] == [b"sentinel"]
        finally:
            consumer.stop()
            publisher.stop()

    def test_broker_declare_conflict_names_the_queue(self, harness: Harness) -> None:
        p = harness.prefix
        harness.declare(Topology([], [QueueSpec(f"{p}.q", _quorum(**{"x-delivery-limit": 3}))]))
        harness.declare(Topology([], [QueueSpec(f"{p}.q", _quorum(**{"x-delivery-limit": 3}))]))
        with pytest.raises(TopologyConflict) as conflict:
            harness.broker.declare(Topology([], [QueueSpec(f"{p}.q", _quorum(**{
                "x-delivery-limit": 5}))]))
        assert conflict.value.queue == f"{p}.q"
        assert "x-delivery-limit" in str(conflict.value)
