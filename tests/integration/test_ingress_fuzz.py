"""Every kind of ingress endpoint under generated requests (hypothesis), on the real broker.

An outsider's view of the ingress: requests built at random, some correctly signed and some not,
with headers of random names and sizes, bodies of random shapes, and ids of every length and
alphabet. Whatever arrives, the daemon must answer without a server error (a SOAP Client fault
is the protocol's way of saying 400), keep its broker I/O thread alive, still answer a valid
request quickly afterwards, and have published every request it accepted exactly once and
nothing else. Part of the way through, the broker connection is cut for a while: then, and
only then, 503 (REST) or a Server fault with Retry-After (SOAP) is a correct answer.
``SILOBRIDGE_FUZZ_REQUESTS`` sets the number of requests (20,000 by default).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from lxml import etree

from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.helpers import drain, queue_count, wait_until
from tests.integration.rest_helpers import catch_all_route, endpoint
from tests.integration.soap_helpers import ROOT, CuttableProxy, broker_proxy

pytestmark = pytest.mark.integration

REQUESTS = int(os.environ.get("SILOBRIDGE_FUZZ_REQUESTS", "20000"))
SECRET = "fuzz-secret"
ORG = "00D000000000001AAA"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SHIP_NS = "urn:silobridge:examples:shipments"
SF_NS = "http://soap.sforce.com/2005/09/outbound"
KINDS = ("hmac", "hubspot", "stripe", "open", "soap", "salesforce")


# -- what is sent ----------------------------------------------------------------------------


@dataclass
class Request:
    kind: str
    method: str
    path_suffix: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


_HEADER_NAME = st.from_regex(r"\AX-[A-Za-z0-9-]{1,24}\Z")
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
    st.from_regex(r"\A[A-Za-z0-9_.:-]{1,300}\Z"),
)
_XML_IDS = st.one_of(
    st.text(_XML_TEXT, min_size=1, max_size=80).filter(lambda s: s.strip() == s and s),
    st.from_regex(r"\A[A-Za-z0-9_.:-]{1,300}\Z"),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(_ANY_TEXT),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


def _visible(raw: bytes) -> bytes:
    """Only the bytes HTTP allows in a header value (the client refuses the rest)."""
    return bytes(c for c in raw if c >= 0x20 and c != 0x7F).strip()


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
    sobject_type = draw(st.one_of(st.just("sf:Lead"), st.from_regex(r"\Asf:[A-Za-z]{1,300}\Z")))
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


def requests(paths: dict[str, str]) -> st.SearchStrategy[Request]:
    builders: dict[str, st.SearchStrategy[Request]] = {
        "hmac": _hmac_request(), "hubspot": _hubspot_request(paths["hubspot"]),
        "stripe": _stripe_request(), "open": _open_request(), "soap": _soap_request(),
        "salesforce": _salesforce_request(),
    }
    return st.sampled_from(KINDS).flatmap(lambda kind: builders[kind]).flatmap(_mutated)


# -- what must hold --------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the daemon said it accepted, per (endpoint kind, envelope id); compared with what
    reached the broker afterwards.

    A REST 202 lists the ids it published (a duplicate is answered 200 and listed apart), so
    REST ids are counted: an endpoint without a dedupe rule publishes an id as often as it is
    accepted. A SOAP answer does not list ids; those endpoints dedupe on the derived id, so each
    accepted id must be published exactly once.
    """

    published: Counter[tuple[str, str]] = field(default_factory=Counter)
    soap: set[tuple[str, str]] = field(default_factory=set)
    duplicates: set[tuple[str, str]] = field(default_factory=set)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    outage: bool = False  # the broker connection is cut: "try again later" is right

    def expected(self) -> Counter[tuple[str, str]]:
        return self.published + Counter(self.soap)


# the SOAP faults that blame the request (SOAP 1.1 and 1.2 names), never the server
_SENDER_FAULTS = ("Client", "Sender", "VersionMismatch", "MustUnderstand")


def _fault_code(response: httpx.Response) -> str:
    try:
        root = etree.fromstring(response.content)
    except etree.XMLSyntaxError:
        return ""
    code = root.findtext(f".//{{{SOAP11}}}Fault/faultcode") or root.findtext(
        ".//{http://www.w3.org/2003/05/soap-envelope}Code/"
        "{http://www.w3.org/2003/05/soap-envelope}Value")
    return (code or "").rsplit(":", 1)[-1]


def _soap_ids(body: bytes) -> list[str]:
    """The ids an accepted SOAP request carried, read from what was sent (it may have been
    spoiled on the way and still be valid)."""
    root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    found = root.iterfind(f".//{{{SHIP_NS}}}ShipmentId") if SHIP_NS in body.decode(
        "utf-8", "replace") else root.iterfind(f".//{{{SF_NS}}}Notification/{{{SF_NS}}}Id")
    return [element.text or "" for element in found]


def check(request: Request, response: httpx.Response, ledger: Ledger) -> None:
    """One answer: never a server error; what it accepted goes into the ledger."""
    status = response.status_code
    ledger.statuses[(request.kind, status)] += 1
    if ledger.outage and status in (500, 503) and "retry-after" in response.headers:
        return
    if request.kind in ("soap", "salesforce"):
        if status == 500:
            code = _fault_code(response)
            assert code in _SENDER_FAULTS, (status, response.text[:500])
        else:
            assert status < 500, (status, response.text[:500])
        if status == 200 and request.method == "POST":
            ledger.soap.update((request.kind, i) for i in _soap_ids(request.body))
        return
    assert status < 500, (request.kind, status, response.text[:500])
    if status == 202:
        ledger.published.update((request.kind, i) for i in response.json()["ids"])
    elif status == 200:
        ledger.duplicates.update((request.kind, i) for i in response.json()["ids"])


def send(client: httpx.Client, base: str, paths: dict[str, str], request: Request
         ) -> httpx.Response:
    return client.request(request.method, base + paths[request.kind] + request.path_suffix,
                          headers=request.headers, content=request.body)


def probe(client: httpx.Client, base: str, paths: dict[str, str], n: int) -> float:
    """Seconds a valid request took; it must be accepted."""
    started = time.perf_counter()
    response = client.post(base + paths["open"], json={"id": f"probe-{n}", "value": n})
    took = time.perf_counter() - started
    assert response.status_code == 202, response.text
    return took


# -- the daemon ------------------------------------------------------------------------------


def _endpoints(prefix: str) -> list[dict[str, Any]]:
    auth = {"secret_env": f"{prefix.upper()}_SECRET"}
    derive_id = {"entity": {"value": "customer"}, "action": {"value": "updated"}}
    sections = [
        endpoint(prefix, "hmac", auth={"scheme": "hmac", "header": "X-Signature",
                                       "prefix": "sha256=", **auth},
                 dedupe={"header": "X-Request-Id"}, max_body_bytes=65536),
        endpoint(prefix, "hubspot", auth={"scheme": "hubspot",
                                          "public_url": "https://hooks.example.com", **auth},
                 derive={**derive_id, "subject": {"path": "objectId"},
                         "id": {"cel": "'hubspot-' + string(payload.portalId) + '-' + "
                                       "string(payload.eventId)"}}),
        endpoint(prefix, "stripe", auth={"scheme": "stripe", **auth},
                 derive={"entity": {"path": "type", "pattern": r"^([^.]+)\."},
                         "action": {"value": "updated"}}),
        endpoint(prefix, "open", derive={**derive_id, "id": {"path": "id"}}),
        {"type": "soap", "name": f"{prefix}-ship", "path": f"/soap/{prefix}/ship",
         "wsdl": str(ROOT / "mappings" / "examples" / "soap-inbound" / "shipments.wsdl"),
         "system": prefix, "operations": {"ReportShipments": {
             "each": "Shipment",
             "derive": {"entity": {"value": "shipment"}, "action": {"value": "reported"},
                        "subject": {"path": "OrderNo"}, "id": {"path": "ShipmentId"}},
             "reply": {"Accepted": True, "Count": "{count}"}}}},
        {"type": "salesforce-om", "name": f"{prefix}-sf", "path": f"/soap/{prefix}/sf",
         "organization_id": ORG, "system": prefix, "entity": "lead",
         "max_body_bytes": 65536, "max_depth": 32},
    ]
    for kind, section in zip(KINDS, sections, strict=True):
        section["source"] = f"fuzz/{kind}"
    return sections


@dataclass
class Fuzzed:
    daemon: Daemon
    base: str
    paths: dict[str, str]
    broker: CuttableProxy


@pytest.fixture
def fuzzed(
    prefix: str, make_config: Callable[..., LoadedConfig], monkeypatch: pytest.MonkeyPatch,
    amqp_url: str,
) -> Iterator[Fuzzed]:
    monkeypatch.setenv(f"{prefix.upper()}_SECRET", SECRET)
    sections = _endpoints(prefix)
    with broker_proxy(amqp_url) as (proxy, proxied_url):
        loaded = make_config([catch_all_route(prefix)], inbound=sections,
                             broker={"url": proxied_url, "publish_timeout": 3,
                                     "reconnect_max_delay": 0.5})
        daemon = Daemon(loaded, Role.INGRESS)
        daemon.start()
        assert daemon.ingress is not None
        try:
            yield Fuzzed(daemon, f"http://127.0.0.1:{daemon.ingress.port}",
                         {kind: section["path"] for kind, section in zip(KINDS, sections,
                                                                          strict=True)}, proxy)
        finally:
            daemon.stop()


def _loop_alive() -> bool:
    return any(t.name == "amqp-loop" and t.is_alive() for t in threading.enumerate())


@pytest.mark.timeout(1200)  # ~2 minutes on a quiet machine; several times that under load
def test_ingress_fuzz_every_endpoint_kind_no_server_error_and_exactly_once(
    fuzzed: Fuzzed, amqp_url: str, prefix: str
) -> None:
    daemon, base, paths = fuzzed.daemon, fuzzed.base, fuzzed.paths
    ledger = Ledger()
    cut_at, restore_at = REQUESTS * 2 // 5, REQUESTS // 2
    sent = 0
    with httpx.Client(timeout=15) as client:
        probes: list[float] = []

        @settings(max_examples=REQUESTS, deadline=None, database=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(requests(paths))
        def one(request: Request) -> None:
            nonlocal sent
            sent += 1
            if sent == cut_at:  # the broker goes away for a while, mid-stream
                ledger.outage = True
                fuzzed.broker.cut()
            elif sent == restore_at:
                fuzzed.broker.restore()
                assert wait_until(lambda: all(daemon.readiness().values()), 30)
                ledger.outage = False
            check(request, send(client, base, paths, request), ledger)
            # the daemon stays healthy all along, not only at the end
            if sent % 2000 == 0 and not ledger.outage:
                assert _loop_alive() and all(daemon.readiness().values()), daemon.readiness()
                probes.append(probe(client, base, paths, sent))

        one()
        probes.extend(probe(client, base, paths, sent + n) for n in range(1, 6))
        assert _loop_alive() and all(daemon.readiness().values()), daemon.readiness()
        assert statistics.median(probes) < 0.1, probes
    probes_sent = [n for n in range(2000, sent + 1, 2000) if not cut_at <= n < restore_at]
    probes_sent += range(sent + 1, sent + 6)
    ledger.published.update(("open", f"probe-{n}") for n in probes_sent)
    assert sent >= REQUESTS * 0.95, sent
    # Every accepted request was published exactly once, and nothing else was
    expected = ledger.expected()
    queue = queue_name(f"{prefix}-r")
    assert wait_until(lambda: queue_count(amqp_url, queue) >= expected.total(), 30)
    published: Counter[tuple[str, str]] = Counter()
    for props, body in drain(amqp_url, queue):
        published[(json.loads(body)["source"].removeprefix("fuzz/"), props.message_id)] += 1
    extra, missing = published - expected, expected - published
    assert not extra and not missing, (list(extra.items())[:5], list(missing.items())[:5])
    assert ledger.duplicates <= set(expected)
    assert any(status == 503 for (_kind, status) in ledger.statuses), ledger.statuses
    accepted = sum(n for (_kind, status), n in ledger.statuses.items() if status in (200, 202))
    assert accepted > REQUESTS * 0.05, ledger.statuses  # the generator reaches the happy path
