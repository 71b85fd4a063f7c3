"""Issue 11 findings 3 and 5 over real HTTP (the ingress under uvicorn, the real broker).

Replays of a signed request with a new or missing id, or after the window, are refused; odd
digits in timestamp headers are 401s counted as rejections, never 500s; HubSpot event ids past
2^64 stay distinct; an unexpected error is a JSON 500 and the endpoint keeps serving.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from adapters._derive import Deriver
from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from middleware.log import configure_logging
from tests.integration.helpers import counter, drain, queue_count, take_until, wait_until
from tests.integration.rest_helpers import catch_all_route, endpoint, hmac_b64

pytestmark = pytest.mark.integration

SECRET = "crm-signing-secret"
SW_KEY = b"standard-webhooks-key-32-bytes!!"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def ingress(
    prefix: str, make_config: Callable[..., LoadedConfig], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., list[str]]]:
    """Start an ingress-only daemon with the endpoints; return their URLs."""
    monkeypatch.setenv(f"{prefix.upper()}_SECRET", SECRET)
    monkeypatch.setenv(f"{prefix.upper()}_WHSEC", "whsec_" + base64.b64encode(SW_KEY).decode())
    started: list[Daemon] = []

    def run(*sections: dict[str, Any]) -> list[str]:
        daemon = Daemon(make_config([catch_all_route(prefix)], inbound=list(sections)),
                        Role.INGRESS)
        daemon.start()
        started.append(daemon)
        assert daemon.ingress is not None
        return [f"http://127.0.0.1:{daemon.ingress.port}{s['path']}" for s in sections]

    yield run
    for daemon in started:
        daemon.stop()


def _published(amqp_url: str, prefix: str) -> int:
    return queue_count(amqp_url, queue_name(f"{prefix}-r"))


def _published_before(amqp_url: str, prefix: str, sentinel: httpx.Response) -> int:
    """How many events were published ahead of a sentinel request accepted after all the others.

    A refused request that published anyway would be ahead of it (one publisher, in order): a
    count taken once the sentinel is there is evidence, one taken after a pause only a hope.
    """
    assert sentinel.status_code == 202, sentinel.text
    [sentinel_id] = sentinel.json()["ids"]
    return len(take_until(amqp_url, queue_name(f"{prefix}-r"),
                          lambda props, _: props.message_id == sentinel_id, 15))


def _signed_id_auth(prefix: str) -> dict[str, Any]:
    return {"scheme": "hmac", "secret_env": f"{prefix.upper()}_SECRET", "header": "X-Signature",
            "prefix": "sha256=", "id_header": "X-Request-Id", "timestamp_header": "X-Timestamp",
            "signed_payload": "{id}.{timestamp}.{body}"}


def _sign_id(request_id: str, stamp: int, body: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), f"{request_id}.{stamp}.".encode() + body, hashlib.sha256)
    return {**JSON, "X-Request-Id": request_id, "X-Timestamp": str(stamp),
            "X-Signature": f"sha256={digest.hexdigest()}"}


def test_generic_hmac_with_signed_id_refuses_replays(
    amqp_url: str, prefix: str, ingress: Callable[..., list[str]],
) -> None:
    [url] = ingress(endpoint(prefix, "crm", auth=_signed_id_auth(prefix)))
    body = json.dumps({"customer_no": "C-1001", "name": "ACME"}).encode()
    captured = _sign_id(f"{prefix}-req-1", int(time.time()), body)
    first = httpx.post(url, content=body, headers=captured)
    assert first.status_code == 202, first.text
    assert first.json()["ids"] == [f"{prefix}-req-1"]  # the signed id is the dedupe key
    assert wait_until(lambda: _published(amqp_url, prefix) == 1, 5)
    # When the captured request is sent again as it was: a duplicate, not published
    again = httpx.post(url, content=body, headers=captured)
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    # ... with a new X-Request-Id, or none: the signature no longer matches
    renamed = httpx.post(url, content=body, headers={**captured, "X-Request-Id": "other"})
    assert renamed.status_code == 401 and renamed.json()["error"] == "bad credentials"
    dropped = {k: v for k, v in captured.items() if k != "X-Request-Id"}
    missing = httpx.post(url, content=body, headers=dropped)
    assert missing.status_code == 401 and "X-Request-Id" in missing.json()["detail"]
    # ... after the window (a request captured ten minutes ago, with an id never seen)
    old = httpx.post(url, content=body,
                     headers=_sign_id(f"{prefix}-req-2", int(time.time()) - 600, body))
    assert old.status_code == 401 and old.json()["error"] == "stale credentials"
    sentinel = httpx.post(url, content=body,
                          headers=_sign_id(f"{prefix}-sentinel", int(time.time()), body))
    assert _published_before(amqp_url, prefix, sentinel) == 1


def _sw_headers(webhook_id: str, stamp: int, body: bytes, key: bytes = SW_KEY) -> dict[str, str]:
    signed = f"{webhook_id}.{stamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {**JSON, "webhook-id": webhook_id, "webhook-timestamp": str(stamp),
            "webhook-signature": f"v1,{signature}"}


def test_standard_webhooks_scheme_dedupes_on_signed_id_and_refuses_replays(
    amqp_url: str, prefix: str, ingress: Callable[..., list[str]],
) -> None:
    [url] = ingress(endpoint(prefix, "sw", auth={
        "scheme": "standard_webhooks", "secret_env": f"{prefix.upper()}_WHSEC"}))
    body = b'{"type":"invoice.paid","data":{"id":"inv_1"}}'
    now = int(time.time())
    captured = _sw_headers(f"msg_{prefix}_1", now, body)
    first = httpx.post(url, content=body, headers=captured)
    assert first.status_code == 202, first.text
    assert first.json()["ids"] == [f"msg_{prefix}_1"]
    assert wait_until(lambda: _published(amqp_url, prefix) == 1, 5)
    assert httpx.post(url, content=body, headers=captured).status_code == 200
    assert httpx.post(url, content=body, headers={
        **captured, "webhook-id": f"msg_{prefix}_2"}).status_code == 401
    stale = httpx.post(url, content=body, headers=_sw_headers(f"msg_{prefix}_3", now - 301, body))
    assert stale.status_code == 401 and stale.json()["error"] == "stale credentials"
    wrong = httpx.post(url, content=body, headers=_sw_headers(f"msg_{prefix}_4", now, body,
                                                              key=b"x" * 32))
    assert wrong.status_code == 401
    sentinel = httpx.post(url, content=body, headers=_sw_headers(f"msg_{prefix}_sentinel",
                                                                 int(time.time()), body))
    assert _published_before(amqp_url, prefix, sentinel) == 1


# Timestamp values as they arrive on the wire (Starlette reads header bytes as latin-1, so the
# superscripts are the bytes B9 B2 B3, which str.isdigit() accepts and int() refuses).
ODD_STAMPS = [b"\xb9\xb2\xb3", "١٦١٤٢٦٥٣٣٠".encode(), b"9" * 5000, b"-1614265330", b""]


def test_odd_timestamp_digits_are_401_and_counted_never_500(
    prefix: str, ingress: Callable[..., list[str]],
) -> None:
    schemes: dict[str, tuple[dict[str, Any], Callable[[bytes], dict[str, Any]]]] = {
        "hmac": (_signed_id_auth(prefix), lambda stamp: {
            "X-Request-Id": "r", "X-Signature": "sha256=00", "X-Timestamp": stamp}),
        "sw": ({"scheme": "standard_webhooks", "secret_env": f"{prefix.upper()}_WHSEC"},
               lambda stamp: {"webhook-id": "m", "webhook-signature": "v1,AAAA",
                              "webhook-timestamp": stamp}),
        "stripe": ({"scheme": "stripe", "secret_env": f"{prefix.upper()}_SECRET"},
                   lambda stamp: {"Stripe-Signature": b"t=" + stamp + b",v1=00"}),
        "hubspot": ({"scheme": "hubspot", "secret_env": f"{prefix.upper()}_SECRET"},
                    lambda stamp: {"X-HubSpot-Signature-v3": "AAAA",
                                   "X-HubSpot-Request-Timestamp": stamp}),
    }
    urls = ingress(*(endpoint(prefix, name, auth=auth) for name, (auth, _) in schemes.items()))
    for url, (name, (_, headers)) in zip(urls, schemes.items(), strict=True):
        labels = {"endpoint": f"{prefix}-{name}", "adapter": "rest", "reason": "bad_signature"}
        before = counter("silobridge_rejected_total", **labels)
        for stamp in ODD_STAMPS:
            answer = httpx.post(url, content=b"{}", headers={**JSON, **headers(stamp)})
            assert answer.status_code == 401, (name, stamp[:10], answer.text)
            assert answer.json()["detail"]
        after = counter("silobridge_rejected_total", **labels)
        assert after - before == len(ODD_STAMPS), name


def _hubspot_event(event_id: int) -> bytes:
    return (f'[{{"eventId":{event_id},"subscriptionId":12345,"portalId":62515,'
            f'"occurredAt":1564113600000,"subscriptionType":"contact.creation",'
            f'"attemptNumber":0,"objectId":123,"changeSource":"CRM","appId":54321}}]').encode()


def test_hubspot_event_ids_beyond_64_bits_are_both_delivered_exactly(
    amqp_url: str, prefix: str, ingress: Callable[..., list[str]],
) -> None:
    section = endpoint(prefix, "hubspot", auth={
        "scheme": "hubspot", "secret_env": f"{prefix.upper()}_SECRET",
        "public_url": "https://hooks.example.com"})
    [url] = ingress(section)
    public = "https://hooks.example.com" + section["path"]
    first, second = 2**64 + 1, 2**64 + 2  # one and the same float: 1.8446744073709552e19
    for event_id in (first, second):
        body, stamp = _hubspot_event(event_id), int(time.time() * 1000)
        answer = httpx.post(url, content=body, headers={
            **JSON, "X-HubSpot-Request-Timestamp": str(stamp),
            "X-HubSpot-Signature-v3": hmac_b64(
                SECRET, b"POST" + public.encode() + body + str(stamp).encode())})
        assert answer.status_code == 202, answer.text
        assert answer.json()["ids"] == [str(event_id)]
    assert wait_until(lambda: _published(amqp_url, prefix) == 2, 5)
    envelopes = [json.loads(body) for _, body in drain(amqp_url, queue_name(f"{prefix}-r"))]
    assert sorted(e["data"]["eventId"] for e in envelopes) == [str(first), str(second)]
    assert sorted(e["id"] for e in envelopes) == [str(first), str(second)]


def test_unexpected_error_is_json_500_logged_masked_and_endpoint_keeps_serving(
    amqp_url: str, prefix: str, ingress: Callable[..., list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_derive = Deriver.derive

    def failing(self: Deriver, payload: Any, headers: Any) -> Any:
        if isinstance(payload, dict) and payload.get("boom"):  # the injected failure
            raise RuntimeError("derive blew up, password=hunter2")
        return real_derive(self, payload, headers)

    monkeypatch.setattr(Deriver, "derive", failing)
    [url] = ingress(endpoint(prefix, "plain"))
    labels = {"endpoint": f"{prefix}-plain", "adapter": "rest", "reason": "internal_error"}
    before = counter("silobridge_rejected_total", **labels)
    out = io.StringIO()
    configure_logging(json=True, level="info", stream=out)
    try:
        failed = httpx.post(url, content=b'{"boom": true}', headers=JSON)
    finally:
        configure_logging(json=True, level="warning")
    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/json"
    assert failed.json()["error"] == "internal error"
    assert "Traceback" not in failed.text and "hunter2" not in failed.text
    assert counter("silobridge_rejected_total", **labels) - before == 1
    logged = out.getvalue()
    assert "webhook handling failed" in logged and "RuntimeError" in logged
    assert "Traceback" in logged and "hunter2" not in logged  # the masking chain ran
    # the endpoint keeps serving
    assert httpx.post(url, content=b'{"ok": true}', headers=JSON).status_code == 202
    assert wait_until(lambda: _published(amqp_url, prefix) == 1, 5)


def test_stale_hubspot_request_is_counted_as_stale_not_as_a_bad_signature(
    prefix: str, ingress: Callable[..., list[str]],
) -> None:
    # Given a HubSpot endpoint and a request stamped an hour ago (valid digits, old time)
    (url,) = ingress(endpoint(prefix, "hubspot", auth={
        "scheme": "hubspot", "secret_env": f"{prefix.upper()}_SECRET"}))
    labels = {"endpoint": f"{prefix}-hubspot", "adapter": "rest"}
    stale_before = counter("silobridge_rejected_total", reason="stale_request", **labels)
    bad_before = counter("silobridge_rejected_total", reason="bad_signature", **labels)
    stamp = str(int((time.time() - 3600) * 1000))
    # When it arrives
    answer = httpx.post(url, content=b"[]", headers={
        **JSON, "X-HubSpot-Signature-v3": "AAAA", "X-HubSpot-Request-Timestamp": stamp})
    # Then it is refused and counted as stale, which is what an operator must look into
    assert answer.status_code == 401
    assert counter("silobridge_rejected_total", reason="stale_request", **labels) \
        - stale_before == 1
    assert counter("silobridge_rejected_total", reason="bad_signature", **labels) == bad_before
