"""Concurrent copies of one delivery publish once (issue 11, finding 4), on both store backends.

Senders resend, and sometimes many copies arrive at once. Each test counts what reached the
events exchange through the route queue bound to it: exactly one message per delivery id, however
many copies raced, and a copy that could not know the outcome was told to retry, never 200.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.helpers import counter, queue_count, take_until, wait_until
from tests.integration.pg_helpers import pg_dsn  # noqa: F401  (a fixture)
from tests.integration.rest_helpers import catch_all_route, endpoint, hmac_hex
from tests.integration.soap_helpers import CuttableProxy, broker_proxy

pytestmark = pytest.mark.integration

SECRET = "dedupe-secret"
_SENTINELS = itertools.count()
ORG = "00D000000000001AAA"
SF_NS = "http://soap.sforce.com/2005/09/outbound"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "sqlite":
        return {"path": str(tmp_path / "store.db")}
    return {"kind": "postgres", "dsn": request.getfixturevalue("pg_dsn")}


@pytest.fixture
def ingress(
    prefix: str, make_config: Callable[..., LoadedConfig], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Daemon]]:
    """Start an ingress-only daemon for inbound sections and store settings; stopped after."""
    monkeypatch.setenv(f"{prefix.upper()}_SECRET", SECRET)
    started: list[Daemon] = []

    def start(*sections: dict[str, Any], **config: Any) -> Daemon:
        daemon = Daemon(make_config([catch_all_route(prefix)], inbound=list(sections),
                                    **config), Role.INGRESS)
        started.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def _github(prefix: str) -> dict[str, Any]:
    """A GitHub-signed endpoint: deduped by X-GitHub-Delivery without any dedupe setting."""
    return endpoint(prefix, "gh", auth={"scheme": "github",
                                        "secret_env": f"{prefix.upper()}_SECRET"})


def _signed(delivery: str) -> tuple[bytes, dict[str, str]]:
    body = b'{"customer_no": "C-1", "name": "Ada"}'
    return body, {"Content-Type": "application/json", "X-GitHub-Delivery": delivery,
                  "X-Hub-Signature-256": f"sha256={hmac_hex(SECRET, body)}"}


def _url(daemon: Daemon, path: str) -> str:
    assert daemon.ingress is not None
    return f"http://127.0.0.1:{daemon.ingress.port}{path}"


def _stored(amqp_url: str, prefix: str) -> int:
    return queue_count(amqp_url, queue_name(f"{prefix}-r"))


def _settled(amqp_url: str, prefix: str, send_sentinel: Callable[[], str]) -> int:
    """How many messages were stored ahead of a sentinel delivery, sent through the same
    endpoint once every answer was in; takes them (and the sentinel) off the queue.

    A late duplicate would be published ahead of the sentinel (one publisher, in order), so
    this count is evidence where a count after a pause only hoped the pause was long enough.
    """
    sentinel = send_sentinel()
    return len(take_until(amqp_url, queue_name(f"{prefix}-r"),
                          lambda props, _: props.message_id == sentinel, 15))


def _github_sentinel(url: str) -> Callable[[], str]:
    """Sends a new signed delivery to a GitHub-signed endpoint; returns its event id."""
    def send() -> str:
        delivery = f"sentinel-{next(_SENTINELS)}"
        body, headers = _signed(delivery)
        answer = httpx.post(url, content=body, headers=headers, timeout=15)
        assert answer.status_code == 202, answer.text
        return delivery

    return send


def _at_once(url: str, body: bytes, headers: dict[str, str], copies: int) -> list[httpx.Response]:
    async def send() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=copies, max_keepalive_connections=copies)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            return list(await asyncio.gather(*[client.post(url, content=body, headers=headers)
                                               for _ in range(copies)]))

    return asyncio.run(send())


def test_ingress_50_concurrent_copies_of_one_signed_request_publish_once(
    amqp_url: str, prefix: str, store: dict[str, Any], ingress: Callable[..., Daemon],
) -> None:
    section = _github(prefix)
    url = _url(ingress(section, store=store), section["path"])
    body, headers = _signed(f"{prefix}-delivery-1")
    # When fifty copies of one signed delivery arrive at once
    answers = _at_once(url, body, headers, 50)
    # Then one was accepted, the others were duplicates or told to retry; one message stored
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(202) == 1, statuses
    assert set(statuses) <= {200, 202, 503}, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["retry-after"]
            assert answer.json()["error"] == "delivery in progress", answer.text
        if answer.status_code == 200:
            assert answer.json()["status"] == "duplicate"
    assert _settled(amqp_url, prefix, _github_sentinel(url)) == 1
    # And the sender's retry of a 503 learns the outcome: a duplicate, nothing republished
    again = httpx.post(url, content=body, headers=headers)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert _settled(amqp_url, prefix, _github_sentinel(url)) == 0


def _notifications(ids: list[str]) -> bytes:
    items = "".join(
        f"<Notification><Id>{ident}</Id><sObject xmlns:sf=\"urn:sobject.enterprise.soap."
        f"sforce.com\" xsi:type=\"sf:Lead\"><sf:Id>00Q{n}</sf:Id><sf:Company>Acme</sf:Company>"
        f"</sObject></Notification>" for n, ident in enumerate(ids))
    return (f'<soapenv:Envelope xmlns:soapenv="{SOAP11}" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
            f'<notifications xmlns="{SF_NS}"><OrganizationId>{ORG}</OrganizationId>{items}'
            "</notifications></soapenv:Body></soapenv:Envelope>").encode()


def test_ingress_20_concurrent_copies_of_a_salesforce_notification_publish_once(
    amqp_url: str, prefix: str, store: dict[str, Any], ingress: Callable[..., Daemon],
) -> None:
    section = {"type": "salesforce-om", "name": f"{prefix}-sf", "path": f"/soap/{prefix}/sf",
               "organization_id": ORG, "system": prefix, "entity": "lead"}
    url = _url(ingress(section, store=store), section["path"])
    body = _notifications([f"04l{prefix[-8:]}A1", f"04l{prefix[-8:]}A2"])
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    # When Salesforce's resends of one message (two notifications) arrive twenty at once
    answers = _at_once(url, body, headers, 20)
    # Then some copy was acked, the rest acked as duplicates or faulted as retryable
    acked = [a for a in answers if a.status_code == 200]
    assert acked and all(b"<Ack>true</Ack>" in a.content for a in acked)
    for answer in answers:
        if answer.status_code != 200:
            assert answer.status_code == 500 and b"Server" in answer.content, answer.text
            assert answer.headers["retry-after"]
    # and each notification reached the exchange exactly once
    def sentinel() -> str:
        notification = f"04l{prefix[-8:]}S{next(_SENTINELS)}"
        answer = httpx.post(url, content=_notifications([notification]), headers=headers)
        assert answer.status_code == 200 and b"<Ack>true</Ack>" in answer.content, answer.text
        return notification

    assert _settled(amqp_url, prefix, sentinel) == 2
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    assert _settled(amqp_url, prefix, sentinel) == 0


def test_ingress_failed_publish_releases_the_claim_so_the_resend_is_published(
    amqp_url: str, prefix: str, store: dict[str, Any], ingress: Callable[..., Daemon],
) -> None:
    section = _github(prefix)
    with broker_proxy(amqp_url) as (proxy, proxied_url):
        daemon = ingress(section, store=store, broker={
            "url": proxied_url, "publish_timeout": 2, "reconnect_max_delay": 0.5})
        url = _url(daemon, section["path"])
        body, headers = _signed(f"{prefix}-delivery-2")
        # Given the broker connection is lost, the delivery is refused with 503
        proxy.cut()
        assert wait_until(lambda: not daemon.publisher.connected, 10)
        refused = httpx.post(url, content=body, headers=headers, timeout=15)
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert refused.json()["error"] == "temporarily unable to store events"
        # When the broker is back, the sender's retry is published (its claim was released)
        proxy.restore()
        assert wait_until(lambda: daemon.publisher.connected, 20)
        retried = httpx.post(url, content=body, headers=headers, timeout=15)
        assert retried.status_code == 202, retried.text
        assert _settled(amqp_url, prefix, _github_sentinel(url)) == 1


def test_ingress_claim_of_a_dead_replica_blocks_until_stale_then_is_taken_over(
    amqp_url: str, prefix: str, store: dict[str, Any], ingress: Callable[..., Daemon],
) -> None:
    section = _github(prefix)
    daemon = ingress(section, store=store, broker={"url": amqp_url, "publish_timeout": 0.5})
    url = _url(daemon, section["path"])
    delivery = f"{prefix}-delivery-3"
    body, headers = _signed(delivery)
    # Given a replica claimed the delivery and died before publishing (stale after 1.5 s)
    daemon.stores.idempotency.claim(f"ingress:{section['name']}", [delivery], stale_after=60)
    # Then a copy arriving meanwhile is told to retry, not acknowledged
    early = httpx.post(url, content=body, headers=headers)
    assert early.status_code == 503 and early.json()["error"] == "delivery in progress"
    assert _stored(amqp_url, prefix) == 0
    # And once the claim is stale, the next copy takes it over and publishes
    time.sleep(1.7)
    late = httpx.post(url, content=body, headers=headers)
    assert late.status_code == 202, late.text
    assert _settled(amqp_url, prefix, _github_sentinel(url)) == 1


def test_ingress_store_outage_is_503_counted_and_heals_without_restart(
    amqp_url: str, prefix: str, pg_dsn: str, ingress: Callable[..., Daemon],  # noqa: F811
) -> None:
    # Given the PostgreSQL store is reached through a connection the test can cut
    parts = urlsplit(pg_dsn)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    try:
        dsn = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        section = _github(prefix)
        url = _url(ingress(section, store={"kind": "postgres", "dsn": dsn, "connect_timeout": 1,
                                           "statement_timeout": 1}), section["path"])
        body, headers = _signed(f"{prefix}-delivery-4")
        failures = counter("silobridge_store_errors_total", store="idempotency",
                           operation="claim")
        # When the database cannot be reached, the sender is told to retry: 503, never 500
        proxy.cut()
        refused = httpx.post(url, content=body, headers=headers, timeout=15)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"]
        assert "dedupe store is unavailable" in refused.json()["detail"]
        assert counter("silobridge_store_errors_total", store="idempotency",
                       operation="claim") == failures + 1
        assert _stored(amqp_url, prefix) == 0
        # Then, once it is back, the same process accepts the retry
        proxy.restore()
        assert wait_until(lambda: httpx.post(url, content=body, headers=headers,
                                             timeout=15).status_code == 202, 15, step=0.5)
        assert _settled(amqp_url, prefix, _github_sentinel(url)) == 1
    finally:
        proxy.close()
