"""Every kind of ingress endpoint under generated requests (hypothesis), on the real broker.

An outsider's view of the ingress: requests built at random, some correctly signed and some not,
with headers of random names and sizes, bodies of random shapes, and ids of every length and
alphabet. Whatever arrives, the daemon must answer without a server error (a SOAP Client fault
is the protocol's way of saying 400), keep its broker I/O thread alive, still answer a valid
request quickly afterwards, and have published every request it accepted exactly once and
nothing else. Part of the way through, the broker connection is cut for a while: then, and
only then, 503 (REST) or a Server fault with Retry-After (SOAP) is a correct answer.
``SILOBRIDGE_FUZZ_REQUESTS`` sets the number of requests (20,000 by default).

The daemon runs as a process of its own and the requests are drawn in two more
(``fuzz_requests``): in one process, drawing, sending and serving took turns on one core.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from tests.integration.fuzz_requests import (
    KINDS,
    ORG,
    SECRET,
    SF_NS,
    SHIP_NS,
    SOAP11,
    Request,
    drawn,
)
from tests.integration.helpers import drain, queue_count, wait_until
from tests.integration.rest_helpers import catch_all_route, endpoint
from tests.integration.soap_helpers import ROOT, CuttableProxy, broker_proxy
from tests.ports import free_port

pytestmark = pytest.mark.integration

REQUESTS = int(os.environ.get("SILOBRIDGE_FUZZ_REQUESTS", "20000"))


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
    """The daemon process under test and the broker proxy it publishes through."""

    process: subprocess.Popen[bytes]
    base: str
    ops: str
    paths: dict[str, str]
    broker: CuttableProxy
    log: Path

    def readiness(self) -> dict[str, Any]:
        """``/readyz``: its ``threads`` check fails when the broker I/O loop thread has ended
        (the watchdog watches it, and then ends the process, which fails here too)."""
        assert self.process.poll() is None, self.log.read_text()[-4000:]
        try:
            return httpx.get(self.ops + "/readyz", timeout=5).json()
        except httpx.HTTPError as exc:
            return {"ready": False, "error": repr(exc)}

    def ready(self) -> bool:
        return self.readiness()["ready"] is True


@pytest.fixture
def fuzzed(
    prefix: str, make_config: Callable[..., LoadedConfig], monkeypatch: pytest.MonkeyPatch,
    amqp_url: str, tmp_path: Path,
) -> Iterator[Fuzzed]:
    monkeypatch.setenv(f"{prefix.upper()}_SECRET", SECRET)  # the daemon process inherits it
    sections = _endpoints(prefix)
    ingress_port, ops_port = free_port(), free_port()
    log = tmp_path / "daemon.log"
    with broker_proxy(amqp_url) as (proxy, proxied_url):
        loaded = make_config([catch_all_route(prefix)], inbound=sections,
                             broker={"url": proxied_url, "publish_timeout": 3,
                                     "reconnect_max_delay": 0.5},
                             ingress={"port": ingress_port}, ops={"port": ops_port})
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "middleware", "run", "-c", str(loaded.path),
                 "--role", "ingress", "--log-format", "json"],
                stdout=out, stderr=subprocess.STDOUT)
        fuzzed = Fuzzed(process, f"http://127.0.0.1:{ingress_port}",
                        f"http://127.0.0.1:{ops_port}",
                        {kind: section["path"] for kind, section in zip(KINDS, sections,
                                                                         strict=True)},
                        proxy, log)
        try:
            assert wait_until(fuzzed.ready, 120), log.read_text()[-4000:]
            yield fuzzed
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@pytest.mark.timeout(1200)  # minutes on a quiet machine; many times that under load
def test_ingress_fuzz_every_endpoint_kind_no_server_error_and_exactly_once(
    fuzzed: Fuzzed, amqp_url: str, prefix: str
) -> None:
    base, paths = fuzzed.base, fuzzed.paths
    ledger = Ledger()
    cut_at, restore_at = REQUESTS * 2 // 5, REQUESTS // 2
    sent = 0
    with httpx.Client(timeout=15) as client:
        probes: list[float] = []
        for request in drawn(paths["hubspot"], REQUESTS):
            sent += 1
            if sent == cut_at:  # the broker goes away for a while, mid-stream
                ledger.outage = True
                fuzzed.broker.cut()
            elif sent == restore_at:
                fuzzed.broker.restore()
                assert wait_until(fuzzed.ready, 30), fuzzed.readiness()
                ledger.outage = False
            try:
                check(request, send(client, base, paths, request), ledger)
            except AssertionError as exc:
                exc.add_note(f"request {sent}: {request!r}"[:3000])
                raise
            # the daemon stays healthy all along, not only at the end
            if sent % 2000 == 0 and not ledger.outage:
                assert fuzzed.ready(), fuzzed.readiness()
                probes.append(probe(client, base, paths, sent))

        probes.extend(probe(client, base, paths, sent + n) for n in range(1, 6))
        assert fuzzed.ready(), fuzzed.readiness()
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
