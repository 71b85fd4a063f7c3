"""Every webhook auth scheme over real HTTP (the ingress under uvicorn, the real broker).

Each scheme accepts a correctly signed real vendor payload (202, published), and rejects a wrong,
a missing and, where the scheme signs a timestamp, a stale signature (401, nothing published).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.helpers import queue_count, wait_until
from tests.integration.rest_helpers import (
    catch_all_route,
    endpoint,
    hmac_b64,
    hmac_hex,
    realworld,
)

pytestmark = pytest.mark.integration

SECRET, OLD_SECRET = "s3cret-current", "s3cret-previous"


@pytest.fixture
def ingress(
    prefix: str, make_config: Callable[..., LoadedConfig], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., list[str]]]:
    """Start an ingress-only daemon with the endpoints; return their URLs."""
    monkeypatch.setenv(f"{prefix.upper()}_SECRET", SECRET)
    monkeypatch.setenv(f"{prefix.upper()}_OLD", OLD_SECRET)
    started: list[Daemon] = []

    def run(*sections: dict[str, Any]) -> list[str]:
        loaded = make_config([catch_all_route(prefix)], inbound=list(sections))
        daemon = Daemon(loaded, Role.INGRESS)
        daemon.start()
        started.append(daemon)
        assert daemon.ingress is not None
        return [f"http://127.0.0.1:{daemon.ingress.port}{s['path']}" for s in sections]

    yield run
    for daemon in started:
        daemon.stop()


def _auth(prefix: str, scheme: str, /, **extra: Any) -> dict[str, Any]:
    return {"scheme": scheme, "secret_env": f"{prefix.upper()}_SECRET",
            "previous_secret_env": f"{prefix.upper()}_OLD", **extra}


def _published(amqp_url: str, prefix: str) -> int:
    return queue_count(amqp_url, queue_name(f"{prefix}-r"))


def _expect(response: httpx.Response, status: int, amqp_url: str, prefix: str,
            published: int) -> None:
    assert response.status_code == status, response.text
    if status == 202:
        assert wait_until(lambda: _published(amqp_url, prefix) == published, 5)
    elif status == 200:
        assert _published(amqp_url, prefix) == published
    else:
        assert response.json()["error"] and response.json()["detail"]
        assert _published(amqp_url, prefix) == published


def test_shopify_signature_accepts_real_order_and_rejects_wrong_or_missing(
    amqp_url: str, prefix: str, ingress: Callable[..., list[str]],
) -> None:
    # Given the orders/create body of Shopify's own order fixture (the inner object)
    body = json.dumps(json.loads(realworld("shopify-order-rest-fixture.json"))["order"]).encode()
    [url] = ingress(endpoint(prefix, "shopify", auth=_auth(prefix, "shopify"), derive={
        "entity": {"value": "order"},
        "action": {"header": "X-Shopify-Topic", "map": {"orders/create": "created"}},
        "subject": {"path": "id"}, "time": {"path": "updated_at"}}))
    headers = {"Content-Type": "application/json", "X-Shopify-Topic": "orders/create",
               "X-Shopify-Webhook-Id": f"{prefix}-w1"}
    good = httpx.post(url, content=body, headers={
        **headers, "X-Shopify-Hmac-SHA256": hmac_b64(SECRET, body)})
    _expect(good, 202, amqp_url, prefix, 1)
    assert good.json()["ids"] == [f"{prefix}-w1"]
    # Shopify retries with the same X-Shopify-Webhook-Id: answered 200, not published again
    resent = httpx.post(url, content=body, headers={
        **headers, "X-Shopify-Hmac-SHA256": hmac_b64(SECRET, body)})
    _expect(resent, 200, amqp_url, prefix, 1)
    assert resent.json()["status"] == "duplicate"
    # the secret being rotated out is still accepted
    rotated = httpx.post(url, content=body, headers={
        **headers, "X-Shopify-Webhook-Id": f"{prefix}-w2",
        "X-Shopify-Hmac-SHA256": hmac_b64(OLD_SECRET, body)})
    _expect(rotated, 202, amqp_url, prefix, 2)
    wrong = httpx.post(url, content=body, headers={
        **headers, "X-Shopify-Webhook-Id": f"{prefix}-w3",
        "X-Shopify-Hmac-SHA256": hmac_b64("other", body)})
    _expect(wrong, 401, amqp_url, prefix, 2)
    missing = httpx.post(url, content=body, headers={**headers, "X-Shopify-Webhook-Id": "w4"})
    _expect(missing, 401, amqp_url, prefix, 2)


def test_github_signature_accepts_signed_json_and_rejects_wrong_or_missing(
    amqp_url: str, prefix: str, ingress: Callable[..., list[str]],
) -> None:
    [url] = ingress(endpoint(prefix, "github", auth={
        "scheme": "github", "secret_env": f"{prefix.upper()}_OLD"}))
    body = realworld("salesforce-cdc-AccountChangeEvent-cometd.json")
    headers = {"Content-Type": "application/json", "X-GitHub-Delivery": f"{prefix}-d1"}
    good = httpx.post(url, content=body, headers={
        **headers, "X-Hub-Signature-256": f"sha256={hmac_hex(OLD_SECRET, body)}"})
    _expect(good, 202, amqp_url, prefix, 1)
    wrong = httpx.post(url, content=body + b" ", headers={
        **headers, "X-Hub-Signature-256": f"sha256={hmac_hex(OLD_SECRET, body)}"})
    _expect(wrong, 401, amqp_url, prefix, 1)
    _expect(httpx.post(url, content=body, headers=headers), 401, amqp_url, prefix, 1)


def test_github_published_vector_passes_signature_check(
    prefix: str, ingress: Callable[..., list[str]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(f"{prefix.upper()}_VECTOR", "It's a Secret to Everybody")
    [url] = ingress(endpoint(prefix, "vector", auth={
        "scheme": "github", "secret_env": f"{prefix.upper()}_VECTOR"}))
    response = httpx.post(url, content=b"Hello, World!", headers={
        "Content-Type": "application/json",
        "X-Hub-Signature-256":
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"})
    # authentic, but "Hello, World!" is not JSON: 400 with the position, not 401
    assert response.status_code == 400, response.text
    assert response.json()["position"] == 0


def test_stripe_signature_real_event_with_bom_tolerance_and_rotation(
    amqp_url: str, prefix: str, ingress: Callable[..., list[str]],
) -> None:
    body = realworld("aspnet-stripe-event-customer.source.created.json")  # starts with a BOM
    [url] = ingress(endpoint(prefix, "stripe", auth=_auth(prefix, "stripe", tolerance=300),
                           derive={"entity": {"value": "customer"},
                                   "action": {"path": "type", "pattern": r"\.(\w+)$"}}))
    now = int(time.time())

    def signed(stamp: int, *secrets: str) -> dict[str, str]:
        v1 = ",".join(f"v1={hmac_hex(s, f'{stamp}.'.encode() + body)}" for s in secrets)
        return {"Content-Type": "application/json", "Stripe-Signature": f"t={stamp},{v1}"}

    good = httpx.post(url, content=body, headers=signed(now, "whsec_other", SECRET))
    _expect(good, 202, amqp_url, prefix, 1)
    assert good.json()["ids"] == ["evt_17Y0a62eZvKYlo2CfDvB2QrJ"]
    stale = httpx.post(url, content=body, headers=signed(now - 301, SECRET))
    _expect(stale, 401, amqp_url, prefix, 1)
    assert "stale" in stale.json()["error"]
    _expect(httpx.post(url, content=body, headers=signed(now, "whsec_other")), 401,
            amqp_url, prefix, 1)
    _expect(httpx.post(url, content=body, headers={"Content-Type": "application/json"}), 401,
            amqp_url, prefix, 1)


def test_hubspot_v3_batch_becomes_one_envelope_per_event(
    amqp_url: str, prefix: str, ingress: Callable[..., list[str]],
) -> None:
    # HubSpot's documented contact.creation delivery, plus a second event in the same batch
    body = (b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
            b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
            b'"changeSource":"CRM","changeFlag":"NEW","appId":54321},'
            b'{"eventId":2,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600001,'
            b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":124,'
            b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]')
    section = endpoint(prefix, "hubspot", path="/webhook_uri", auth=_auth(
        prefix, "hubspot", public_url="https://www.example.com"), derive={
        "entity": {"path": "subscriptionType", "pattern": r"^([^.]+)\."},
        "action": {"path": "subscriptionType", "pattern": r"\.(\w+)$",
                   "map": {"creation": "created"}},
        "subject": {"path": "objectId"}, "time": {"path": "occurredAt"},
        "id": {"cel": "'hubspot-' + string(payload.eventId)"}})
    section["path"] = f"/hooks/{prefix}/webhook_uri"
    [url] = ingress(section)
    public = "https://www.example.com" + section["path"]

    def signed(stamp: int, secret: str) -> dict[str, str]:
        base = b"POST" + public.encode() + body + str(stamp).encode()
        return {"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": str(stamp),
                "X-HubSpot-Signature-v3": hmac_b64(secret, base)}

    now_ms = int(time.time() * 1000)
    good = httpx.post(url, content=body, headers=signed(now_ms, SECRET))
    _expect(good, 202, amqp_url, prefix, 2)
    assert good.json()["ids"] == ["hubspot-1", "hubspot-2"]
    # a retry carries the same eventIds (with a new timestamp): nothing is published again
    resent = httpx.post(url, content=body, headers=signed(now_ms + 1000, SECRET))
    _expect(resent, 200, amqp_url, prefix, 2)
    stale = httpx.post(url, content=body, headers=signed(now_ms - 301_000, SECRET))
    _expect(stale, 401, amqp_url, prefix, 2)
    _expect(httpx.post(url, content=body, headers=signed(now_ms, "nope")), 401, amqp_url,
            prefix, 2)
    _expect(httpx.post(url, content=body, headers={"Content-Type": "application/json"}), 401,
            amqp_url, prefix, 2)


def test_generic_hmac_signs_salesforce_cdc_event_with_timestamp(
    amqp_url: str, prefix: str, ingress: Callable[..., list[str]],
) -> None:
    body = realworld("salesforce-cdc-AccountChangeEvent-cometd.json")
    [url] = ingress(endpoint(prefix, "sfdc", auth=_auth(
        prefix, "hmac", header="X-Signature", encoding="hex", prefix="sha256=",
        timestamp_header="X-Timestamp", signed_payload="{timestamp}.{body}")))

    def signed(stamp: int, secret: str, content: bytes = body) -> dict[str, str]:
        digest = hmac_hex(secret, f"{stamp}.".encode() + content)
        return {"Content-Type": "application/json", "X-Timestamp": str(stamp),
                "X-Signature": f"sha256={digest}"}

    now = int(time.time())
    _expect(httpx.post(url, content=body, headers=signed(now, SECRET)), 202, amqp_url, prefix, 1)
    _expect(httpx.post(url, content=body, headers=signed(now, SECRET, body[:-1])), 401,
            amqp_url, prefix, 1)
    stale = httpx.post(url, content=body, headers=signed(now - 600, SECRET))
    _expect(stale, 401, amqp_url, prefix, 1)
    assert stale.json()["error"] == "stale credentials"
    _expect(httpx.post(url, content=body, headers={"Content-Type": "application/json"}), 401,
            amqp_url, prefix, 1)


def test_api_key_query_and_basic_auth_with_dynamics_webhook(
    amqp_url: str, prefix: str, ingress: Callable[..., list[str]],
) -> None:
    body = realworld("dynamics365-webhook-RemoteExecutionContext-contact-update.json")
    derive = {"entity": {"path": "PrimaryEntityName"},
              "action": {"path": "MessageName", "map": {"Update": "updated"}},
              "subject": {"path": "PrimaryEntityId"}, "time": {"path": "OperationCreatedOn"}}
    keyed, basic = ingress(
        endpoint(prefix, "d365key", derive=derive, auth=_auth(prefix, "api_key", query="code")),
        endpoint(prefix, "d365basic", derive=derive,
                 auth=_auth(prefix, "basic", username="dynamics")))
    headers = {"Content-Type": "application/json"}
    _expect(httpx.post(keyed, params={"code": SECRET}, content=body, headers=headers), 202,
            amqp_url, prefix, 1)
    _expect(httpx.post(keyed, params={"code": "guess"}, content=body, headers=headers), 401,
            amqp_url, prefix, 1)
    _expect(httpx.post(keyed, content=body, headers=headers), 401, amqp_url, prefix, 1)
    good = httpx.post(basic, content=body, headers=headers, auth=("dynamics", OLD_SECRET))
    _expect(good, 202, amqp_url, prefix, 2)
    _expect(httpx.post(basic, content=body, headers=headers, auth=("dynamics", "x")), 401,
            amqp_url, prefix, 2)
    missing = httpx.post(basic, content=body, headers=headers)
    _expect(missing, 401, amqp_url, prefix, 2)
    assert missing.headers["www-authenticate"] == 'Basic realm="silobridge"'
    token = base64.b64encode(b"dynamics:" + SECRET.encode()).decode()
    assert httpx.post(basic, content=body, headers={
        **headers, "Authorization": f"Basic {token}"}).status_code == 202


def test_hubspot_dedupe_scope_is_the_derived_id_so_two_portals_with_one_event_id_both_arrive(
    amqp_url: str, prefix: str, ingress: Callable[..., list[str]],
) -> None:
    # Given an endpoint whose id is portal + event (HubSpot's eventId is unique per portal only)
    section = endpoint(prefix, "hubspot", path="/webhook_uri", auth=_auth(
        prefix, "hubspot", public_url="https://www.example.com"), derive={
        "entity": {"value": "contact"}, "action": {"value": "created"},
        "id": {"cel": "'hubspot-' + string(payload.portalId) + '-' + string(payload.eventId)"}})
    section["path"] = f"/hooks/{prefix}/webhook_uri"
    [url] = ingress(section)
    public = "https://www.example.com" + section["path"]

    def send(portal: int) -> httpx.Response:
        body = f'[{{"eventId":7,"portalId":{portal},"objectId":1}}]'.encode()
        stamp = str(int(time.time() * 1000))
        base = b"POST" + public.encode() + body + stamp.encode()
        return httpx.post(url, content=body, headers={
            "Content-Type": "application/json", "X-HubSpot-Request-Timestamp": stamp,
            "X-HubSpot-Signature-v3": hmac_b64(SECRET, base)})

    # When two portals send the same eventId, then the first portal resends its event
    _expect(send(1), 202, amqp_url, prefix, 1)
    second = send(2)
    _expect(second, 202, amqp_url, prefix, 2)
    assert second.json()["ids"] == ["hubspot-2-7"]
    _expect(send(1), 200, amqp_url, prefix, 2)
