"""The WSDL-generated SOAP endpoint: strict reading, derivation, replies, faults, start checks."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapters.soap.config import SoapEndpointConfig
from adapters.soap.inbound import SoapInbound
from adapters.soap.protocol import SOAP11_ENV, SOAP12_ENV
from middleware.errors import ConfigError
from middleware.log import configure_logging
from tests.unit.soap.helpers import EXAMPLES, TEXT_XML, MemoryPublisher, endpoint_client, soap11

WSDL = EXAMPLES / "soap-inbound" / "shipments.wsdl"
NS = "urn:silobridge:examples:shipments"


def _config(**extra: Any) -> SoapEndpointConfig:
    section: dict[str, Any] = {
        "type": "soap", "name": "ship", "path": "/soap/ship", "wsdl": str(WSDL),
        "system": "erp",
        "operations": {"ReportShipments": {
            "each": "Shipment",
            "derive": {"entity": {"value": "shipment"}, "action": {"value": "reported"},
                       "subject": {"path": "OrderNo"}, "time": {"path": "ShippedAt"},
                       "id": {"path": "ShipmentId"}},
            "reply": {"Accepted": True, "Count": "{count}"}}},
    }
    section.update(extra)
    return SoapEndpointConfig.model_validate(section)


def _shipment(ident: str, packages: str = "2", order: str = "<OrderNo>SO-1</OrderNo>") -> str:
    return (f"<Shipment><ShipmentId>{ident}</ShipmentId>{order}<Packages>{packages}</Packages>"
            "<ShippedAt>2024-05-01T10:00:00Z</ShippedAt></Shipment>")


def _request(*shipments: str) -> str:
    return f'<ReportShipments xmlns="{NS}"><Warehouse>W1</Warehouse>{"".join(shipments)}' \
           "</ReportShipments>"


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
def client(tmp_path: Path, publisher: MemoryPublisher) -> Any:
    return endpoint_client(SoapInbound(_config()), tmp_path, publisher)[0]


def _fault(response: Any) -> str:
    return etree.fromstring(response.content).findtext(
        f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault/faultstring") or ""


def test_inbound_publishes_one_envelope_per_item_and_answers_the_wsdl_response(
    client: Any, publisher: MemoryPublisher
) -> None:
    response = client.post("/soap/ship", content=soap11(_request(_shipment("S1"),
                                                                 _shipment("S2"))),
                           headers=TEXT_XML)
    assert response.status_code == 200, response.text
    answer = etree.fromstring(response.content)[0][0]
    assert answer.tag == f"{{{NS}}}ReportShipmentsResponse"
    assert [child.text for child in answer] == ["true", "2"]
    assert publisher.ids == ["S1", "S2"]
    event = publisher.published[0]
    assert event["type"] == "erp.shipment.reported"
    assert event["source"] == "erp/ship"
    assert event["subject"] == "SO-1"
    assert event["time"] == "2024-05-01T10:00:00Z"
    assert event["data"] == {"ShipmentId": "S1", "OrderNo": "SO-1", "Carrier": None,
                             "Packages": 2, "ShippedAt": "2024-05-01T10:00:00+00:00"}


def test_inbound_resend_with_source_ids_is_not_published_again(
    client: Any, publisher: MemoryPublisher
) -> None:
    body = soap11(_request(_shipment("S1")))
    for _ in range(2):
        assert client.post("/soap/ship", content=body, headers=TEXT_XML).status_code == 200
    assert publisher.ids == ["S1"]


def test_inbound_soap12_request_is_answered_in_soap12(
    client: Any, publisher: MemoryPublisher
) -> None:
    body = (f'<e:Envelope xmlns:e="{SOAP12_ENV}"><e:Body>{_request(_shipment("S3"))}</e:Body>'
            "</e:Envelope>").encode()
    response = client.post("/soap/ship", content=body,
                           headers={"Content-Type": "application/soap+xml; charset=utf-8"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/soap+xml")
    assert etree.fromstring(response.content).tag == f"{{{SOAP12_ENV}}}Envelope"
    assert publisher.ids == ["S3"]


@pytest.mark.parametrize(("request_body", "text"), [
    (_request(_shipment("S1", order="")),
     "invalid ReportShipments request: Unexpected element '{urn:silobridge:examples:shipments}"
     "Packages', expected '{urn:silobridge:examples:shipments}OrderNo'"),
    (_request(_shipment("S1", packages="two")),
     "ReportShipments.Shipment.Packages: the value is not valid for its XML Schema type"),
    (_request(), "Expected at least 1 items (minOccurs check)"),
    ('<Unknown xmlns="urn:x"/>',
     "no operation of this endpoint takes {urn:x}Unknown; accepted: "),
    ("", "the Body is empty; expected one of ReportShipments"),
], ids=["unexpected", "mistyped", "missing", "unknown-operation", "empty"])
def test_inbound_invalid_request_is_a_client_fault_with_a_precise_string(
    client: Any, publisher: MemoryPublisher, request_body: str, text: str
) -> None:
    response = client.post("/soap/ship", content=soap11(request_body), headers=TEXT_XML)
    assert response.status_code == 500
    assert "soapenv:Client" in response.text
    assert text in _fault(response)
    assert "two" not in _fault(response)  # values are not echoed back
    assert publisher.published == []


def test_inbound_wrong_content_type_and_declared_oversize_are_refused_unread(
    tmp_path: Path, publisher: MemoryPublisher
) -> None:
    client, _ = endpoint_client(SoapInbound(_config(max_body_bytes=2000)), tmp_path, publisher)
    wrong = client.post("/soap/ship", content=soap11(_request(_shipment("S1"))),
                        headers={"Content-Type": "application/json"})
    assert wrong.status_code == 415
    assert "is not SOAP" in _fault(wrong)
    big = client.post("/soap/ship", content=b"<" * 3000, headers=TEXT_XML)
    assert big.status_code == 413
    assert "exceeds 2000 bytes" in _fault(big)
    assert publisher.published == []


def _locations(content: bytes) -> list[str | None]:
    return [node.get("location") for node in etree.fromstring(content).iter(
        "{http://schemas.xmlsoap.org/wsdl/soap/}address",
        "{http://schemas.xmlsoap.org/wsdl/soap12/}address")]


def test_inbound_serves_its_wsdl_at_the_configured_public_url_not_the_host_header(
    tmp_path: Path, publisher: MemoryPublisher
) -> None:
    public = "https://soap.example.com/erp/ship"
    client, _ = endpoint_client(SoapInbound(_config(public_url=public)), tmp_path, publisher)
    response = client.get("/soap/ship?WSDL", headers={"Host": "attacker.example"})
    assert response.status_code == 200
    assert _locations(response.content) == [public] * 2
    assert b"attacker.example" not in response.content


def test_inbound_without_public_url_serves_the_wsdl_file_addresses(client: Any) -> None:
    response = client.get("/soap/ship?wsdl", headers={"Host": "attacker.example"})
    assert _locations(response.content) == ["http://localhost/soap/shipments"] * 2


def test_inbound_wsdl_is_rendered_once_not_per_get(
    tmp_path: Path, publisher: MemoryPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = endpoint_client(SoapInbound(_config(public_url="https://x.example/s")),
                                tmp_path, publisher)
    first = client.get("/soap/ship?wsdl").content
    serialized: list[object] = []
    original = etree.tostring

    def counting(*args: Any, **kwargs: Any) -> Any:
        serialized.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(etree, "tostring", counting)
    for _ in range(20):
        assert client.get("/soap/ship?wsdl").content == first
    assert serialized == []  # no copy, no serialization per (unauthenticated) GET


@pytest.mark.parametrize("public_url", ["soap.example.com/x", "ftp://h/x", "https:///x",
                                        "https://h/x?wsdl"])
def test_inbound_public_url_must_be_an_absolute_http_url(public_url: str) -> None:
    with pytest.raises(ValueError, match="public_url"):
        _config(public_url=public_url)


ACTION = "urn:silobridge:examples:shipments:ReportShipments"


@pytest.mark.parametrize("headers", [
    {"SOAPAction": f'"{ACTION}"'}, {"SOAPAction": ACTION}, {"SOAPAction": '""'}, {},
], ids=["quoted", "bare", "empty", "absent"])
def test_inbound_soap11_action_that_matches_or_declares_nothing_is_accepted(
    client: Any, publisher: MemoryPublisher, headers: dict[str, str]
) -> None:
    response = client.post("/soap/ship", content=soap11(_request(_shipment("S1"))),
                           headers={**TEXT_XML, **headers})
    assert response.status_code == 200, response.text
    assert publisher.ids == ["S1"]


def test_inbound_soap11_action_mismatch_is_a_client_fault_naming_both(
    client: Any, publisher: MemoryPublisher
) -> None:
    response = client.post("/soap/ship", content=soap11(_request(_shipment("S1"))),
                           headers={**TEXT_XML, "SOAPAction": '"urn:x:DeleteEverything"'})
    assert response.status_code == 500
    assert "soapenv:Client" in response.text
    assert _fault(response) == (f"SOAPAction 'urn:x:DeleteEverything' does not match "
                                f"'{ACTION}', the soapAction the WSDL declares for "
                                "ReportShipments")
    assert publisher.published == []


def test_inbound_soap11_action_in_the_fault_is_a_short_excerpt(client: Any) -> None:
    sent = "urn:x:" + "A" * 5000
    response = client.post("/soap/ship", content=soap11(_request(_shipment("S1"))),
                           headers={**TEXT_XML, "SOAPAction": sent})
    assert "urn:x:AAAA" in _fault(response)
    assert "(5006 characters)" in _fault(response)
    assert len(_fault(response)) < 300


def _soap12(body: str) -> bytes:
    return (f'<e:Envelope xmlns:e="{SOAP12_ENV}"><e:Body>{body}</e:Body></e:Envelope>').encode()


def test_inbound_soap12_action_parameter_is_checked(
    client: Any, publisher: MemoryPublisher
) -> None:
    media = "application/soap+xml; charset=utf-8"
    wrong = client.post("/soap/ship", content=_soap12(_request(_shipment("S1"))),
                        headers={"Content-Type": f'{media}; action="urn:x:Other"'})
    assert wrong.status_code == 400  # SOAP 1.2 Sender fault
    reason = etree.fromstring(wrong.content).findtext(f".//{{{SOAP12_ENV}}}Text") or ""
    assert reason.startswith("SOAPAction 'urn:x:Other' does not match")
    assert publisher.published == []
    for content_type in (f'{media}; action="{ACTION}"', media):
        right = client.post("/soap/ship", content=_soap12(_request(_shipment("S2"))),
                            headers={"Content-Type": content_type})
        assert right.status_code == 200, right.text
    assert publisher.ids == ["S2"]


def test_inbound_start_reports_unknown_operations_and_bad_replies(tmp_path: Path) -> None:
    config = _config(operations={
        "ReportShipment": {"derive": {"entity": {"value": "s"}, "action": {"value": "a"}}},
        "ReportShipments": {"derive": {"entity": {"value": "s"}, "action": {"value": "a"}},
                            "reply": {"Accepted": True, "Bogus": 1}},
    })
    with pytest.raises(ConfigError) as caught:
        endpoint_client(SoapInbound(config), tmp_path, MemoryPublisher())
    text = str(caught.value)
    assert "operations.ReportShipment: the WSDL has no operation 'ReportShipment' " \
           "(did you mean 'ReportShipments'?)" in text
    assert "operations.ReportShipments.reply: does not render" in text


def test_inbound_start_names_the_file_of_a_broken_wsdl(tmp_path: Path) -> None:
    broken = tmp_path / "broken.wsdl"
    broken.write_text("<definitions xmlns='http://schemas.xmlsoap.org/wsdl/'><oops></definitions>")
    with pytest.raises(ConfigError) as caught:
        endpoint_client(SoapInbound(_config(wsdl=str(broken))), tmp_path, MemoryPublisher())
    assert str(caught.value).startswith(f"{broken}: wsdl: cannot load the WSDL: ")


def test_inbound_never_logs_the_value_of_a_mistyped_field(client: Any) -> None:
    out = io.StringIO()
    configure_logging(json=True, level="debug", stream=out)
    try:
        body = soap11(_request(_shipment("S1", packages="PERSONAL-VALUE")))
        assert client.post("/soap/ship", content=body, headers=TEXT_XML).status_code == 500
    finally:
        configure_logging(json=True, level="warning")
    assert "ReportShipments.Shipment.Packages" in out.getvalue()
    assert "PERSONAL-VALUE" not in out.getvalue()
