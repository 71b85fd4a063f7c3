"""SOAP envelopes are checked precisely and faults follow each version's HTTP binding."""

from __future__ import annotations

import pytest
from lxml import etree

from adapters.rest.signatures import AuthError
from adapters.soap.protocol import (
    SOAP11_ENV,
    SOAP12_ENV,
    SoapFault,
    SoapVersion,
    fault_document,
    response_document,
    split_envelope,
)
from adapters.soap.xmlsafe import XmlRejected
from middleware.errors import Refused, SilobridgeError


def _envelope(ns: str, inner: str) -> etree._Element:
    return etree.fromstring(f'<e:Envelope xmlns:e="{ns}">{inner}</e:Envelope>')


@pytest.mark.parametrize(("ns", "version"), [(SOAP11_ENV, SoapVersion.V11),
                                             (SOAP12_ENV, SoapVersion.V12)])
def test_split_envelope_detects_version_and_first_body_element(
    ns: str, version: SoapVersion
) -> None:
    message = split_envelope(_envelope(ns, '<e:Header><h xmlns="urn:h"/></e:Header>'
                                           '<e:Body><op xmlns="urn:x"/></e:Body>'))
    assert message.version is version
    assert message.body is not None and message.body.tag == "{urn:x}op"
    assert [block.tag for block in message.header] == ["{urn:h}h"]


@pytest.mark.parametrize(("xml", "code", "text"), [
    ("<Envelope><Body/></Envelope>", "VersionMismatch", "expected a SOAP 1.1 or 1.2 Envelope"),
    ('<notifications xmlns="urn:x"/>', "Client", "got {urn:x}notifications"),
    (f'<e:Envelope xmlns:e="{SOAP11_ENV}"/>', "Client", "no Body"),
    (f'<e:Envelope xmlns:e="{SOAP11_ENV}"><e:Header><s xmlns="urn:s" e:mustUnderstand="1"/>'
     "</e:Header><e:Body/></e:Envelope>", "MustUnderstand", "{urn:s}s is not understood"),
])
def test_split_envelope_refuses_with_a_precise_fault(xml: str, code: str, text: str) -> None:
    with pytest.raises(SoapFault) as caught:
        split_envelope(etree.fromstring(xml))
    assert caught.value.code == code
    assert text in caught.value.message


def test_fault_document_soap11_is_http_500_with_faultcode_string_and_detail() -> None:
    status, body = fault_document(SoapVersion.V11, SoapFault(
        "Client", "bad input", reason="invalid", detail={"field": "Currency"}))
    fault = etree.fromstring(body).find(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault")
    assert status == 500
    assert fault is not None
    assert fault.findtext("faultcode") == "soapenv:Client"
    assert fault.findtext("faultstring") == "bad input"
    assert fault.findtext("detail/field") == "Currency"


@pytest.mark.parametrize(("code", "value", "status"), [("Client", "soapenv:Sender", 400),
                                                       ("Server", "soapenv:Receiver", 500)])
def test_fault_document_soap12_uses_sender_receiver_codes(
    code: str, value: str, status: int
) -> None:
    got, body = fault_document(SoapVersion.V12, SoapFault(code, "why", reason="x"))  # type: ignore[arg-type]
    ns = {"e": SOAP12_ENV}
    root = etree.fromstring(body)
    assert got == status
    assert root.findtext("e:Body/e:Fault/e:Code/e:Value", namespaces=ns) == value
    assert root.findtext("e:Body/e:Fault/e:Reason/e:Text", namespaces=ns) == "why"


def test_fault_document_keeps_an_explicit_http_status() -> None:
    status, _ = fault_document(SoapVersion.V11, SoapFault("Client", "big", reason="too_large",
                                                          status=413))
    assert status == 413


def test_response_document_wraps_content_in_the_request_version() -> None:
    content = etree.Element("{urn:x}Ack")
    root = etree.fromstring(response_document(SoapVersion.V12, content))
    assert root.tag == f"{{{SOAP12_ENV}}}Envelope"
    assert root[0][0].tag == "{urn:x}Ack"


@pytest.mark.parametrize(("status", "version", "answered", "code"), [
    (503, SoapVersion.V11, 500, "soapenv:Server"),
    (503, SoapVersion.V12, 500, "soapenv:Receiver"),
    (422, SoapVersion.V11, 500, "soapenv:Client"),
    (422, SoapVersion.V12, 400, "soapenv:Sender"),
    (413, SoapVersion.V11, 413, "soapenv:Client"),
    (403, SoapVersion.V12, 403, "soapenv:Sender"),
])
def test_fault_document_answers_any_refusal_of_the_shared_ingress(
    status: int, version: SoapVersion, answered: int, code: str,
) -> None:
    # A refusal from the shared layer (size, dedupe, broker) is a fault like a SoapFault
    refused = Refused(status, "x", "what", "why it was refused", extra={"limit": 5})
    got, body = fault_document(version, refused)
    root = etree.fromstring(body)
    ns = version.namespace
    if version is SoapVersion.V11:
        values = (root.findtext(f"{{{ns}}}Body/{{{ns}}}Fault/faultcode"),
                  root.findtext(f"{{{ns}}}Body/{{{ns}}}Fault/faultstring"),
                  root.findtext(f"{{{ns}}}Body/{{{ns}}}Fault/detail/limit"))
    else:
        fault = f"{{{ns}}}Body/{{{ns}}}Fault"
        values = (root.findtext(f"{fault}/{{{ns}}}Code/{{{ns}}}Value"),
                  root.findtext(f"{fault}/{{{ns}}}Reason/{{{ns}}}Text"),
                  root.findtext(f"{fault}/{{{ns}}}Detail/limit"))
    assert (got, values) == (answered, (code, "why it was refused", "5"))


def test_every_ingress_refusal_type_is_a_refused_in_the_error_tree() -> None:
    fault = SoapFault("Server", "later", reason="busy", retry_after=7)
    xml = XmlRejected("too_large", "big")
    auth = AuthError("stale", "old", headers={"WWW-Authenticate": "Basic"})
    assert all(isinstance(e, Refused) and isinstance(e, SilobridgeError)
               for e in (fault, xml, auth))
    assert (fault.status, fault.retryable, fault.headers) == (503, True, {"Retry-After": "7"})
    assert (xml.status, xml.reason, str(xml)) == (413, "too_large", "big")
    assert (auth.status, auth.reason, auth.error, auth.kind) == (
        401, "stale_request", "stale credentials", "stale")
