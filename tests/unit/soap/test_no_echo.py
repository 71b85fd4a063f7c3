"""Faults and log lines never carry what the sender sent beyond a short excerpt.

zeep and lxml quote the input in their error texts (a value that failed conversion, a tag name
of any length); a fault or a log line that repeats it hands payload (possibly personal data)
to whoever reads the sender's error log or ours.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapters.soap.config import SoapEndpointConfig
from adapters.soap.inbound import SoapInbound
from adapters.soap.protocol import SOAP11_ENV, excerpt
from middleware.log import configure_logging
from tests.unit.soap.helpers import TEXT_XML, MemoryPublisher, endpoint_client, soap11

SECRET = "PERSONAL-4111111111111111"
WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:tns="urn:t" targetNamespace="urn:t">
  <wsdl:types>
    <xsd:schema targetNamespace="urn:t" elementFormDefault="qualified">
      <xsd:element name="Book"><xsd:complexType><xsd:sequence>
        <xsd:element name="Ref" type="xsd:string"/>
        <xsd:element name="Amount" type="xsd:decimal"/>
      </xsd:sequence><xsd:attribute name="Lines" type="xsd:int"/></xsd:complexType></xsd:element>
    </xsd:schema>
  </wsdl:types>
  <wsdl:message name="BookIn"><wsdl:part name="p" element="tns:Book"/></wsdl:message>
  <wsdl:portType name="P"><wsdl:operation name="Book"><wsdl:input message="tns:BookIn"/>
    </wsdl:operation></wsdl:portType>
  <wsdl:binding name="B" type="tns:P">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="Book"><soap:operation soapAction="urn:t:Book"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input></wsdl:operation></wsdl:binding>
  <wsdl:service name="S"><wsdl:port name="P" binding="tns:B">
    <soap:address location="http://localhost/book"/></wsdl:port></wsdl:service>
</wsdl:definitions>
"""


@pytest.fixture
def client(tmp_path: Path) -> Any:
    wsdl = tmp_path / "book.wsdl"
    wsdl.write_text(WSDL)
    config = SoapEndpointConfig.model_validate({
        "type": "soap", "name": "book", "path": "/soap/book", "wsdl": str(wsdl), "system": "erp",
        "operations": {"Book": {"derive": {"entity": {"value": "booking"},
                                           "action": {"value": "made"}}}}})
    return endpoint_client(SoapInbound(config), tmp_path, MemoryPublisher())[0]


def _fault(response: Any) -> tuple[str, str]:
    fault = etree.fromstring(response.content).find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    assert fault is not None, response.text
    return fault.findtext("faultcode") or "", fault.findtext("faultstring") or ""


def _logged(client: Any, body: bytes) -> tuple[Any, str]:
    """Post ``body`` with every log (structlog and stdlib, zeep's too) captured at debug."""
    out = io.StringIO()
    configure_logging(json=True, level="debug", stream=out)
    handler = logging.StreamHandler(out)
    logging.getLogger("zeep").addHandler(handler)
    try:
        response = client.post("/soap/book", content=body, headers=TEXT_XML)
    finally:
        logging.getLogger("zeep").removeHandler(handler)
        configure_logging(json=True, level="warning")
    return response, out.getvalue()


def test_no_echo_bad_decimal_is_a_client_fault_without_the_value(client: Any) -> None:
    # zeep lets decimal.InvalidOperation escape: it used to become a retryable Server fault
    response, logs = _logged(client, soap11(
        f'<Book xmlns="urn:t"><Ref>R1</Ref><Amount>{SECRET}</Amount></Book>'))
    assert _fault(response) == ("soapenv:Client", "invalid Book request: a value does not fit "
                                "its XML Schema type (InvalidOperation)")
    assert SECRET not in response.text
    assert SECRET not in logs


def test_no_echo_bad_attribute_value_is_not_logged_by_zeep(client: Any) -> None:
    response, logs = _logged(client, soap11(
        f'<Book xmlns="urn:t" Lines="{SECRET}"><Ref>R1</Ref><Amount>1.5</Amount></Book>'))
    assert SECRET not in response.text
    assert SECRET not in logs


@pytest.mark.parametrize("document", [
    soap11(f'<{"N" * 5000} xmlns="urn:t"/>'),
    f'<{"N" * 5000}><a></b></{"N" * 5000}>'.encode(),
    f'<e:Envelope xmlns:e="urn:{"N" * 5000}"><e:Body/></e:Envelope>'.encode(),
], ids=["unknown-operation", "malformed", "not-soap"])
def test_no_echo_sender_names_in_faults_are_bounded(client: Any, document: bytes) -> None:
    response, logs = _logged(client, document)
    code, text = _fault(response)
    assert code in ("soapenv:Client", "soapenv:VersionMismatch")
    assert "N" * 200 not in text
    assert "N" * 200 not in logs
    assert len(text) < 400


def test_no_echo_excerpt_is_short_and_printable() -> None:
    assert excerpt("urn:a") == "urn:a"
    assert excerpt("a\nb\x00c") == "a?b?c"
    assert excerpt("x" * 100, 10) == "xxxxxxxxxx... (100 characters)"
