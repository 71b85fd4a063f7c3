"""The Salesforce Outbound Messaging endpoint against the real sample messages and WSDL.

The broker is an in-memory publisher here (the real-broker tests are in tests/integration):
these tests pin down parsing, the org check, dedupe, acks and faults.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from starlette.testclient import TestClient

from adapters.soap.config import SalesforceConfig
from adapters.soap.protocol import SOAP11_ENV
from adapters.soap.salesforce import OUTBOUND_NS, SalesforceInbound
from middleware.adapter import AdapterContext
from middleware.config.models import BrokerConfig, IngressConfig, StoreConfig
from middleware.errors import ConfigError
from middleware.ingress import Ingress
from middleware.stores import open_stores
from tests.unit.soap.helpers import (
    EXAMPLES,
    TEXT_XML,
    MemoryPublisher,
    endpoint_client,
    realworld,
    soap11,
)

ORG = "0123456789ABCDENNN"
SAMPLE = "salesforce-outbound/aspnet-OutboundMessage1.xml"
EMPTY = "salesforce-outbound/aspnet-OutboundMessage2-empty.xml"
IDS = ["04l37000000L0E5AAK", "14l37000123L0E5AAK", "24l37123450L0E5AAK"]


def _endpoint(tmp_path: Path, publisher: MemoryPublisher, **extra: object) -> TestClient:
    config = SalesforceConfig.model_validate({
        "type": "salesforce-om", "name": "sf", "path": "/soap/sf", "organization_id": ORG,
        **extra})
    return endpoint_client(SalesforceInbound(config), tmp_path, publisher)[0]


def _ack(body: bytes) -> str | None:
    return etree.fromstring(body).findtext(
        f"{{{SOAP11_ENV}}}Body/{{{OUTBOUND_NS}}}notificationsResponse/{{{OUTBOUND_NS}}}Ack")


def _faultstring(body: bytes) -> str:
    return etree.fromstring(body).findtext(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault/"
                                           "faultstring") or ""


def test_salesforce_real_sample_becomes_one_envelope_per_notification(tmp_path: Path) -> None:
    publisher = MemoryPublisher()
    client = _endpoint(tmp_path, publisher)
    response = client.post("/soap/sf", content=realworld(SAMPLE).read_bytes(), headers=TEXT_XML)
    assert response.status_code == 200
    assert _ack(response.content) == "true"
    assert publisher.ids == IDS
    first = publisher.published[0]
    assert first["type"] == "crm.lead1.updated"  # the sample's test-made xsi:type "sf:Lead1"
    assert first["source"] == "crm/salesforce"
    assert first["subject"] == "0123456789ABCDEEAE"
    assert first["time"].startswith("2015-08-14T18:27:02")
    assert first["data"]["Company"] == "Microsoft"
    assert first["data"]["IsConverted"] == "false"
    assert "SessionId" not in str(first)


def test_salesforce_resent_message_publishes_nothing_twice(tmp_path: Path) -> None:
    publisher = MemoryPublisher()
    client = _endpoint(tmp_path, publisher, entity="lead")
    sample = realworld(SAMPLE).read_bytes()
    for _ in range(3):
        assert _ack(client.post("/soap/sf", content=sample, headers=TEXT_XML).content) == "true"
    assert publisher.ids == IDS
    assert {event["type"] for event in publisher.published} == {"crm.lead.updated"}


def test_salesforce_partial_failure_faults_and_the_resend_stores_only_the_rest(
    tmp_path: Path,
) -> None:
    publisher = MemoryPublisher()
    publisher.fail = lambda event: event["id"] == "14l37000123L0E5AAK"
    client = _endpoint(tmp_path, publisher)
    sample = realworld(SAMPLE).read_bytes()
    failed = client.post("/soap/sf", content=sample, headers=TEXT_XML)
    assert failed.status_code == 500
    assert _ack(failed.content) is None
    assert "send it again" in _faultstring(failed.content)
    assert failed.headers["Retry-After"] == "10"
    # When Salesforce resends the whole message and the broker takes it now
    publisher.fail = lambda _event: False
    assert _ack(client.post("/soap/sf", content=sample, headers=TEXT_XML).content) == "true"
    assert publisher.ids == [IDS[0], IDS[2], IDS[1]]


def test_salesforce_wrong_org_is_a_fault_and_stores_nothing(tmp_path: Path) -> None:
    publisher = MemoryPublisher()
    client = _endpoint(tmp_path, publisher, organization_id="00D000000000001")
    response = client.post("/soap/sf", content=realworld(SAMPLE).read_bytes(), headers=TEXT_XML)
    assert response.status_code == 500
    assert "OrganizationId does not match" in _faultstring(response.content)
    assert publisher.published == []


def test_salesforce_org_id_matches_in_15_or_18_character_form(tmp_path: Path) -> None:
    publisher = MemoryPublisher()
    client = _endpoint(tmp_path, publisher, organization_id=ORG[:15])
    response = client.post("/soap/sf", content=realworld(SAMPLE).read_bytes(), headers=TEXT_XML)
    assert _ack(response.content) == "true"


def test_salesforce_empty_notifications_are_acked_without_storing(tmp_path: Path) -> None:
    publisher = MemoryPublisher()
    client = _endpoint(tmp_path, publisher)
    response = client.post("/soap/sf", content=realworld(EMPTY).read_bytes(), headers=TEXT_XML)
    assert response.status_code == 200
    assert _ack(response.content) == "true"
    assert publisher.published == []


@pytest.mark.parametrize(("body", "text"), [
    ('<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
     f"<OrganizationId>{ORG}</OrganizationId><Notification><Id>04l000000000001AAA</Id>"
     "</Notification></notifications>", "Notification[0] needs an Id and an sObject"),
    ('<other xmlns="urn:x"/>', "expected {http://soap.sforce.com/2005/09/outbound}notifications"),
    ('<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
     f"<OrganizationId>{ORG}</OrganizationId>"
     + "<Notification><Id>x</Id><sObject/></Notification>" * 101 + "</notifications>",
     "101 notifications; Salesforce sends at most 100"),
])
def test_salesforce_malformed_notifications_get_client_faults(
    tmp_path: Path, body: str, text: str
) -> None:
    publisher = MemoryPublisher()
    client = _endpoint(tmp_path, publisher)
    response = client.post("/soap/sf", content=soap11(body), headers=TEXT_XML)
    assert response.status_code == 500
    assert text in _faultstring(response.content)
    assert "soapenv:Client" in response.text
    assert publisher.published == []


def test_salesforce_serves_the_generated_wsdl_pointing_at_itself(tmp_path: Path) -> None:
    wsdl = realworld("salesforce-outbound/comsave-Account-outbound.wsdl")
    client = _endpoint(tmp_path, MemoryPublisher(), wsdl=str(wsdl))
    response = client.get("/soap/sf?wsdl")
    assert response.status_code == 200
    address = etree.fromstring(response.content).find(
        ".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address is not None
    assert address.get("location") == "http://testserver/soap/sf"
    assert b"https://some.site" not in response.content


def test_salesforce_start_refuses_a_wsdl_that_is_not_an_outbound_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a Salesforce Outbound Message WSDL"):
        _endpoint(tmp_path, MemoryPublisher(),
                  wsdl=str(EXAMPLES / "soap-inbound" / "shipments.wsdl"))


def test_salesforce_two_endpoints_on_one_path_fail_the_start(tmp_path: Path) -> None:
    config = SalesforceConfig.model_validate({
        "type": "salesforce-om", "name": "sf", "path": "/soap/sf", "organization_id": ORG})
    stores = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    ingress = Ingress(IngressConfig(port=0))
    context = AdapterContext(MemoryPublisher(), BrokerConfig(), stores,  # type: ignore[arg-type]
                             tmp_path, ingress)
    SalesforceInbound(config).start(context)
    with pytest.raises(ConfigError, match="path '/soap/sf' is already served"):
        SalesforceInbound(config.model_copy(update={"name": "sf2"})).start(context)


def test_salesforce_dedupe_store_failure_is_a_server_fault(tmp_path: Path) -> None:
    publisher = MemoryPublisher()
    client, stores = endpoint_client(SalesforceInbound(SalesforceConfig.model_validate({
        "type": "salesforce-om", "name": "sf", "path": "/soap/sf", "organization_id": ORG})),
        tmp_path, publisher)
    stores.idempotency.close()  # the store is gone
    response = client.post("/soap/sf", content=realworld(SAMPLE).read_bytes(), headers=TEXT_XML)
    assert response.status_code == 500
    assert _faultstring(response.content) == ("the dedupe store is unavailable; send it again "
                                              "later")
    assert publisher.published == []
