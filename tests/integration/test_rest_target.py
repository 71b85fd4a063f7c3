"""The REST target against a real HTTP server on loopback: request shape, classification of
answers for retry or DLQ, OAuth2 token caching and refresh, and the per-target concurrency cap."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from adapters.rest import RestTarget, RestTargetConfig
from middleware.adapter import AdapterContext, Delivered
from middleware.envelope import Envelope
from middleware.errors import DeliveryError
from tests.integration.rest_helpers import Peer, json_response

pytestmark = pytest.mark.integration


def _target(url: str, **extra: Any) -> Iterator[RestTarget]:
    target = RestTarget(RestTargetConfig.model_validate({"type": "rest", "url": url, **extra}))
    context = AdapterContext(None, None, None, Path("."))  # type: ignore[arg-type]
    target.start(context)
    yield target
    target.close()


def _envelope(subject: str = "C-1001") -> Envelope:
    return Envelope.new(source="crm/test", type="crm.customer.updated", subject=subject,
                        data={"customer_no": subject})


def _fail(target: RestTarget, payload: Any | None = None) -> DeliveryError:
    future = target.deliver(_envelope(), payload or {"account_no": "A-1"})
    error = future.exception(timeout=10)
    assert isinstance(error, DeliveryError), error
    return error


def test_rest_target_sends_templated_request_with_idempotency_key() -> None:
    async def created(request: Request, body: bytes) -> Response:
        return json_response({"id": "ERP-77"}, 201)

    with Peer(created) as erp:
        for target in _target(f"{erp.url}/api/accounts/{{envelope.subject}}/{{payload.code}}",
                              method="PUT", headers={"X-Origin": "{envelope.source}"}):
            envelope = _envelope("C 1/2")
            result = target.deliver(envelope, {"code": "a&b", "name": "Ä"}).result(10)
            assert result == Delivered(response={"id": "ERP-77"}, details={"status": 201})
            [(method, url, headers, body)] = erp.requests
            assert method == "PUT"
            assert url.endswith("/api/accounts/C%201%2F2/a%26b")
            assert headers["idempotency-key"] == envelope.id
            assert headers["x-origin"] == "crm/test"
            assert headers["content-type"] == "application/json"
            assert body.decode() == '{"code":"a&b","name":"Ä"}'


def test_rest_target_reads_bearer_token_and_basic_password_from_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok-from-file\n")
    (tmp_path / "password").write_text("pw-from-file\n")

    async def ok(request: Request, body: bytes) -> Response:
        return json_response({}, 200)

    with Peer(ok) as erp:
        for target in _target(f"{erp.url}/bearer",
                              auth={"type": "bearer", "token_file": str(tmp_path / "token")}):
            target.deliver(_envelope(), {}).result(10)
        for target in _target(f"{erp.url}/basic", auth={
                "type": "basic", "username": "sb", "password_file": str(tmp_path / "password")}):
            target.deliver(_envelope(), {}).result(10)
    [(_, _, bearer, _)] = erp.calls("/bearer")
    [(_, _, basic, _)] = erp.calls("/basic")
    assert bearer["authorization"] == "Bearer tok-from-file"
    assert basic["authorization"] == "Basic " + base64.b64encode(b"sb:pw-from-file").decode()


@pytest.mark.parametrize(("status", "retryable"), [
    (500, True), (502, True), (503, True), (408, True), (429, True),
    (400, False), (404, False), (409, False), (422, False),
])
def test_rest_target_classifies_status(status: int, retryable: bool) -> None:
    async def answer(request: Request, body: bytes) -> Response:
        return Response("refused: " + "x" * 2000, status_code=status)

    with Peer(answer) as erp:
        for target in _target(f"{erp.url}/api"):
            error = _fail(target)
            assert error.retryable is retryable
            assert error.details["status"] == status
            assert error.details["body"].startswith("refused: ")
            assert len(error.details["body"]) == 500


def test_rest_target_honours_retry_after_on_429() -> None:
    async def limited(request: Request, body: bytes) -> Response:
        return Response("slow down", status_code=429, headers={"Retry-After": "42"})

    with Peer(limited) as erp:
        for target in _target(f"{erp.url}/api"):
            error = _fail(target)
            assert error.retryable and error.retry_after == 42.0


def test_rest_target_timeout_and_refused_connection_are_retryable() -> None:
    async def slow(request: Request, body: bytes) -> Response:
        await asyncio.sleep(2)
        return json_response({})

    with Peer(slow) as erp:
        for target in _target(f"{erp.url}/api", timeout=0.3):
            started = time.monotonic()
            error = _fail(target)
            assert error.retryable and "timed out" in str(error)
            assert time.monotonic() - started < 1.5
        url = erp.url
    for target in _target(f"{url}/api"):  # the server is gone now
        assert _fail(target).retryable


def test_rest_target_missing_template_value_is_permanent() -> None:
    for target in _target("http://127.0.0.1:9/api/{payload.erp_id}"):
        error = _fail(target, {"name": "no id"})
        assert not error.retryable and "{payload.erp_id}" in str(error)


@pytest.mark.parametrize("client_auth", ["basic", "post"])
def test_rest_target_oauth2_caches_refreshes_before_expiry_and_once_on_401(
    monkeypatch: pytest.MonkeyPatch, client_auth: str,
) -> None:
    monkeypatch.setenv("TEST_OAUTH_SECRET", "client-secret")
    tokens: list[str] = []
    revoked: set[str] = set()
    lifetime = {"seconds": 3600}
    reject_all = {"on": False}

    async def api(request: Request, body: bytes) -> Response:
        if request.url.path == "/token":
            form = body.decode()
            assert "grant_type=client_credentials" in form and "scope=erp.write" in form
            if client_auth == "basic":
                assert request.headers["authorization"].startswith("Basic ")
            else:
                assert "client_id=silobridge&client_secret=client-secret" in form
            tokens.append(f"tok-{len(tokens) + 1}")
            return json_response({"access_token": tokens[-1], "token_type": "Bearer",
                                  "expires_in": lifetime["seconds"]})
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in tokens or token in revoked or reject_all["on"]:
            return json_response({"error": "invalid_token"}, 401)
        return json_response({"ok": token})

    with Peer(api) as erp:
        for target in _target(f"{erp.url}/api", auth={
                "type": "oauth2", "token_url": f"{erp.url}/token", "client_id": "silobridge",
                "client_secret_env": "TEST_OAUTH_SECRET", "scope": "erp.write",
                "refresh_margin": 30, "client_auth": client_auth}):
            # cached: three deliveries, one token
            for _ in range(3):
                assert target.deliver(_envelope(), {}).result(10).response == {"ok": "tok-1"}
            assert tokens == ["tok-1"]
            # revoked early: one 401, one refresh, the same request repeated once
            revoked.add("tok-1")
            assert target.deliver(_envelope(), {}).result(10).response == {"ok": "tok-2"}
            assert tokens == ["tok-1", "tok-2"]
            # a token inside the refresh margin is renewed before it is used
            lifetime["seconds"] = 30
            revoked.add("tok-2")
            assert target.deliver(_envelope(), {}).result(10).response == {"ok": "tok-3"}
            assert target.deliver(_envelope(), {}).result(10).response == {"ok": "tok-4"}
            assert len(erp.calls("/api")) == 3 + 2 + 2 + 1
            # still 401 after the refresh: the target's answer stands (permanent), no loop
            lifetime["seconds"] = 3600
            reject_all["on"] = True
            before_tokens, before_calls = len(tokens), len(erp.calls("/api"))
            error = _fail(target)
            assert not error.retryable and error.details["status"] == 401
            assert len(tokens) - before_tokens == 2  # tok-4 was due; then one refresh on 401
            assert len(erp.calls("/api")) - before_calls == 2


def test_rest_target_concurrency_limit_and_deliver_does_not_block() -> None:
    lock = threading.Lock()
    active = {"now": 0, "max": 0}
    gate = threading.Event()  # no answer before the test opens it

    async def slow(request: Request, body: bytes) -> Response:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        await asyncio.to_thread(gate.wait, 10)
        await asyncio.sleep(0.3)
        with lock:
            active["now"] -= 1
        return json_response({})

    with Peer(slow) as erp:
        for target in _target(f"{erp.url}/api", concurrency=2):
            gate.clear()
            started = time.monotonic()
            futures = [target.deliver(_envelope(f"C-{n}"), {}) for n in range(6)]
            # the caller's thread is never blocked: every call returned before any answer could
            assert not any(future.done() for future in futures)
            gate.set()
            for future in futures:
                future.result(10)
            assert active["max"] == 2
            assert time.monotonic() - started >= 0.9  # 6 calls, 2 at a time, 0.3 s each


def test_rest_target_goes_through_the_environment_proxy_unless_no_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def proxy(request: Request, body: bytes) -> Response:
        return json_response({"via": "proxy"})

    with Peer(proxy) as relay:
        monkeypatch.setenv("HTTP_PROXY", relay.url)
        monkeypatch.setenv("NO_PROXY", "bypassed.invalid")
        for target in _target("http://erp.invalid/api/accounts"):
            assert target.deliver(_envelope(), {}).result(10).response == {"via": "proxy"}
            [(method, _url, headers, _body)] = relay.requests
            assert method == "POST"
            assert headers["host"] == "erp.invalid"  # asked to relay, not addressed itself
        for target in _target("http://bypassed.invalid/api", timeout=2):
            error = _fail(target)  # no proxy: the unresolvable name fails, retryable
            assert error.retryable and len(relay.requests) == 1


def test_rest_target_unreachable_token_endpoint_is_retryable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_OAUTH_SECRET", "client-secret")
    for target in _target("http://127.0.0.1:9/api", auth={
            "type": "oauth2", "token_url": "http://127.0.0.1:9/token", "client_id": "sb",
            "client_secret_env": "TEST_OAUTH_SECRET"}):
        error = _fail(target)
        assert error.retryable and "token endpoint" in str(error)
