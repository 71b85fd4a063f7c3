"""Client-certificate authentication per endpoint on the real ingress and broker, and the ops
server over HTTPS: a REST webhook answers 403 and a SOAP endpoint a Client fault (HTTP 403)
without a verified, allowed certificate, and nothing is stored; with one, the event is stored."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.helpers import queue_count
from tests.integration.rest_helpers import catch_all_route, endpoint
from tests.tls_helpers import Pki

pytestmark = pytest.mark.integration

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SF_NS = "http://soap.sforce.com/2005/09/outbound"
ORG = "00D5e000000AbCdEAA"


@pytest.fixture
def pkis(tmp_path: Path) -> tuple[Pki, Pki]:
    """(the CA of the ingress certificate, the CA of the senders' client certificates)"""
    return Pki(tmp_path, "server"), Pki(tmp_path, "clients")


@pytest.fixture
def https_ingress(
    make_config: Callable[..., LoadedConfig], prefix: str, pkis: tuple[Pki, Pki]
) -> Iterator[Callable[..., str]]:
    """Start an ingress-only daemon over HTTPS asking for client certificates; its base URL."""
    server, clients = pkis
    started: list[Daemon] = []

    def start(*sections: dict[str, Any]) -> str:
        tls = server.server_tls(client_ca_file=clients.ca_file).model_dump()
        loaded = make_config([catch_all_route(prefix)], inbound=list(sections),
                             ingress={"port": 0, "tls": tls})
        daemon = Daemon(loaded, Role.INGRESS)
        daemon.start()
        started.append(daemon)
        assert daemon.ingress is not None
        return f"https://127.0.0.1:{daemon.ingress.port}"

    yield start
    for daemon in started:
        daemon.stop()


def _client(server: Pki, *chain: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=server.ca_file)
    if chain:
        context.load_cert_chain(*chain)
    return context


def _stored(amqp_url: str, prefix: str) -> int:
    return queue_count(amqp_url, queue_name(f"{prefix}-r"))


def _subject(cert_file: str) -> str:
    from cryptography import x509

    return x509.load_pem_x509_certificate(Path(cert_file).read_bytes()).subject.rfc4514_string()


def test_tls_rest_endpoint_requires_an_allowed_client_certificate(
    amqp_url: str, prefix: str, pkis: tuple[Pki, Pki], https_ingress: Callable[..., str]
) -> None:
    server, clients = pkis
    crm = clients.issue("crm", "crm.example.com", common_name="crm.example.com")
    intruder = clients.issue("intruder", "x.example.com", common_name="x.example.com")
    hook = endpoint(prefix, "mtls", client_cert={"allowed_subjects": [_subject(crm[0])]})
    open_hook = endpoint(prefix, "open")
    base = https_ingress(hook, open_hook)
    url = f"{base}{hook['path']}"
    body = {"customer_no": "C-1"}
    # Without a certificate, or with one the endpoint does not list: 403, nothing stored
    refused = httpx.post(url, json=body, verify=_client(server))
    assert refused.status_code == 403
    assert "requires a client certificate" in refused.json()["detail"]
    other = httpx.post(url, json=body, verify=_client(server, *intruder))
    assert other.status_code == 403 and "CN=x.example.com" in other.json()["detail"]
    assert _stored(amqp_url, prefix) == 0
    # With the listed certificate the event is accepted and stored
    accepted = httpx.post(url, json=body, verify=_client(server, *crm))
    assert accepted.status_code == 202, accepted.text
    assert _stored(amqp_url, prefix) == 1
    # An endpoint without client_cert on the same listener takes requests without one
    assert httpx.post(f"{base}{open_hook['path']}", json=body,
                      verify=_client(server)).status_code == 202


def _notification() -> bytes:
    return (f'<soapenv:Envelope xmlns:soapenv="{SOAP11}"><soapenv:Body>'
            f'<notifications xmlns="{SF_NS}"><OrganizationId>{ORG}</OrganizationId>'
            "<Notification><Id>04l000000000001AAA</Id><sObject><Id>00Q1</Id></sObject>"
            "</Notification></notifications></soapenv:Body></soapenv:Envelope>").encode()


def test_tls_salesforce_endpoint_answers_a_client_fault_without_a_client_certificate(
    amqp_url: str, prefix: str, pkis: tuple[Pki, Pki], https_ingress: Callable[..., str]
) -> None:
    server, clients = pkis
    salesforce = clients.issue("sf", "proxy.salesforce.com", common_name="proxy.salesforce.com")
    section = {"type": "salesforce-om", "name": f"{prefix}-sf", "path": f"/soap/{prefix}/sf",
               "organization_id": ORG, "system": prefix, "entity": "lead",
               "client_cert": {"required": True}}
    url = https_ingress(section) + section["path"]
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    refused = httpx.post(url, content=_notification(), headers=headers, verify=_client(server))
    assert refused.status_code == 403
    fault = etree.fromstring(refused.content).find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert fault is not None and fault.findtext("faultcode") == "soapenv:Client"
    assert "requires a client certificate" in (fault.findtext("faultstring") or "")
    assert _stored(amqp_url, prefix) == 0
    acked = httpx.post(url, content=_notification(), headers=headers,
                       verify=_client(server, *salesforce))
    assert acked.status_code == 200, acked.text
    assert etree.fromstring(acked.content).findtext(f".//{{{SF_NS}}}Ack") == "true"
    assert _stored(amqp_url, prefix) == 1


def test_tls_ops_server_serves_health_over_https_only(
    make_config: Callable[..., LoadedConfig], prefix: str, pkis: tuple[Pki, Pki],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    server, _ = pkis
    loaded = make_config([catch_all_route(prefix)],
                         ops={"port": 0, "tls": server.server_tls().model_dump()})
    daemon = run_daemon(loaded)
    url = f"https://127.0.0.1:{daemon.ops.port}/healthz"
    assert httpx.get(url, verify=_client(server)).status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https://", "http://"), timeout=5)
