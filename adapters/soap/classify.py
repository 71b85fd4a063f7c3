"""What a failed SOAP call means for the delivery: retry it, or dead-letter it at once.

    SOAP Client / Sender fault (and any other non-server code)   permanent
    zeep type errors (missing element, unknown argument, value)  permanent (never sent)
    SOAP Server / Receiver fault                                 retryable
    HTTP 5xx, 408, 429 without a fault, timeouts, connection     retryable (adapters._http)
    (an XML answer that is no Fault counts as "without a fault", and so does an HTML page:
    the status is reported, not a parse problem)
    unparseable response to a 2xx                                retryable
    other HTTP statuses without a fault                          permanent

Fault code, string and detail travel in ``DeliveryError.details`` into the DLQ headers, so an
operator sees the ERP's own words without opening the message.
"""

from __future__ import annotations

import requests
from lxml import etree
from zeep import exceptions as zeep_errors

from adapters._http import Outcome, classify_status, truncate
from middleware.errors import DeliveryError

__all__ = ["classify", "request_error"]

_RETRYABLE_CODES = frozenset({"server", "receiver"})


def _fault_kind(code: str | None) -> str:
    """'soap11env:Server.Unavailable' -> 'server'; codes may be prefixed and dotted."""
    local = (code or "").rsplit(":", 1)[-1]
    return local.split(".", 1)[0].lower()


def _detail_text(detail: object) -> str:
    if detail is None:
        return ""
    if isinstance(detail, etree._Element):
        text = etree.tostring(detail, encoding="unicode", with_tail=False)
    else:
        text = str(detail)
    return truncate(" ".join(text.split()))


def request_error(exc: Exception, operation: str) -> DeliveryError:
    """The mapped payload does not fit the WSDL types: sending it again cannot help."""
    return DeliveryError(
        f"payload does not match the input of {operation}: {exc}",
        retryable=False,
        details={"operation": operation, "error": type(exc).__name__},
    )


def classify(exc: Exception, operation: str, status: int | None = None) -> DeliveryError:
    """Translate what zeep or requests raised while calling ``operation``.

    ``status`` is the HTTP status of the answer, if one came.
    """
    if isinstance(exc, zeep_errors.Fault) and exc.code is None:
        # zeep's name for "HTTP error status with an XML body that is no SOAP Fault"
        return classify(zeep_errors.TransportError(
            exc.message, status_code=status or 0, content=_detail_text(exc.detail)),
            operation)
    if isinstance(exc, zeep_errors.Fault):
        retryable = _fault_kind(exc.code) in _RETRYABLE_CODES
        hint = "will retry" if retryable else "fix the payload or the ERP data, then replay"
        return DeliveryError(
            f"{operation} answered SOAP fault {exc.code}: {exc.message} ({hint})",
            retryable=retryable,
            details={"operation": operation, "fault_code": exc.code or "",
                     "fault_string": exc.message or "", "fault_detail": _detail_text(exc.detail)},
        )
    if isinstance(exc, zeep_errors.TransportError):
        status = int(exc.status_code or 0)
        not_xml = "invalid XML" in str(exc.message)
        # An error status decides, whatever its body: a 503 from a proxy is an HTML page, and
        # "unparseable" would send the operator looking for a parse problem that is not there.
        unparseable = not status or 200 <= status < 300
        retryable = unparseable or classify_status(status) is Outcome.RETRYABLE
        if unparseable:
            what = "an unparseable response"
        else:
            what = f"HTTP {status}" + (" (with a body that is no SOAP XML)" if not_xml else "")
        return DeliveryError(
            f"{operation} answered {what}",
            retryable=retryable,
            details={"operation": operation, "status": status,
                     "body": truncate(_as_text(exc.content))},
        )
    if isinstance(exc, requests.Timeout):
        return DeliveryError(f"{operation} timed out", retryable=True,
                             details={"operation": operation, "error": type(exc).__name__})
    if isinstance(exc, requests.RequestException):
        return DeliveryError(f"{operation} failed: {type(exc).__name__}", retryable=True,
                             details={"operation": operation, "error": type(exc).__name__})
    if isinstance(exc, zeep_errors.ValidationError | TypeError):
        return request_error(exc, operation)
    if isinstance(exc, zeep_errors.XMLSyntaxError | zeep_errors.XMLParseError
                  | etree.XMLSyntaxError):
        return DeliveryError(f"{operation} answered an unparseable response: {exc}",
                             retryable=True, details={"operation": operation,
                                                      "error": type(exc).__name__})
    return DeliveryError(f"{operation} failed: {type(exc).__name__}: {exc}", retryable=True,
                         details={"operation": operation, "error": type(exc).__name__})


def _as_text(content: object) -> str:
    if isinstance(content, bytes):
        return content.decode("utf-8", "replace")
    return "" if content is None else str(content)
