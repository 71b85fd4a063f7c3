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
from adapters.soap.salesforce import OUTBOUND_NS, SalesforceInbound, full_org_id
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


REAL_ORG = "00D5e000000AbCd"  # an org id shape; its 18-character form ends in "EAK"


def _sample_from(org: str) -> bytes:
    """The real sample as sent by ``org`` (the sample's own id has a made-up suffix)."""
    return realworld(SAMPLE).read_bytes().replace(ORG.encode(), org.encode())


def test_salesforce_full_org_id_follows_the_case_checksum_rule() -> None:
    # the example Salesforce's documentation gives for its 15 -> 18 character conversion
    assert full_org_id("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert full_org_id(REAL_ORG) == "00D5e000000AbCdEAK"
    assert full_org_id("00D5E000000ABCD") == "00D5E000000ABCDUA4"
    assert full_org_id(" 00D5e000000AbCdEAK ") == "00D5e000000AbCdEAK"
    assert [full_org_id(bad) for bad in ("", "00D5e000000AbC", "00D5e000000AbCdE",
                                         "00D5e000000AbC!")] == [None] * 4


@pytest.mark.parametrize(("configured", "sent"), [
    (REAL_ORG, "00D5e000000AbCdEAK"), ("00D5e000000AbCdEAK", "00D5e000000AbCdEAK"),
    ("00D5e000000AbCdEAK", REAL_ORG),
])
def test_salesforce_org_id_matches_in_15_or_18_character_form(
    tmp_path: Path, configured: str, sent: str
) -> None:
    publisher = MemoryPublisher()
    client = _endpoint(tmp_path, publisher, organization_id=configured)
    response = client.post("/soap/sf", content=_sample_from(sent), headers=TEXT_XML)
    assert _ack(response.content) == "true"
    assert publisher.ids == IDS


@pytest.mark.parametrize("sent", [
    "00D5e000000AbCdXYZ",   # the same 15 characters with a suffix that is not this org's
    "00D5E000000ABCDUA4",   # another org: the same 15 characters apart from their case
    "00d5e000000abcdEAK",   # the right suffix on a case-folded id
    "00D5E000000ABCD",      # another org's 15-character form is compared as 18 too
    "00D5e000000AbCdEAK0",  # not an id at all
])
@pytest.mark.parametrize("configured", [REAL_ORG, "00D5e000000AbCdEAK"])
def test_salesforce_org_id_is_compared_on_all_18_characters(
    tmp_path: Path, configured: str, sent: str
) -> None:
    publisher = MemoryPublisher()
    client = _endpoint(tmp_path, publisher, organization_id=configured)
    response = client.post("/soap/sf", content=_sample_from(sent), headers=TEXT_XML)
    assert response.status_code == 500
    assert _faultstring(response.content) == ("OrganizationId does not match the organization "
                                              "this endpoint accepts")
    assert publisher.published == []


@pytest.mark.parametrize("organization_id", ["00D5e000000AbC", "00D5e000000AbCdEA",
                                             "00D5e000000AbC-", "${SF_ORG_ID}"])
def test_salesforce_config_refuses_what_is_no_org_id(organization_id: str) -> None:
    with pytest.raises(ValueError, match="organization_id"):
        SalesforceConfig.model_validate({"type": "salesforce-om", "name": "sf",
                                         "path": "/soap/sf", "organization_id": organization_id})


@pytest.mark.parametrize("value", ["1e400", "-1e400", "nan", "1e20", "99999-01-01T00:00:00Z",
                                   "PERSONAL-VALUE"])
def test_salesforce_bad_date_is_a_client_fault_that_does_not_echo_it(
    tmp_path: Path, value: str
) -> None:
    publisher = MemoryPublisher()
    client = _endpoint(tmp_path, publisher, organization_id=REAL_ORG, entity="account")
    body = (f'<notifications xmlns="{OUTBOUND_NS}"><OrganizationId>{REAL_ORG}</OrganizationId>'
            "<Notification><Id>04l000000000001AAA</Id><sObject><Id>001000000000001AAA</Id>"
            f"<LastModifiedDate>{value}</LastModifiedDate></sObject></Notification>"
            "</notifications>")
    response = client.post("/soap/sf", content=soap11(body), headers=TEXT_XML)
    # Salesforce resends a message for 24 hours after a Server fault, never after a Client one
    assert response.status_code == 500
    assert "soapenv:Client" in response.text
    assert "Retry-After" not in response.headers
    assert _faultstring(response.content) == ("Notification[0]: LastModifiedDate is not a "
                                              "date-time in range (ISO 8601 or epoch seconds)")
    assert value not in response.text
    assert publisher.published == []


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


def test_salesforce_serves_the_generated_wsdl_at_its_configured_public_url(
    tmp_path: Path,
) -> None:
    wsdl = realworld("salesforce-outbound/comsave-Account-outbound.wsdl")
    client = _endpoint(tmp_path, MemoryPublisher(), wsdl=str(wsdl),
                       public_url="https://hooks.example.com/soap/sf")
    # the Host header is the sender's to choose: it must not end up in the served WSDL
    response = client.get("/soap/sf?wsdl", headers={"Host": "attacker.example"})
    assert response.status_code == 200
    address = etree.fromstring(response.content).find(
        ".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address is not None
    assert address.get("location") == "https://hooks.example.com/soap/sf"
    assert b"attacker.example" not in response.content
    assert b"https://some.site" not in response.content


def test_salesforce_without_public_url_serves_the_wsdl_addresses_as_written(
    tmp_path: Path,
) -> None:
    wsdl = realworld("salesforce-outbound/comsave-Account-outbound.wsdl")
    client = _endpoint(tmp_path, MemoryPublisher(), wsdl=str(wsdl))
    response = client.get("/soap/sf?wsdl", headers={"Host": "attacker.example"})
    assert b'location="https://some.site"' in response.content
    assert b"attacker.example" not in response.content


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
    assert _faultstring(response.content) == ("the dedupe store is unavailable; nothing was "
                                              "stored; send it again in 10s")
    assert publisher.published == []
