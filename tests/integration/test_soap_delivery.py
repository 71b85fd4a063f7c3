"""Routes delivering to the demo SOAP ERP through the real broker and the zeep target:
Client faults dead-letter at once with the fault in the headers, Server faults are retried,
a lost answer is retried without creating a second order, and returned ids reach the xref store.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest

from middleware import headers as h
from middleware.broker import dlq
from middleware.broker.topology import EVENTS_EXCHANGE, dlq_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon
from middleware.envelope import Envelope
from middleware.log import configure_logging
from silobridge_demo.erp_server import DemoErpServer
from tests.integration.helpers import queue_count, wait_until, waiting
from tests.integration.soap_helpers import ERP_WSDL, ROOT, running_erp

pytestmark = pytest.mark.integration

MAPPING = ROOT / "mappings" / "examples" / "soap-erp" / "order-to-create-sales-order.yaml"
ORDER = json.loads((ROOT / "mappings" / "crm-erp" / "samples" / "crm-order-won.json")
                   .read_text())


@pytest.fixture
def erp() -> Iterator[DemoErpServer]:
    with running_erp() as server:
        yield server


@pytest.fixture
def worker(
    make_config: Callable[..., LoadedConfig], prefix: str, erp: DemoErpServer,
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> Callable[..., Daemon]:
    def start(**target: Any) -> Daemon:
        route = {"name": f"{prefix}-so", "bind": [f"{prefix}.order.*"], "mapping": str(MAPPING),
                 "target": {"type": "soap", "wsdl": str(ERP_WSDL),
                            "operation": "CreateSalesOrder", "address": erp.url,
                            "idempotency": {"argument": "RequestId"}, **target}}
        return run_daemon(make_config([route]))

    return start


def publish_order(amqp_url: str, prefix: str, **changes: Any) -> Envelope:
    envelope = Envelope.new(source="crm/test", type=f"{prefix}.order.created",
                            subject=ORDER["opportunity_id"], data={**ORDER, **changes})
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(EVENTS_EXCHANGE, envelope.type, envelope.to_json(),
                          pika.BasicProperties(**envelope.amqp_properties(), delivery_mode=2))
    connection.close()
    return envelope


def _order_xref(daemon: Daemon) -> str | None:
    return daemon.stores.xref.lookup("crm.order", ORDER["opportunity_id"], "erp.sales_order")


def test_soap_delivery_stores_the_erp_order_id_in_the_xref_store(
    amqp_url: str, prefix: str, worker: Callable[..., Daemon], erp: DemoErpServer
) -> None:
    daemon = worker()
    envelope = publish_order(amqp_url, prefix)
    assert wait_until(lambda: _order_xref(daemon) is not None, 15)
    [(order_id, order)] = erp.state.orders.items()
    assert _order_xref(daemon) == order_id
    assert order["RequestId"] == envelope.id
    assert order["Currency"] == "EUR"
    assert [line["Sku"] for line in order["Lines"]] == ["SKU-100", "SKU-200", "SKU-300"]


def test_soap_delivery_client_fault_goes_to_the_dlq_at_once_with_the_fault(
    amqp_url: str, prefix: str, worker: Callable[..., Daemon], erp: DemoErpServer
) -> None:
    daemon = worker()
    route = f"{prefix}-so"
    envelope = publish_order(amqp_url, prefix, currency="xxx")
    assert wait_until(lambda: queue_count(amqp_url, dlq_name(route)) == 1, 15)
    [letter] = dlq.browse(daemon.config.broker, dlq_name(route))
    assert letter.message_id == envelope.id
    assert letter.attempts == 0
    assert letter.headers[h.ERROR] == "DeliveryError"
    assert letter.headers["x-sb-detail-fault_code"] == "soap11env:Client.UnknownCurrency"
    assert letter.headers["x-sb-detail-fault_string"] == "currency 'XXX' is not accepted"
    assert "<field>Currency</field>" in letter.headers["x-sb-detail-fault_detail"]
    assert letter.headers["x-sb-detail-operation"] == "CreateSalesOrder"
    # (a sentinel order, faulted once as retryable, takes the retry path behind any retry)
    erp.state.fail_next("CreateSalesOrder", 1)
    sentinel = publish_order(amqp_url, prefix)
    assert wait_until(lambda: len(erp.state.orders) == 1, 15)
    assert erp.state.calls == [("CreateSalesOrder", envelope.id)] + [  # not retried
        ("CreateSalesOrder", sentinel.id)] * 2
    assert [order["RequestId"] for order in erp.state.orders.values()] == [sentinel.id]
    assert waiting(amqp_url, route, 3) == {}


def test_soap_delivery_server_fault_is_retried_then_delivered_once(
    amqp_url: str, prefix: str, worker: Callable[..., Daemon], erp: DemoErpServer
) -> None:
    erp.state.fail_next("CreateSalesOrder", 2)
    daemon = worker()
    envelope = publish_order(amqp_url, prefix)
    assert wait_until(lambda: _order_xref(daemon) is not None, 20)
    assert erp.state.calls == [("CreateSalesOrder", envelope.id)] * 3
    assert len(erp.state.orders) == 1
    assert queue_count(amqp_url, dlq_name(f"{prefix}-so")) == 0


def test_soap_delivery_lost_answer_is_retried_without_a_second_order(
    amqp_url: str, prefix: str, worker: Callable[..., Daemon], erp: DemoErpServer
) -> None:
    # Given an ERP that creates the order but answers after the adapter gave up waiting
    erp.state.delay_next("CreateSalesOrder", 1.5)
    daemon = worker(timeout=0.5)
    envelope = publish_order(amqp_url, prefix)
    # Then the retry carries the same RequestId and the ERP answers the first order's id
    assert wait_until(lambda: _order_xref(daemon) is not None, 20)
    assert erp.state.calls == [("CreateSalesOrder", envelope.id)] * 2
    [order_id] = erp.state.orders
    assert _order_xref(daemon) == order_id


def test_start_warns_about_a_soap_target_without_an_idempotency_argument(
    worker: Callable[..., Daemon], prefix: str,
) -> None:
    out = io.StringIO()
    configure_logging(json=True, level="info", stream=out)
    try:
        worker(idempotency={"argument": None})
    finally:
        configure_logging(json=True, level="warning")
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    advice = [line for line in lines if line.get("event") == "target advice"]
    assert [line["route"] for line in advice] == [f"{prefix}-so"]
    assert advice[0]["level"] == "warning"
    assert "gets no idempotency key in the message" in advice[0]["advice"]
