"""Rate limits and concurrency caps of ingress endpoints, on the real daemon and broker.

Fifty senders at once against a cap of five: five are admitted (and published exactly once), the
other forty-five get 503 + Retry-After before their bodies are read, and the daemon stays ready.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.helpers import take_until, wait_until
from tests.integration.rest_helpers import catch_all_route, endpoint

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHIPMENTS_WSDL = ROOT / "mappings" / "examples" / "soap-inbound" / "shipments.wsdl"


@pytest.fixture
def ingress(
    make_config: Callable[..., LoadedConfig], prefix: str
) -> Iterator[Callable[..., Daemon]]:
    """Start an ingress-only daemon for inbound sections and ``ingress.limits``."""
    started: list[Daemon] = []

    def start(sections: list[dict[str, Any]], limits: dict[str, Any]) -> Daemon:
        loaded = make_config([catch_all_route(prefix)], inbound=sections,
                             ingress={"port": 0, "limits": limits})
        daemon = Daemon(loaded, Role.INGRESS)
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def _url(daemon: Daemon, path: str) -> str:
    assert daemon.ingress is not None
    return f"http://127.0.0.1:{daemon.ingress.port}{path}"


def test_ingress_client_rate_limit_is_429_with_retry_after_per_address(
    ingress: Callable[..., Daemon], prefix: str
) -> None:
    section = endpoint(prefix, "rated")
    daemon = ingress([section], {"endpoints": {section["name"]: {"client_rate": 0.2,
                                                                 "client_burst": 2}}})
    url, body = _url(daemon, section["path"]), {"customer_no": "C-1"}
    with httpx.Client() as client:
        first = [client.post(url, json=body).status_code for _ in range(2)]
        refused = client.post(url, json=body)
    assert first == [202, 202]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "5"  # one request per 5 s per address
    assert "client_rate" in refused.json()["detail"]
    # another client address still gets its own burst
    other = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=other) as client:
        assert client.post(url, json=body).status_code == 202


def test_ingress_limits_apply_to_soap_endpoints_alike(
    ingress: Callable[..., Daemon], prefix: str
) -> None:
    section = {"type": "soap", "name": f"{prefix}-ship", "path": f"/soap/{prefix}/ship",
               "wsdl": str(SHIPMENTS_WSDL), "system": prefix, "operations": {
                   "ReportShipments": {"each": "Shipment", "derive": {
                       "entity": {"value": "shipment"}, "action": {"value": "reported"}},
                       "reply": {"Accepted": True, "Count": "{count}"}}}}
    daemon = ingress([section], {"rate": 1, "burst": 1})
    with httpx.Client() as client:
        wsdl = client.get(_url(daemon, section["path"]) + "?wsdl")
        refused = client.get(_url(daemon, section["path"]) + "?wsdl")
    assert wsdl.status_code == 200
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"


def _open_request(port: int, path: str, body: bytes) -> socket.socket:
    """Send a head and all of the body but its last byte: the request stays in the endpoint."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body[:-1])
    return sock


def _answer(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_ingress_fifty_concurrent_requests_with_cap_five(
    ingress: Callable[..., Daemon], prefix: str, amqp_url: str
) -> None:
    section = endpoint(prefix, "capped", derive={
        "entity": {"value": "customer"}, "action": {"value": "updated"},
        "subject": {"path": "customer_no"}})
    daemon = ingress([section], {"endpoints": {section["name"]: {"max_concurrent": 5,
                                                                 "retry_after": 2}}})
    assert daemon.ingress is not None
    bodies = [json.dumps({"customer_no": f"C-{n}"}).encode() for n in range(50)]

    # When fifty senders are inside their requests at once (bodies not yet complete)
    sockets = [_open_request(daemon.ingress.port, section["path"], body) for body in bodies]
    try:
        for sock in sockets:
            sock.settimeout(0.2)
        answers: dict[int, bytes] = {}

        def refused_all_but_five() -> bool:
            for n, sock in enumerate(sockets):
                if n not in answers:
                    with contextlib.suppress(TimeoutError):  # still inside: admitted
                        answers[n] = _answer(sock)
            return len(answers) >= 45

        # Then forty-five are refused at once, before their bodies are read
        assert wait_until(refused_all_but_five, 20, step=0)
        assert len(answers) == 45
        assert all(a.startswith(b"HTTP/1.1 503 ") and b"retry-after: 2" in a.lower()
                   for a in answers.values())
        assert all(daemon.readiness().values())
        # And the five admitted ones complete once their last byte arrives
        admitted = [n for n in range(50) if n not in answers]
        for n in admitted:
            sockets[n].settimeout(10)
            sockets[n].sendall(bodies[n][-1:])
        accepted = [_answer(sockets[n]) for n in admitted]
    finally:
        for sock in sockets:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 202 ") for a in accepted)

    # Published exactly once each (counted ahead of the next request, which is stored behind
    # them: a late copy would be ahead of it); the daemon is still ready and serves that request
    queue = queue_name(f"{prefix}-r")
    assert httpx.post(_url(daemon, section["path"]), json={"customer_no": "C-next"}).status_code \
        == 202
    stored = take_until(amqp_url, queue, lambda _, body: json.loads(body)["subject"] == "C-next")
    subjects = sorted(json.loads(body)["subject"] for _, body in stored)
    assert subjects == sorted(f"C-{n}" for n in admitted)
    assert all(daemon.readiness().values())
    ops = httpx.get(f"http://127.0.0.1:{daemon.ops.port}/readyz")
    assert ops.status_code == 200
