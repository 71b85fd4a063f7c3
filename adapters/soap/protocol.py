"""SOAP 1.1 / 1.2 envelopes and faults, as the inbound endpoints read and write them.

A request's envelope namespace decides its SOAP version and the answer is written in the same
version. Faults follow the versions' HTTP bindings: SOAP 1.1 faults go out with HTTP 500 (WS-I
Basic Profile R1126), SOAP 1.2 ``Sender`` faults with 400 and ``Receiver`` faults with 500;
requests refused before they were read (too large, wrong media type) get 413 / 415, with a fault
body so SOAP stacks still show a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from enum import Enum
from typing import Literal

from lxml import etree

from middleware.errors import Refused

__all__ = [
    "FaultCode",
    "SoapFault",
    "SoapMessage",
    "SoapVersion",
    "excerpt",
    "fault_code",
    "fault_document",
    "request_action",
    "response_document",
    "split_envelope",
]

FaultCode = Literal["Client", "Server", "MustUnderstand", "VersionMismatch"]

# HTTP statuses a refusal keeps in its fault answer; others get the SOAP binding's (500, or 400
# for a SOAP 1.2 Sender fault)
_KEPT_STATUS = frozenset({401, 403, 413, 415, 429})

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"


class SoapVersion(Enum):
    V11 = (SOAP11_ENV, "text/xml")
    V12 = (SOAP12_ENV, "application/soap+xml")

    @property
    def namespace(self) -> str:
        return self.value[0]

    @property
    def media_type(self) -> str:
        return self.value[1]

    @classmethod
    def for_media_type(cls, media_type: str) -> SoapVersion | None:
        return next((v for v in cls if v.media_type == media_type), None)


class SoapFault(Refused):
    """A refusal that names its SOAP fault code: who must act, the Client (fix the request,
    don't resend as is) or the Server (try again later), or a SOAP-level code
    (MustUnderstand, VersionMismatch). ``reason`` labels the rejected metric; ``status`` is an
    HTTP status that overrides the SOAP binding's (401, 403, 413, 415); ``detail`` entries
    become elements of the fault's detail.

    Any other ``Refused`` is answered as a fault too (``fault_code``): a Server fault when it
    is retryable, else a Client fault.
    """

    def __init__(
        self,
        code: FaultCode,
        message: str,
        *,
        reason: str,
        status: int | None = None,
        detail: dict[str, str] | None = None,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        answer = dict(headers or {})
        if retry_after:
            answer["Retry-After"] = str(retry_after)
        super().__init__(status or (503 if code == "Server" else 400), reason,
                         f"SOAP {code} fault", message, headers=answer, extra=detail)
        self.code = code

    @property
    def message(self) -> str:
        return self.detail


def fault_code(refused: Refused) -> FaultCode:
    """The fault code a refusal is answered with."""
    if isinstance(refused, SoapFault):
        return refused.code
    return "Server" if refused.retryable else "Client"


def excerpt(text: str, limit: int = 40) -> str:
    """A sender-supplied name or value as faults and logs may quote it: short and printable.

    Faults and log lines name *where* a problem is; they never carry what the sender sent
    beyond this much (control characters become '?', the rest is cut with its length).
    """
    shown = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return shown if len(text) <= limit else f"{shown}... ({len(text)} characters)"


def request_action(version: SoapVersion, headers: Mapping[str, str]) -> str | None:
    """The action the sender declared, without quotes; None when it declared none.

    SOAP 1.1 sends it in the ``SOAPAction`` header, SOAP 1.2 as the ``action`` parameter of
    the ``application/soap+xml`` content type. ``headers`` has lowercase names.
    """
    if version is SoapVersion.V11:
        raw = headers.get("soapaction")
        if raw is None:
            return None
        raw = raw.strip()
        return raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    parsed = Message()
    parsed["content-type"] = headers.get("content-type", "")
    action = parsed.get_param("action")
    return action if isinstance(action, str) else None


@dataclass(frozen=True)
class SoapMessage:
    """A parsed request: its version, the SOAP header blocks and the first body element."""

    version: SoapVersion
    header: list[etree._Element]
    body: etree._Element | None


def split_envelope(root: etree._Element,
                   understood: frozenset[str] = frozenset()) -> SoapMessage:
    """Check the envelope structure; a SoapFault says precisely what is wrong.

    ``understood`` names the header blocks the endpoint processes (the WS-Security header when
    it authenticates with it): only others marked ``mustUnderstand`` are refused.
    """
    qname = etree.QName(root)
    version = next((v for v in SoapVersion if v.namespace == qname.namespace), None)
    if version is None or qname.localname != "Envelope":
        raise SoapFault("VersionMismatch" if qname.localname == "Envelope" else "Client",
                        "expected a SOAP 1.1 or 1.2 Envelope, got "
                        + excerpt(f"{{{qname.namespace or ''}}}{qname.localname}", 120),
                        reason="not_soap")
    ns = version.namespace
    header = root.find(f"{{{ns}}}Header")
    body = root.find(f"{{{ns}}}Body")
    if body is None:
        raise SoapFault("Client", "the Envelope has no Body", reason="not_soap")
    blocks = list(header) if header is not None else []
    for block in blocks:
        if block.get(f"{{{ns}}}mustUnderstand") in ("1", "true") and block.tag not in understood:
            raise SoapFault("MustUnderstand", f"header block {excerpt(str(block.tag), 120)} is "
                            "not understood", reason="must_understand")
    children = list(body)
    return SoapMessage(version, blocks, children[0] if children else None)


def response_document(version: SoapVersion, content: etree._Element | None) -> bytes:
    """An Envelope whose Body holds ``content`` (nothing for an empty body)."""
    ns = version.namespace
    envelope = etree.Element(f"{{{ns}}}Envelope", nsmap={"soapenv": ns})
    body = etree.SubElement(envelope, f"{{{ns}}}Body")
    if content is not None:
        body.append(content)
    result: bytes = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return result


def fault_document(version: SoapVersion, fault: Refused) -> tuple[int, bytes]:
    """HTTP status and body of the fault answering ``fault`` in the request's SOAP version."""
    ns = version.namespace
    code = fault_code(fault)
    envelope = etree.Element(f"{{{ns}}}Envelope", nsmap={"soapenv": ns})
    node = etree.SubElement(etree.SubElement(envelope, f"{{{ns}}}Body"), f"{{{ns}}}Fault")
    if version is SoapVersion.V11:
        etree.SubElement(node, "faultcode").text = f"soapenv:{code}"
        etree.SubElement(node, "faultstring").text = fault.detail
        detail = etree.SubElement(node, "detail") if fault.extra else None
        status = 500
    else:
        code12 = {"Client": "Sender", "Server": "Receiver"}.get(code, code)
        value = etree.SubElement(etree.SubElement(node, f"{{{ns}}}Code"), f"{{{ns}}}Value")
        value.text = f"soapenv:{code12}"
        text = etree.SubElement(etree.SubElement(node, f"{{{ns}}}Reason"), f"{{{ns}}}Text")
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = fault.detail
        detail = etree.SubElement(node, f"{{{ns}}}Detail") if fault.extra else None
        status = 400 if code12 == "Sender" else 500
    for key, item in fault.extra.items():
        assert detail is not None
        etree.SubElement(detail, key).text = item if isinstance(item, str) else str(item)
    body: bytes = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return (fault.status if fault.status in _KEPT_STATUS else status), body
