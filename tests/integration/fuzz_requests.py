"""The requests the ingress fuzz test sends (``test_ingress_fuzz``), drawn by hypothesis in
processes of their own.

Drawing is most of the test's cost (milliseconds a request, all of it Python): drawn in the
test's process it took turns on the GIL with the sender and left the second core idle. Here
``drawn`` runs ``draw`` in child processes that hand requests over a bounded queue while the
test sends: the queue is short so a request is sent within moments of being signed (HubSpot
and Stripe signatures carry a timestamp), and a child that dies is noticed, not waited on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import multiprocessing
import queue
import re
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any
from xml.sax.saxutils import escape

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

__all__ = ["KINDS", "ORG", "SECRET", "SF_NS", "SHIP_NS", "SOAP11", "Request", "drawn"]

SECRET = "fuzz-secret"
ORG = "00D000000000001AAA"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SHIP_NS = "urn:silobridge:examples:shipments"
SF_NS = "http://soap.sforce.com/2005/09/outbound"
KINDS = ("hmac", "hubspot", "stripe", "open", "soap", "salesforce")
_ID_CHARS = string.ascii_letters + string.digits + "_.:-"
_INVISIBLE = re.compile(rb"[\x00-\x1f\x7f]")


@dataclass
class Request:
    kind: str
    method: str
    path_suffix: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


# plain alphabets rather than from_regex: the same strings, drawn several times cheaper
_HEADER_NAME = st.text(string.ascii_letters + string.digits + "-", min_size=1,
                       max_size=24).map(lambda tail: "X-" + tail)
_HEADER_VALUE = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=64).map(str.encode),
    st.binary(max_size=64),
    st.integers(0, 40_000).map(lambda n: b"a" * n),  # oversized headers, now and then
).map(lambda raw: _visible(raw))
# every alphabet, every length (AMQP short strings end at 255 bytes)
_ANY_TEXT = st.characters(codec="utf-8", exclude_categories=("Cs",))
_XML_TEXT = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Co"),
                          exclude_characters="\ufffe\uffff")
_IDS = st.one_of(
    st.text(_ANY_TEXT, min_size=1, max_size=80),
    st.text(_ANY_TEXT, min_size=200, max_size=320),
    st.text(_ID_CHARS, min_size=1, max_size=300),
)
_XML_IDS = st.one_of(
    st.text(_XML_TEXT, min_size=1, max_size=80).filter(lambda s: s.strip() == s and s),
    st.text(_ID_CHARS, min_size=1, max_size=300),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(_ANY_TEXT),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


def _visible(raw: bytes) -> bytes:
    """Only the bytes HTTP allows in a header value (the client refuses the rest)."""
    return _INVISIBLE.sub(b"", raw).strip()


def _header_bytes(text: str) -> bytes:
    return _visible(text.encode()) or b"x"


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _sign_hex(data: bytes) -> str:
    return hmac.new(SECRET.encode(), data, hashlib.sha256).hexdigest()


@st.composite
def _hmac_request(draw: st.DrawFn) -> Request:
    event = {"customer_no": draw(_IDS), "name": draw(st.text(_ANY_TEXT, max_size=40)),
             "extra": draw(_JSON)}
    body = _json(event)
    headers = [(b"Content-Type", b"application/json"),
               (b"X-Signature", f"sha256={_sign_hex(body)}".encode()),
               (b"X-Request-Id", _header_bytes(draw(_IDS)))]
    return Request("hmac", "POST", "", headers, body)


@st.composite
def _hubspot_request(draw: st.DrawFn, path: str) -> Request:
    events = draw(st.lists(st.fixed_dictionaries({
        "eventId": st.integers(0, 2**70), "portalId": st.integers(0, 2**40),
        "occurredAt": st.integers(0, 2**45), "objectId": st.integers(0, 2**40),
        "subscriptionType": st.sampled_from(["contact.creation", "contact.propertyChange",
                                             "company.deletion"]),
    }), min_size=0, max_size=4))
    body = _json(events)
    stamp = str(int(time.time() * 1000)).encode()
    base = b"POST" + f"https://hooks.example.com{path}".encode() + body + stamp
    signature = base64.b64encode(hmac.new(SECRET.encode(), base, hashlib.sha256).digest())
    headers = [(b"Content-Type", b"application/json"),
               (b"X-HubSpot-Request-Timestamp", stamp), (b"X-HubSpot-Signature-v3", signature)]
    return Request("hubspot", "POST", "", headers, body)


@st.composite
def _stripe_request(draw: st.DrawFn) -> Request:
    event = {"id": draw(_IDS), "type": draw(st.sampled_from(["customer.created",
                                                             "invoice.paid", "x"])),
             "created": int(time.time()), "data": {"object": draw(_JSON)}}
    body = _json(event)
    stamp = int(time.time())
    signature = _sign_hex(f"{stamp}.".encode() + body)
    headers = [(b"Content-Type", b"application/json"),
               (b"Stripe-Signature", f"t={stamp},v1={signature}".encode())]
    return Request("stripe", "POST", "", headers, body)


@st.composite
def _open_request(draw: st.DrawFn) -> Request:
    one = st.fixed_dictionaries({"id": _IDS, "value": _JSON})
    document = draw(st.one_of(one, st.lists(one, max_size=4), _JSON))
    return Request("open", "POST", "", [(b"Content-Type", b"application/json")], _json(document))


def _soap(body: str) -> bytes:
    return (f'<soapenv:Envelope xmlns:soapenv="{SOAP11}"><soapenv:Body>{body}'
            "</soapenv:Body></soapenv:Envelope>").encode()


@st.composite
def _soap_request(draw: st.DrawFn) -> Request:
    ids = draw(st.lists(_XML_IDS, min_size=1, max_size=3, unique=True))
    packages = draw(st.one_of(st.integers(-5, 2**33).map(str), st.text(_XML_TEXT, max_size=8)))
    shipped = draw(st.sampled_from(["2026-11-30T10:00:00Z", "1e400", "", "2026-13-45T99:99"]))
    shipments = "".join(
        f"<s:Shipment><s:ShipmentId>{escape(i)}</s:ShipmentId><s:OrderNo>SO-1</s:OrderNo>"
        f"<s:Packages>{escape(packages)}</s:Packages><s:ShippedAt>{shipped}</s:ShippedAt>"
        "</s:Shipment>" for i in ids)
    body = _soap(f'<s:ReportShipments xmlns:s="{SHIP_NS}"><s:Warehouse>W1</s:Warehouse>'
                 f"{shipments}</s:ReportShipments>")
    action = draw(st.sampled_from([f'"{SHIP_NS}:ReportShipments"', '""', '"urn:other"']))
    headers = [(b"Content-Type", b"text/xml; charset=utf-8"), (b"SOAPAction", action.encode())]
    return Request("soap", "POST", "", headers, body)


@st.composite
def _salesforce_request(draw: st.DrawFn) -> Request:
    ids = draw(st.lists(_XML_IDS, min_size=1, max_size=3, unique=True))
    org = draw(st.sampled_from([ORG, ORG[:15], ORG[:15] + "zzz", "x" * 300]))
    sobject_type = draw(st.one_of(st.just("sf:Lead"), st.text(string.ascii_letters, min_size=1,
                                                                   max_size=300).map("sf:".__add__)))
    notifications = "".join(
        f"<Notification><Id>{escape(i)}</Id><sObject xsi:type=\"{sobject_type}\" "
        'xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Name>{escape(draw(st.text(_XML_TEXT, max_size=30)))}</sf:Name>"
        f"<sf:LastModifiedDate>{draw(st.sampled_from(['2026-11-30T10:00:00Z', '1e400']))}"
        "</sf:LastModifiedDate></sObject></Notification>" for i in ids)
    body = _soap(f'<notifications xmlns="{SF_NS}" '
                 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
                 f"<OrganizationId>{org}</OrganizationId>{notifications}</notifications>")
    headers = [(b"Content-Type", b"text/xml; charset=utf-8"), (b"SOAPAction", b'""')]
    return Request("salesforce", "POST", "", headers, body)


@st.composite
def _mutated(draw: st.DrawFn, request: Request) -> Request:
    """The request as built, or spoiled in one of the ways an attacker or a broken sender
    would: junk headers of any size, a cut or flipped body, another media type or method."""
    how = draw(st.sampled_from(["none", "none", "headers", "body", "truncate", "type",
                                "method", "garbage"]))
    if how == "headers":
        extra = draw(st.lists(st.tuples(_HEADER_NAME.map(str.encode), _HEADER_VALUE),
                              max_size=30))
        return Request(request.kind, request.method, request.path_suffix,
                       request.headers + extra, request.body)
    if how == "body" and request.body:
        at = draw(st.integers(0, len(request.body) - 1))
        body = bytearray(request.body)
        body[at] ^= draw(st.integers(1, 255))
        return Request(request.kind, request.method, "", request.headers, bytes(body))
    if how == "truncate":
        cut = draw(st.integers(0, len(request.body)))
        return Request(request.kind, request.method, "", request.headers, request.body[:cut])
    if how == "type":
        media = draw(st.sampled_from([b"text/plain", b"application/xml", b"", b"x" * 5000,
                                      b"application/json; charset=" + b"a" * 3000]))
        headers = [h for h in request.headers if h[0].lower() != b"content-type"]
        return Request(request.kind, request.method, "", [*headers, (b"Content-Type", media)],
                       request.body)
    if how == "method":
        method = draw(st.sampled_from(["GET", "PUT", "DELETE", "PATCH"]))
        suffix = draw(st.sampled_from(["", "?wsdl", "?WSDL&x=" + "y" * 3000]))
        return Request(request.kind, method, suffix, request.headers, request.body)
    if how == "garbage":
        return Request(request.kind, "POST", "", request.headers, draw(st.binary(max_size=2000)))
    return request


def requests(hubspot_path: str) -> st.SearchStrategy[Request]:
    """Any kind of request, spoiled or not (HubSpot signs the URL path it was sent to)."""
    builders: dict[str, st.SearchStrategy[Request]] = {
        "hmac": _hmac_request(), "hubspot": _hubspot_request(hubspot_path),
        "stripe": _stripe_request(), "open": _open_request(), "soap": _soap_request(),
        "salesforce": _salesforce_request(),
    }
    return st.sampled_from(KINDS).flatmap(lambda kind: builders[kind]).flatmap(_mutated)


def draw(hubspot_path: str, count: int, out: Any) -> None:
    """A child process: ``count`` requests onto ``out``, then None."""

    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(requests(hubspot_path))
    def one(request: Request) -> None:
        out.put(request)

    one()
    out.put(None)


def drawn(hubspot_path: str, count: int, processes: int = 2) -> Iterator[Request]:
    """``count`` requests (hypothesis may draw a few fewer) from ``processes`` children."""
    context = multiprocessing.get_context("spawn")  # no fork of a process running threads
    out = context.Queue(maxsize=200)
    shares = [count // processes + (n < count % processes) for n in range(processes)]
    children: list[BaseProcess] = [
        context.Process(target=draw, args=(hubspot_path, share, out), daemon=True)
        for share in shares]
    for child in children:
        child.start()
    try:
        running = len(children)
        while running:
            try:
                request = out.get(timeout=10)
            except queue.Empty:  # a child that ended well had put its None first
                failed = [child.exitcode for child in children if child.exitcode]
                assert not failed, f"a drawing process failed: exit codes {failed}"
                continue
            if request is None:
                running -= 1
            else:
                yield request
    finally:
        for child in children:
            child.terminate()
            child.join(10)
