"""Issue 11.1: one request with a 300-character id used to end the broker I/O thread.

Each inbound adapter now refuses a value AMQP cannot carry (over 255 bytes as message_id,
correlation_id, type or routing key) with 400 or a Client fault naming the field, and the daemon
then accepts and publishes the next valid request. Real ingress, real RabbitMQ.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import zeep
from lxml import etree
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import Response

from middleware.broker.topology import queue_name
from middleware.cli import main
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.helpers import drain, queue_count, wait_until
from tests.integration.rest_helpers import Peer, catch_all_route, endpoint, hmac_hex, json_response
from tests.integration.soap_helpers import ROOT

pytestmark = pytest.mark.integration

LONG = "L" * 300
SECRET = "s3cret-short-strings"
ORG = "0123456789ABCDENNN"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SF_NS = "http://soap.sforce.com/2005/09/outbound"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
TEXT_XML = {"Content-Type": "text/xml; charset=utf-8"}
SHIPMENTS_WSDL = ROOT / "mappings" / "examples" / "soap-inbound" / "shipments.wsdl"


@pytest.fixture
def ingress(
    make_config: Callable[..., LoadedConfig], prefix: str
) -> Iterator[Callable[..., tuple[Daemon, str]]]:
    """An ingress-only daemon with the given inbound sections: (daemon, base URL)."""
    started: list[Daemon] = []

    def start(*sections: dict[str, Any]) -> tuple[Daemon, str]:
        daemon = Daemon(make_config([catch_all_route(prefix)], inbound=list(sections)),
                        Role.INGRESS)
        daemon.start()
        started.append(daemon)
        assert daemon.ingress is not None
        return daemon, f"http://127.0.0.1:{daemon.ingress.port}"

    yield start
    for daemon in started:
        daemon.stop()


def _stored(amqp_url: str, prefix: str) -> int:
    return queue_count(amqp_url, queue_name(f"{prefix}-r"))


def _fault(response: httpx.Response) -> tuple[str, str]:
    fault = etree.fromstring(response.content).find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert fault is not None, response.text
    return fault.findtext("faultcode") or "", fault.findtext("faultstring") or ""


def _still_ready(daemon: Daemon) -> None:
    assert all(daemon.readiness().values()), daemon.readiness()
    assert daemon.broker.thread.is_alive()


def test_rest_signed_delivery_id_of_300_characters_is_a_400_and_the_next_is_published(
    amqp_url: str, prefix: str, ingress: Callable[..., tuple[Daemon, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(f"{prefix.upper()}_SECRET", SECRET)
    section = endpoint(prefix, "gh", auth={"scheme": "github",
                                           "secret_env": f"{prefix.upper()}_SECRET"})
    daemon, base = ingress(section)
    url = base + section["path"]
    body = json.dumps({"action": "opened", "number": 7}).encode()
    signed = {"Content-Type": "application/json",
              "X-Hub-Signature-256": f"sha256={hmac_hex(SECRET, body)}"}
    # When a correctly signed delivery carries a 300-character delivery id
    bad = httpx.post(url, content=body, headers={**signed, "X-GitHub-Delivery": LONG},
                     timeout=10)
    # Then it is refused, naming the field, the limit and the fix; nothing is stored
    assert bad.status_code == 400, bad.text
    answer = bad.json()
    assert (answer["field"], answer["limit"]) == ("id", 255)
    assert "300 bytes" in answer["detail"] and "shorter" in answer["detail"]
    assert _stored(amqp_url, prefix) == 0
    # And the next valid delivery is accepted and published
    good = httpx.post(url, content=body, headers={**signed, "X-GitHub-Delivery": f"{prefix}-1"},
                      timeout=10)
    assert good.status_code == 202, good.text
    assert wait_until(lambda: _stored(amqp_url, prefix) == 1, 5)
    _still_ready(daemon)


def test_soap_derived_id_of_300_characters_is_a_client_fault_and_the_next_is_published(
    amqp_url: str, prefix: str, ingress: Callable[..., tuple[Daemon, str]],
) -> None:
    daemon, base = ingress({
        "type": "soap", "name": f"{prefix}-ship", "path": f"/soap/{prefix}/ship",
        "wsdl": str(SHIPMENTS_WSDL), "system": prefix, "operations": {"ReportShipments": {
            "each": "Shipment",
            "derive": {"entity": {"value": "shipment"}, "action": {"value": "reported"},
                       "subject": {"path": "OrderNo"}, "id": {"path": "ShipmentId"}},
            "reply": {"Accepted": True, "Count": "{count}"}}}})
    # the WSDL file names http://localhost (port 80); call the endpoint where it listens
    service = zeep.Client(f"{base}/soap/{prefix}/ship?wsdl").create_service(
        "{urn:silobridge:examples:shipments}ShipmentSoap11", f"{base}/soap/{prefix}/ship")
    shipment = {"ShipmentId": LONG, "OrderNo": "SO-1", "Packages": 1,
                "ShippedAt": "2024-05-01T10:00:00Z"}
    with pytest.raises(zeep.exceptions.Fault) as caught:
        service.ReportShipments(Warehouse="W1", Shipment=[shipment])
    assert caught.value.code == "soapenv:Client"
    assert caught.value.message.startswith("id is 300 bytes long")
    assert "255 bytes" in caught.value.message
    assert _stored(amqp_url, prefix) == 0
    answer = service.ReportShipments(Warehouse="W1",
                                            Shipment=[{**shipment, "ShipmentId": "SH-1"}])
    assert (answer.Accepted, answer.Count) == (True, 1)
    assert [p.message_id for p, _ in drain(amqp_url, queue_name(f"{prefix}-r"))] == ["SH-1"]
    _still_ready(daemon)


def _notification(ident: str, sobject_type: str) -> bytes:
    return (f'<soapenv:Envelope xmlns:soapenv="{SOAP11}"><soapenv:Body>'
            f'<notifications xmlns="{SF_NS}"><OrganizationId>{ORG}</OrganizationId>'
            f"<Notification><Id>{ident}</Id>"
            f'<sObject xmlns:xsi="{XSI}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com" '
            f'xsi:type="sf:{sobject_type}"><sf:Name>Acme</sf:Name></sObject>'
            "</Notification></notifications></soapenv:Body></soapenv:Envelope>").encode()


@pytest.mark.parametrize(("ident", "sobject_type", "named"), [
    (LONG, "Lead", "Notification[0]: the Id is too long: id is 300 bytes"),
    ("04l000000000001AAA", "X" * 300, "Notification[0]: the sObject xsi:type is too long: "
                                      "type is"),
], ids=["notification-id", "xsi-type"])
def test_salesforce_value_of_300_characters_is_a_client_fault_and_the_next_is_acked(
    amqp_url: str, prefix: str, ingress: Callable[..., tuple[Daemon, str]],
    ident: str, sobject_type: str, named: str,
) -> None:
    daemon, base = ingress({
        "type": "salesforce-om", "name": f"{prefix}-sf", "path": f"/soap/{prefix}/sf",
        "organization_id": ORG, "system": prefix, "max_body_bytes": 65536, "max_depth": 32})
    url = f"{base}/soap/{prefix}/sf"
    bad = httpx.post(url, content=_notification(ident, sobject_type), headers=TEXT_XML,
                     timeout=10)
    assert bad.status_code == 500
    code, text = _fault(bad)
    assert code == "soapenv:Client"
    assert text.startswith(named), text
    assert _stored(amqp_url, prefix) == 0
    good = httpx.post(url, content=_notification("04l000000000002AAA", "Lead"),
                      headers=TEXT_XML, timeout=10)
    assert good.status_code == 200, good.text
    assert etree.fromstring(good.content).findtext(f".//{{{SF_NS}}}Ack") == "true"
    messages = drain(amqp_url, queue_name(f"{prefix}-r"))
    assert [(p.message_id, p.type) for p, _ in messages] == [
        ("04l000000000002AAA", f"{prefix}.lead.updated")]
    _still_ready(daemon)


def _skipped(poller: str) -> float:
    return REGISTRY.get_sample_value("silobridge_rejected_total", {
        "endpoint": poller, "adapter": "poll", "reason": "field_too_long"}) or 0.0


def test_poller_skips_a_record_with_a_300_character_id_and_publishes_the_rest(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
) -> None:
    records = [{"sku": "P-1"}, {"sku": LONG}, {"sku": "P-3"}]

    async def api(_request: Request, _body: bytes) -> Response:
        return json_response({"items": records})

    with Peer(api) as server:
        loaded = make_config([catch_all_route(prefix)], inbound=[{
            "type": "poll", "name": f"{prefix}-products", "schedule": "0 2 * * *",
            "system": prefix, "url": f"{server.url}/products", "records": "items",
            "pagination": {"style": "none"},
            "derive": {"entity": {"value": "product"}, "action": {"value": "upserted"},
                       "subject": {"path": "sku"}, "id": {"path": "sku"}}}])
        before = _skipped(f"{prefix}-products")
        # When one record of the page has an id AMQP cannot carry, the run still succeeds
        assert main(["poll", f"{prefix}-products", "--once", "-c", str(loaded.path)]) == 0
    # Then the others are published, and the skipped one is counted
    messages = drain(amqp_url, queue_name(f"{prefix}-r"))
    assert [p.message_id for p, _ in messages] == ["P-1", "P-3"]
    assert _skipped(f"{prefix}-products") == before + 1
