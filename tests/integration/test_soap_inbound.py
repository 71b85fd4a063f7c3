"""SOAP endpoints on the real ingress and the real broker: acks only after confirms, dedupe on
resends, faults for bad input and broker trouble, attacks refused without side effects, a
zeep client built from the endpoint's own WSDL calling it, and authentication (WS-Security
UsernameToken from zeep, HTTP basic), SOAPAction and Salesforce org checks over real HTTP."""

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
from zeep.wsse.username import UsernameToken

from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.helpers import drain, queue_count, wait_until
from tests.integration.rest_helpers import catch_all_route
from tests.integration.soap_helpers import ROOT, broker_proxy, realworld
from tests.sentinels import nobody_connected

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


def shipments(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"type": "soap", "name": f"{prefix}-ship", "path": f"/soap/{prefix}/ship",
            "wsdl": str(SHIPMENTS_WSDL), "system": prefix, **extra,
            "operations": {"ReportShipments": {
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

    def start(*sections: dict[str, Any], routes: bool = True, port: int = 0) -> str:
        loaded = make_config([catch_all_route(prefix)] if routes else [],
                             inbound=list(sections), ingress={"port": port})
        daemon = Daemon(loaded, Role.INGRESS)
        daemon.start()
        started.append(daemon)
        assert daemon.ingress is not None
        return f"http://127.0.0.1:{daemon.ingress.port}"

    yield start
    for daemon in started:
        daemon.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
        assert nobody_connected(listener)  # nobody fetched the external DTD
    assert _stored(amqp_url, prefix) == 0


def test_soap_zeep_client_built_from_the_endpoint_wsdl_calls_it(
    amqp_url: str, prefix: str, ingress: Callable[..., str]
) -> None:
    port = _free_port()
    public = f"http://127.0.0.1:{port}/soap/{prefix}/ship"
    url = ingress(shipments(prefix, public_url=public), port=port) + f"/soap/{prefix}/ship"
    # the address comes from public_url, whatever Host the request names
    wsdl = httpx.get(f"{url}?wsdl", headers={"Host": "attacker.example"}, timeout=10)
    assert b"attacker.example" not in wsdl.content
    assert wsdl.text.count(f'location="{public}"') == 2
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


PASSWORD_ENV = "SB_IT_SOAP_PASSWORD"


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, "it-s3cret")
    return "it-s3cret"


def _shipment(ident: str) -> dict[str, Any]:
    return {"ShipmentId": ident, "OrderNo": "SO-1", "Packages": 1,
            "ShippedAt": "2024-05-01T10:00:00Z"}


def test_soap_wsse_tokens_from_zeep_are_accepted_and_a_replayed_digest_is_refused(
    amqp_url: str, prefix: str, ingress: Callable[..., str], password: str
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/soap/{prefix}/ship"
    ingress(shipments(prefix, public_url=url, auth={
        "scheme": "wsse", "username": "erp", "password_env": PASSWORD_ENV}), port=port)
    # zeep, a real WS-Security client, with PasswordDigest and with PasswordText
    for ident, digest in (("SH-D", True), ("SH-T", False)):
        client = zeep.Client(f"{url}?wsdl", wsse=UsernameToken("erp", password,
                                                               use_digest=digest))
        answer = client.service.ReportShipments(Warehouse="W1", Shipment=[_shipment(ident)])
        assert (answer.Accepted, answer.Count) == (True, 1)
    # a wrong password reaches the zeep caller as a Client fault that names no culprit
    wrong = zeep.Client(f"{url}?wsdl", wsse=UsernameToken("erp", "guess", use_digest=True))
    with pytest.raises(zeep.exceptions.Fault) as caught:
        wrong.service.ReportShipments(Warehouse="W1", Shipment=[_shipment("SH-X")])
    assert (caught.value.code, caught.value.message) == (
        "soapenv:Client", "WS-Security UsernameToken: the user name or password is wrong")
    # When someone who saw a digest request sends the same bytes again
    client = zeep.Client(f"{url}?wsdl", wsse=UsernameToken("erp", password, use_digest=True))
    captured = etree.tostring(client.create_message(
        client.service, "ReportShipments", Warehouse="W1", Shipment=[_shipment("SH-R")]))
    headers = {**TEXT_XML, "SOAPAction": '"urn:silobridge:examples:shipments:ReportShipments"'}
    assert httpx.post(url, content=captured, headers=headers, timeout=10).status_code == 200
    replay = httpx.post(url, content=captured, headers=headers, timeout=10)
    assert _fault(replay) == ("soapenv:Client", "WS-Security UsernameToken: this Nonce was used "
                                                "already; send a fresh nonce with every request")
    # Then only the authenticated requests were stored, each once
    messages = drain(amqp_url, queue_name(f"{prefix}-r"))
    assert [props.message_id for props, _ in messages] == ["SH-D", "SH-T", "SH-R"]


def test_soap_salesforce_with_basic_auth_answers_401_until_the_credentials_fit(
    amqp_url: str, prefix: str, ingress: Callable[..., str], password: str
) -> None:
    url = ingress(salesforce(prefix, auth={"scheme": "basic", "username": "sf",
                                           "password_env": PASSWORD_ENV})) + f"/soap/{prefix}/sf"
    sample = realworld("salesforce-outbound/aspnet-OutboundMessage1.xml").read_bytes()
    for auth in (None, ("sf", "guess"), ("intruder", password)):
        refused = httpx.post(url, content=sample, headers=TEXT_XML, auth=auth, timeout=10)
        assert refused.status_code == 401, auth
        assert refused.headers["www-authenticate"].startswith('Basic realm="silobridge"')
        assert _fault(refused)[0] == "soapenv:Client"
    assert _stored(amqp_url, prefix) == 0
    accepted = httpx.post(url, content=sample, headers=TEXT_XML, auth=("sf", password),
                          timeout=10)
    assert accepted.status_code == 200, accepted.text
    assert _stored(amqp_url, prefix) == 3


def test_soap_action_that_contradicts_the_body_is_refused_and_nothing_is_stored(
    amqp_url: str, prefix: str, ingress: Callable[..., str]
) -> None:
    url = ingress(shipments(prefix)) + f"/soap/{prefix}/ship"
    body = _envelope('<ReportShipments xmlns="urn:silobridge:examples:shipments">'
                     "<Warehouse>W1</Warehouse><Shipment><ShipmentId>SH-A</ShipmentId>"
                     "<OrderNo>SO-1</OrderNo><Packages>1</Packages>"
                     "<ShippedAt>2024-05-01T10:00:00Z</ShippedAt></Shipment></ReportShipments>")
    response = httpx.post(url, content=body, timeout=10,
                          headers={**TEXT_XML, "SOAPAction": '"urn:erp:CancelShipments"'})
    assert response.status_code == 500
    assert _fault(response) == (
        "soapenv:Client", "SOAPAction 'urn:erp:CancelShipments' does not match "
        "'urn:silobridge:examples:shipments:ReportShipments', the soapAction the WSDL declares "
        "for ReportShipments")
    assert _stored(amqp_url, prefix) == 0


def test_soap_salesforce_org_with_the_same_15_characters_and_another_suffix_is_refused(
    amqp_url: str, prefix: str, ingress: Callable[..., str]
) -> None:
    # the sample's org id ends in "NNN"; the org 0123456789ABCDE ends in "AA5"
    url = ingress(salesforce(prefix, organization_id=ORG[:15])) + f"/soap/{prefix}/sf"
    sample = realworld("salesforce-outbound/aspnet-OutboundMessage1.xml").read_bytes()
    response = httpx.post(url, content=sample, headers=TEXT_XML, timeout=10)
    assert _fault(response) == ("soapenv:Client", "OrganizationId does not match the "
                                "organization this endpoint accepts")
    assert _stored(amqp_url, prefix) == 0


def test_soap_salesforce_out_of_range_date_is_a_client_fault_that_is_not_resent(
    amqp_url: str, prefix: str, ingress: Callable[..., str]
) -> None:
    url = ingress(salesforce(prefix, time_field="CloseDate")) + f"/soap/{prefix}/sf"
    body = _envelope(_notifications().replace(
        "<Name></Name>", "<Name>x</Name><CloseDate>1e400</CloseDate>"))
    response = httpx.post(url, content=body, headers=TEXT_XML, timeout=10)
    assert response.status_code == 500
    assert _fault(response) == ("soapenv:Client", "Notification[0]: CloseDate is not a "
                                "date-time in range (ISO 8601 or epoch seconds)")
    assert "retry-after" not in response.headers
    assert "1e400" not in response.text
    assert _stored(amqp_url, prefix) == 0
