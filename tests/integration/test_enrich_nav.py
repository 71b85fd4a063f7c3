"""NAV read-before-update end to end: real RabbitMQ, the worker daemon, zeep against a Customer
page served by spyne. The mapped update has no Key; the enrich step reads it (``Read`` by
``No``) and the target's ``Update`` carries it, so NAV's optimistic concurrency accepts it, every
time, because each update reads the Key the one before left behind. A customer NAV does not
hold is dead-lettered with stage 'enrich' before any Update is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.soap.client import open_service
from adapters.soap.enrich import SoapSystemConfig
from middleware import headers as h
from middleware.broker.ingest import publish_envelopes
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.broker.topology import dlq_name
from middleware.config.loader import LoadedConfig
from middleware.config.models import BrokerConfig
from middleware.daemon import Daemon
from middleware.envelope import Envelope
from middleware.errors import DeliveryError
from tests.integration.helpers import drain, wait_until
from tests.integration.nav_page import running_nav

pytestmark = pytest.mark.integration

MAPPING = """\
mapping: crm-customer-to-nav
source: {system: crm}
target: {system: nav}
fields:
  Customer.No: {from: customer_no, required: true}
  Customer.Name: name
  Customer.Phone_No: phone
"""


def _route(prefix: str, wsdl: Path, url: str) -> dict[str, Any]:
    return {
        "name": f"{prefix}-nav", "bind": [f"{prefix}.customer.*"],
        "mapping": "crm-customer-to-nav.yaml",
        "enrich": [{"system": "nav", "after_mapping": True,
                    "call": {"operation": "Read", "arguments": {"No": "{payload.Customer.No}"}},
                    "select": "Key", "into": "Customer.Key"}],
        "target": {"type": "soap", "wsdl": str(wsdl), "address": url, "operation": "Update",
                   "idempotency": {"header": None}},
    }


def test_enrich_nav_reads_the_key_before_every_update(
    amqp_url: str, prefix: str, tmp_path: Path,
    make_config: Callable[..., LoadedConfig], run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    (tmp_path / "crm-customer-to-nav.yaml").write_text(MAPPING)
    wsdl = tmp_path / "nav-customer-page.wsdl"
    with running_nav(wsdl) as (page, url):
        page.add("C1", "Ada")
        first_key = page.records["C1"]["Key"]
        # the control: NAV refuses an Update without the Key, as the real one does
        service = open_service(SoapSystemConfig(wsdl=str(wsdl), address=url), tmp_path, "nav")
        with pytest.raises(DeliveryError, match="stale or missing") as refused:
            service.call("Update", {"Customer": {"No": "C1", "Name": "Eve"}})
        service.close()
        assert refused.value.retryable is False and page.records["C1"]["Name"] == "Ada"
        page.calls.clear()
        loaded = make_config([_route(prefix, wsdl, url)],
                             systems={"nav": {"type": "soap", "wsdl": str(wsdl), "address": url,
                                              "timeout": 5}})
        run_daemon(loaded)
        # two updates of C1, one after the other: the second needs the Key the first left
        for name in ("Ada Lovelace", "Ada King"):
            publish_envelopes_to(amqp_url, [_event(prefix, "C1", name=name, phone="+44 1")])
            assert wait_until(lambda name=name: page.records["C1"]["Name"] == name, 10)
        assert page.calls == ["Read", "Update", "Read", "Update"]
        assert page.records["C1"]["Phone_No"] == "+44 1"
        assert page.records["C1"]["Key"] not in (first_key, None)
        # a customer NAV does not hold: no Key, so no Update is sent; the letter says why
        missing = _event(prefix, "C404", name="Nobody")
        publish_envelopes_to(amqp_url, [missing])
        letters: list[Any] = []
        assert wait_until(lambda: bool(_letters(amqp_url, prefix, letters)), 10)
        [(props, body)] = letters
        assert props.message_id == missing.id
        assert props.headers[h.STAGE] == "enrich"
        assert props.headers[f"{h.DETAIL}system"] == "nav"
        assert "answered nothing at 'Key'" in props.headers[h.REASON]
        assert json.loads(body)["data"]["customer_no"] == "C404"
        assert page.calls[-2:] == ["Update", "Read"]  # the last Read, and no Update after it


def _event(prefix: str, no: str, **data: Any) -> Envelope:
    return Envelope.new(source="crm/test", type=f"{prefix}.customer.updated", subject=no,
                        data={"customer_no": no, **data})


def _letters(url: str, prefix: str, keep: list[Any]) -> list[Any]:
    keep.extend(drain(url, dlq_name(f"{prefix}-nav")))
    return keep


def publish_envelopes_to(url: str, envelopes: list[Envelope]) -> None:
    publisher = Publisher(BrokerConfig(url=url))
    assert publisher.start(wait=10), "cannot connect to the broker"
    try:
        publish_envelopes(publisher, envelopes, timeout=10)
    finally:
        publisher.stop()
