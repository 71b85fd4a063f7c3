"""The seam itself: contracts resolve at run time, properties translate losslessly to pika,
and the topology is declared once however many connections start."""

from __future__ import annotations

import dataclasses
import typing

from middleware.adapter import AdapterContext
from middleware.broker.contract import Broker, Publisher
from middleware.broker.memory import MemoryBroker
from middleware.broker.properties import Properties
from middleware.broker.rabbitmq.convert import from_pika, to_pika
from middleware.broker.topology import QueueSpec, Topology
from middleware.config.models import BrokerConfig


def test_adapter_context_type_hints_resolve_at_run_time() -> None:
    hints = typing.get_type_hints(AdapterContext)
    assert hints["publisher"] is Publisher
    assert hints["broker"] is BrokerConfig
    assert hints["messaging"] == Broker | None


def test_properties_round_trip_through_pika() -> None:
    sent = Properties(message_id="m", correlation_id="c", type="t", content_type="ct",
                      timestamp=5, delivery_mode=2, headers={"a": {"b": 1}})
    wire = to_pika(sent)
    assert wire.message_id == "m" and wire.headers == {"a": {"b": 1}}
    assert from_pika(wire) == sent
    assert to_pika(Properties()).headers is None  # no empty table on the wire


def test_properties_round_trip_carries_every_field() -> None:
    """The converters name each field (they run per message): a new field must be added."""
    values = {f.name: f"v-{f.name}" for f in dataclasses.fields(Properties)}
    values["headers"] = {"h": "1"}
    sent = Properties(**values)
    assert from_pika(to_pika(sent)) == sent


def test_memory_broker_declares_its_topology_once_for_all_clients(prefix: str) -> None:
    broker = MemoryBroker(Topology([], [QueueSpec(f"{prefix}.q", {"x-queue-type": "quorum"})]))
    try:
        publisher = broker.publisher()
        consumer = broker.consumer({f"{prefix}.q": lambda d: d.ack()}, prefetch=1)
        assert publisher.start() and consumer.start()
        assert broker.declarations == 1
        consumer.stop()
    finally:
        broker.close()
