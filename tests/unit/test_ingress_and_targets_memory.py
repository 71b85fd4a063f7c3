"""The REST ingress and the AMQP target on the in-memory broker: an accepted webhook is a
confirmed message in the route queue, an unconfirmed one is a 503; the target's delivery is
the broker's confirm (routed by the topology it declares, failed when unroutable)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from adapters.amqp.config import AmqpTargetConfig
from adapters.amqp.outbound import AmqpTarget
from adapters.rest import RestInbound
from adapters.rest.inbound_config import RestEndpointConfig
from middleware.adapter import AdapterContext
from middleware.broker.memory import MemoryBroker
from middleware.broker.topology import UNROUTED, queue_name, topology_for
from middleware.config.models import BrokerConfig, Config, IngressConfig, StoreConfig
from middleware.envelope import Envelope
from middleware.errors import PublishReturned
from middleware.ingress import Ingress
from middleware.stores import open_stores
from tests.unit.pipeline_helpers import take


@pytest.fixture
def broker(prefix: str) -> Iterator[MemoryBroker]:
    config = Config.model_validate({"routes": [
        {"name": prefix, "bind": ["crm.customer.*"], "target": {"type": "amqp"}}]})
    broker = MemoryBroker(topology_for(config))
    yield broker
    broker.close()


def _webhook(broker: MemoryBroker, tmp_path: Path) -> tuple[TestClient, AdapterContext]:
    publisher = broker.publisher()
    publisher.start()
    ingress = Ingress(IngressConfig(port=0))
    stores = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    context = AdapterContext(publisher, BrokerConfig(publish_timeout=2), stores, tmp_path,
                             ingress, messaging=broker)
    RestInbound(RestEndpointConfig.model_validate({
        "type": "rest", "name": "hook", "path": "/hook", "system": "crm",
        "derive": {"entity": {"value": "customer"}, "action": {"value": "updated"}},
    })).start(context)
    return TestClient(Starlette(routes=ingress.routes)), context


def test_rest_ingress_answers_202_after_the_event_reached_the_route_queue(
    broker: MemoryBroker, tmp_path: Path, prefix: str
) -> None:
    client, _context = _webhook(broker, tmp_path)
    response = client.post("/hook", json={"id": "evt-1", "customer_no": "C-1"})
    assert response.status_code == 202, response.text
    (delivery,) = take(broker, queue_name(prefix), 1)
    event = orjson.loads(delivery.body)
    assert event["type"] == "crm.customer.updated"
    assert event["data"] == {"id": "evt-1", "customer_no": "C-1"}
    assert delivery.properties.message_id == event["id"]
    assert delivery.properties.type == "crm.customer.updated"
    assert delivery.properties.delivery_mode == 2
    assert broker.depth(UNROUTED) == 0


def test_rest_ingress_answers_503_when_the_broker_cannot_confirm(
    broker: MemoryBroker, tmp_path: Path, prefix: str
) -> None:
    client, context = _webhook(broker, tmp_path)
    context.publisher.stop()
    response = client.post("/hook", json={"id": "evt-2", "customer_no": "C-2"})
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert broker.depth(queue_name(prefix)) == 0


def _amqp_target(broker: MemoryBroker, prefix: str, **extra: object) -> AmqpTarget:
    target = AmqpTarget(AmqpTargetConfig.model_validate({
        "type": "amqp", "exchange": f"{prefix}.out", "routing_key": "erp.account", **extra}))
    publisher = broker.publisher()
    publisher.start()
    target.start(AdapterContext(publisher, BrokerConfig(), None, Path("."),  # type: ignore[arg-type]
                                messaging=broker))
    return target


def test_amqp_target_delivers_on_the_confirm_into_the_queue_it_declared(
    broker: MemoryBroker, prefix: str
) -> None:
    target = _amqp_target(broker, prefix, queue=f"{prefix}.out")
    source = Envelope.new(source="crm/test", type="crm.customer.updated", subject="C-9",
                          data={"customer_no": "C-9"})
    target.deliver(source, {"account": "A-9"}).result(5)
    (delivery,) = take(broker, f"{prefix}.out", 1)
    sent = orjson.loads(delivery.body)
    assert sent["data"] == {"account": "A-9"} and sent["causationid"] == source.id
    assert delivery.properties.type == "erp.account"


def test_amqp_target_fails_the_delivery_when_nothing_is_bound(
    broker: MemoryBroker, prefix: str
) -> None:
    target = _amqp_target(broker, prefix)  # an exchange with no queue bound
    source = Envelope.new(source="crm/test", type="crm.customer.updated", subject="C-1",
                          data={})
    with pytest.raises(PublishReturned):
        target.deliver(source, {"x": 1}).result(5)
