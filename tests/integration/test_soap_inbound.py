"""SOAP endpoints on the real ingress and the real broker: acks only after confirms, dedupe on
resends, faults for bad input and broker trouble, attacks refused without side effects, and a
zeep client built from the endpoint's own WSDL calling it."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zeep
from lxml import etree

from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.helpers import drain, queue_count, wait_until
from tests.integration.rest_helpers import catch_all_route
from tests.integration.soap_helpers import ROOT, broker_proxy, realworld

pytestmark = pytest.mark.integration

ORG = "0123456789ABCDENNN"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SF_NS = "http://soap.sforce.com/2005/09/outbound"
TEXT_XML = {"Content-Type": "text/xml; charset=utf-8"}
SHIPMENTS_WSDL = ROOT / "mappings" / "examples" / "soap-inbound" / "shipments.wsdl"


def salesforce(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"type": "salesforce-om", "name": f"{prefix}-sf", "path": f"/soap/{prefix}/sf",
            "organization_id": ORG, "system": prefix, "entity": "lead",
            "max_body_bytes": 65536, "max_depth": 32, **extra}


def shipments(prefix: str) -> dict[str, Any]:
    return {"type": "soap", "name": f"{prefix}-ship", "path": f"/soap/{prefix}/ship",
            "wsdl": str(SHIPMENTS_WSDL), "system": prefix, "operations": {"ReportShipments": {
                "each": "Shipment",
                "derive": {"entity": {"value": "shipment"}, "action": {"value": "reported"},
                           "subject": {"path": "OrderNo"}, "id": {"path": "ShipmentId"}},
                "reply": {"Accepted": True, "Count": "{count}"}}}}


@pytest.fixture
def ingress(
    make_config: Callable[..., LoadedConfig], prefix: str
) -> Iterator[Callable[..., str]]:
    """Start an ingress-only daemon with the given inbound sections; return its base URL."""
    started: list[Daemon] = []

    def start(*sections: dict[str, Any], routes: bool = True) -> str:
        loaded = make_config([catch_all_route(prefix)] if routes else [],
                             inbound=list(sections))
        daemon = Daemon(loaded, Role.INGRESS)
        daemon.start()
        started.append(daemon)
        assert daemon.ingress is not None
        return f"http://127.0.0.1:{daemon.ingress.port}"

    yield start
    for daemon in started:
        daemon.stop()


def _stored(amqp_url: str, prefix: str) -> int:
    return queue_count(amqp_url, queue_name(f"{prefix}-r"))


def _fault(response: httpx.Response) -> tuple[str, str]:
    fault = etree.fromstring(response.content).find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert fault is not None, response.text
    return fault.findtext("faultcode") or "", fault.findtext("faultstring") or ""


def test_soap_salesforce_sample_is_acked_after_its_notifications_are_in_rabbitmq(
    amqp_url: str, prefix: str, ingress: Callable[..., str]
) -> None:
    url = ingress(salesforce(prefix)) + f"/soap/{prefix}/sf"
    sample = realworld("salesforce-outbound/aspnet-OutboundMessage1.xml").read_bytes()
    response = httpx.post(url, content=sample, headers=TEXT_XML, timeout=10)
    assert response.status_code == 200
    assert etree.fromstring(response.content).findtext(
        f".//{{{SF_NS}}}notificationsResponse/{{{SF_NS}}}Ack") == "true"
    # the ack came after the confirms: the three notifications are already queued
    assert _stored(amqp_url, prefix) == 3
    # When Salesforce resends the same message (it retries for 24 hours)
    for _ in range(2):
        assert httpx.post(url, content=sample, headers=TEXT_XML, timeout=10).status_code == 200
    messages = drain(amqp_url, queue_name(f"{prefix}-r"))
    assert [props.message_id for props, _ in messages] == [
        "04l37000000L0E5AAK", "14l37000123L0E5AAK", "24l37123450L0E5AAK"]
    assert {props.type for props, _ in messages} == {f"{prefix}.lead.updated"}


def test_soap_salesforce_wrong_org_gets_a_fault_and_nothing_is_stored(
    amqp_url: str, prefix: str, ingress: Callable[..., str]
) -> None:
    url = ingress(salesforce(prefix, organization_id="00D5e000000AbCd")) + f"/soap/{prefix}/sf"
    sample = realworld("salesforce-outbound/aspnet-OutboundMessage1.xml").read_bytes()
    response = httpx.post(url, content=sample, headers=TEXT_XML, timeout=10)
    assert response.status_code == 500
    assert _fault(response) == ("soapenv:Client", "OrganizationId does not match the "
                                "organization this endpoint accepts")
    assert _stored(amqp_url, prefix) == 0


def test_soap_broker_loss_is_a_server_fault_and_the_resend_is_acked(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig]
) -> None:
    sample = realworld("salesforce-outbound/aspnet-OutboundMessage1.xml").read_bytes()
    with broker_proxy(amqp_url) as (proxy, proxied_url):
        loaded = make_config([catch_all_route(prefix)], inbound=[salesforce(prefix)],
                             broker={"url": proxied_url, "publish_timeout": 3,
                                     "reconnect_max_delay": 0.5})
        daemon = Daemon(loaded, Role.INGRESS)
        daemon.start()
        try:
            assert daemon.ingress is not None
            url = f"http://127.0.0.1:{daemon.ingress.port}/soap/{prefix}/sf"
            # When the broker connection is lost, Salesforce gets a Server fault, not an Ack
            proxy.cut()
            assert wait_until(lambda: not daemon.publisher.connected, 10)
            response = httpx.post(url, content=sample, headers=TEXT_XML, timeout=15)
            assert response.status_code == 500
            code, text = _fault(response)
            assert code == "soapenv:Server"
            assert "send it again" in text
            assert response.headers["retry-after"] == "10"
            assert _stored(amqp_url, prefix) == 0
            # Then the broker is back and Salesforce's resend is stored and acked
            proxy.restore()
            assert wait_until(lambda: daemon.publisher.connected, 20)
            again = httpx.post(url, content=sample, headers=TEXT_XML, timeout=15)
            assert again.status_code == 200, again.text
            assert _stored(amqp_url, prefix) == 3
        finally:
            daemon.stop()


def _envelope(body: str) -> bytes:
    return (f'<soapenv:Envelope xmlns:soapenv="{SOAP11}"><soapenv:Body>{body}'
            "</soapenv:Body></soapenv:Envelope>").encode()


def _notifications(extra: str = "") -> str:
    return (f'<notifications xmlns="{SF_NS}"><OrganizationId>{ORG}</OrganizationId>'
            f"<Notification><Id>04l000000000001AAA</Id><sObject><Name>{extra}</Name></sObject>"
            "</Notification></notifications>")


def test_soap_attacks_are_refused_fast_and_without_side_effects(
    amqp_url: str, prefix: str, ingress: Callable[..., str], tmp_path: Path
) -> None:
    url = ingress(salesforce(prefix)) + f"/soap/{prefix}/sf"
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        laughs = "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10))
        attacks = {
            "billion-laughs": f'<!DOCTYPE e [<!ENTITY l0 "lol">{laughs}]>'
                              + _envelope(_notifications("&l9;")).decode(),
            "quadratic": f'<!DOCTYPE e [<!ENTITY a "{"x" * 20000}">]>'
                         + _envelope(_notifications("&a;" * 2000)).decode(),
            "xxe-local-file": f'<!DOCTYPE e [<!ENTITY s SYSTEM "file://{secret}">]>'
                              + _envelope(_notifications("&s;")).decode(),
            "external-dtd": f'<!DOCTYPE e SYSTEM "http://127.0.0.1:{port}/evil.dtd">'
                            + _envelope(_notifications()).decode(),
            "too-deep": _envelope(_notifications("<a>" * 40 + "</a>" * 40)).decode(),
            "oversized": _envelope(_notifications("x" * 70000)).decode(),
        }
        for name, document in attacks.items():
            started = time.perf_counter()
            response = httpx.post(url, content=document.encode(), headers=TEXT_XML, timeout=10)
            took = time.perf_counter() - started
            code, text = _fault(response)
            assert code == "soapenv:Client", name
            assert took < 1.0, (name, took)
            assert "TOP-SECRET" not in response.text, name
            assert response.status_code == (413 if name == "oversized" else 500), name
            assert ("DTD" in text) if name not in ("too-deep", "oversized") else True, name
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody fetched the external DTD
    assert _stored(amqp_url, prefix) == 0


def test_soap_zeep_client_built_from_the_endpoint_wsdl_calls_it(
    amqp_url: str, prefix: str, ingress: Callable[..., str]
) -> None:
    url = ingress(shipments(prefix)) + f"/soap/{prefix}/ship"
    client = zeep.Client(f"{url}?wsdl")
    shipment = {"ShipmentId": "SH-1", "OrderNo": "SO-1", "Packages": 1,
                "ShippedAt": "2024-05-01T10:00:00Z"}
    answer = client.service.ReportShipments(Warehouse="W1", Shipment=[
        shipment, {**shipment, "ShipmentId": "SH-2", "OrderNo": "SO-2"}])
    assert (answer.Accepted, answer.Count) == (True, 2)
    # the same service through its SOAP 1.2 binding
    soap12 = client.bind("ShipmentService", "ShipmentSoap12")
    again = soap12.ReportShipments(Warehouse="W1", Shipment=[{**shipment, "ShipmentId": "SH-3"}])
    assert (again.Accepted, again.Count) == (True, 1)
    messages = drain(amqp_url, queue_name(f"{prefix}-r"))
    assert [props.message_id for props, _ in messages] == ["SH-1", "SH-2", "SH-3"]
    assert {props.type for props, _ in messages} == {f"{prefix}.shipment.reported"}
    # a Client fault reaches the zeep caller as zeep.exceptions.Fault
    with pytest.raises(zeep.exceptions.Fault) as caught:
        client.service.ReportShipments(Warehouse="W1", Shipment=[{**shipment, "Packages": "two"}])
    assert caught.value.code == "soapenv:Client"
    assert caught.value.message == ("invalid ReportShipments request: ReportShipments.Shipment."
                                    "Packages: the value is not valid for its XML Schema type")
