"""Failed SOAP calls are classified: client problems dead-letter, server problems retry."""

from __future__ import annotations

import pytest
import requests
from lxml import etree
from zeep import exceptions as zeep_errors

from adapters.soap.classify import classify


@pytest.mark.parametrize(("code", "retryable"), [
    ("soap11env:Client.UnknownCurrency", False),
    ("soapenv:Client", False),
    ("Sender", False),
    ("s:MustUnderstand", False),
    ("ns0:OrderRejected", False),
    ("soap11env:Server.Unavailable", True),
    ("soapenv:Server", True),
    ("env:Receiver", True),
])
def test_classify_fault_code_decides_retry(code: str, retryable: bool) -> None:
    assert classify(zeep_errors.Fault("no", code=code), "Op").retryable is retryable


def test_classify_fault_keeps_code_string_and_detail_for_the_dlq() -> None:
    detail = etree.fromstring("<detail><field>Currency</field><accepted>EUR</accepted></detail>")
    error = classify(zeep_errors.Fault("currency 'XXX' is not accepted",
                                       code="soap11env:Client.UnknownCurrency", detail=detail),
                     "CreateSalesOrder")
    assert error.details["fault_code"] == "soap11env:Client.UnknownCurrency"
    assert error.details["fault_string"] == "currency 'XXX' is not accepted"
    assert error.details["fault_detail"] == (
        "<detail><field>Currency</field><accepted>EUR</accepted></detail>")
    assert error.details["operation"] == "CreateSalesOrder"
    assert "CreateSalesOrder answered SOAP fault" in str(error)


@pytest.mark.parametrize(("exc", "retryable"), [
    (zeep_errors.TransportError("Server returned HTTP status 503", status_code=503), True),
    (zeep_errors.TransportError("Server returned HTTP status 429", status_code=429), True),
    (zeep_errors.TransportError("Server returned HTTP status 404", status_code=404), False),
    (zeep_errors.TransportError("Server returned response (200) with invalid XML: x",
                                status_code=200, content=b"<html>"), True),
    (requests.ConnectTimeout("slow"), True),
    (requests.ReadTimeout("slow"), True),
    (requests.ConnectionError("refused"), True),
    (zeep_errors.XMLSyntaxError("broken"), True),
    (zeep_errors.ValidationError("Missing element AccountNo"), False),
    (TypeError("got an unexpected keyword argument 'Bogus'"), False),
], ids=["503", "429", "404", "unparseable", "connect-timeout", "read-timeout", "refused",
        "syntax", "validation", "unknown-argument"])
def test_classify_transport_and_type_errors(exc: Exception, retryable: bool) -> None:
    assert classify(exc, "Op").retryable is retryable


def test_classify_http_status_is_kept_in_details() -> None:
    error = classify(zeep_errors.TransportError("x", status_code=502, content=b"bad gateway"),
                     "Op")
    assert error.details["status"] == 502
    assert error.details["body"] == "bad gateway"


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (502, True), (403, False)])
def test_classify_codeless_fault_is_an_http_error_classified_by_status(
    status: int, retryable: bool
) -> None:
    # zeep raises Fault(code=None) for a non-200 answer whose XML body holds no SOAP Fault
    error = classify(zeep_errors.Fault("Unknown fault occured", code=None,
                                       detail="<html>proxy error</html>"), "Op", status)
    assert error.retryable is retryable
    assert error.details["status"] == status
    assert "proxy error" in error.details["body"]


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (502, True), (400, False)])
def test_classify_error_status_with_html_body_names_the_status_not_a_parse_problem(
    status: int, retryable: bool
) -> None:
    # zeep's words for a 503 from a proxy that answers with an HTML page
    exc = zeep_errors.TransportError(
        f"Server returned response ({status}) with invalid XML: Start tag expected",
        status_code=status, content=b"<html><body>Service Unavailable</body></html>")
    error = classify(exc, "Customer_Create")
    assert str(error).startswith(f"Customer_Create answered HTTP {status}")
    assert "unparseable" not in str(error)
    assert error.retryable is retryable
    assert error.details["status"] == status


def test_classify_invalid_xml_in_a_200_is_an_unparseable_response() -> None:
    exc = zeep_errors.TransportError("Server returned response (200) with invalid XML: x",
                                     status_code=200, content=b"<html>")
    assert "answered an unparseable response" in str(classify(exc, "Op"))
