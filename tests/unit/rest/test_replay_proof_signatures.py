"""Replay-proof signatures (issue 11 finding 3) and ASCII-only numeric headers (finding 5).

Standard Webhooks vector: the specification's published test vector (secret, id, timestamp,
body and ``v1`` signature), as used by its reference libraries' tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import pytest
from multidict import CIMultiDict
from pydantic import ValidationError

from adapters.rest.inbound_config import HmacAuth, StandardWebhooksAuth
from adapters.rest.signatures import (
    AuthError,
    HmacVerifier,
    HubspotVerifier,
    SignedRequest,
    StandardWebhooksVerifier,
    StripeVerifier,
    Verifier,
    build_verifier,
)
from middleware.errors import ConfigError

SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID, SW_STAMP = "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330"
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
NOW = 1614265330.0


def _request(headers: dict[str, str], body: bytes) -> SignedRequest:
    # case-insensitive like Starlette's Headers, but holding any str (Starlette's take latin-1)
    return SignedRequest("POST", "http://127.0.0.1/x", CIMultiDict(headers), {}, body)


def _refused(verifier: Verifier, request: SignedRequest, now: float = NOW) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verifier.verify(request, now)
    return caught.value


def _standard(monkeypatch: pytest.MonkeyPatch, *secrets: str) -> Verifier:
    monkeypatch.setenv("SW_CURRENT", secrets[0])
    previous = None
    if len(secrets) > 1:
        monkeypatch.setenv("SW_PREVIOUS", secrets[1])
        previous = "SW_PREVIOUS"
    auth = StandardWebhooksAuth(scheme="standard_webhooks", secret_env="SW_CURRENT",
                                previous_secret_env=previous)
    return build_verifier(auth, "inbound.sw.auth")


def _sw_headers(**changes: str) -> dict[str, str]:
    return {"webhook-id": SW_ID, "webhook-timestamp": SW_STAMP,
            "webhook-signature": SW_SIGNATURE, **changes}


def test_standard_webhooks_published_vector_accepted_with_or_without_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _standard(monkeypatch, SW_SECRET).verify(_request(_sw_headers(), SW_BODY), NOW + 10)
    bare = _standard(monkeypatch, SW_SECRET.removeprefix("whsec_"))
    bare.verify(_request(_sw_headers(), SW_BODY), NOW)


def test_standard_webhooks_replay_with_new_id_or_time_or_body_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = _standard(monkeypatch, SW_SECRET)
    assert _refused(verifier, _request(_sw_headers(**{"webhook-id": "msg_new"}),
                                       SW_BODY)).kind == "bad"
    assert _refused(verifier, _request(_sw_headers(**{"webhook-timestamp": "1614265331"}),
                                       SW_BODY)).kind == "bad"
    assert _refused(verifier, _request(_sw_headers(), b'{"test": 2432232315}')).kind == "bad"
    headers = _sw_headers()
    del headers["webhook-id"]
    assert _refused(verifier, _request(headers, SW_BODY)).kind == "missing"


def test_standard_webhooks_window_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = _standard(monkeypatch, SW_SECRET)
    request = _request(_sw_headers(), SW_BODY)
    verifier.verify(request, NOW - 300)
    assert _refused(verifier, request, NOW + 301).kind == "stale"
    assert _refused(verifier, request, NOW - 301).kind == "stale"  # signed in the future


def test_standard_webhooks_rotation_several_entries_and_other_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other_key = b"another endpoint key, 32 bytes!!"
    other = "whsec_" + base64.b64encode(other_key).decode()
    signed = f"{SW_ID}.{SW_STAMP}.".encode() + SW_BODY
    other_sig = base64.b64encode(hmac.new(other_key, signed, hashlib.sha256).digest()).decode()
    # the sender signs with its new secret and the old one; we hold only the old one
    header = f"v1a,AAAA v1,{other_sig} {SW_SIGNATURE}"
    _standard(monkeypatch, SW_SECRET).verify(
        _request(_sw_headers(**{"webhook-signature": header}), SW_BODY), NOW)
    # we rotated first: our previous secret still matches the sender's only signature
    _standard(monkeypatch, other, SW_SECRET).verify(_request(_sw_headers(), SW_BODY), NOW)
    # a v1a (asymmetric) entry carrying the right bytes is not a v1 signature
    only_v1a = _sw_headers(**{"webhook-signature": SW_SIGNATURE.replace("v1,", "v1a,")})
    assert _refused(_standard(monkeypatch, SW_SECRET), _request(only_v1a, SW_BODY)).kind == "bad"


def test_standard_webhooks_secret_that_is_not_base64_fails_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="whsec_"):
        _standard(monkeypatch, "whsec_not base64!")


def _hmac_id_verifier(secret: bytes) -> HmacVerifier:
    return HmacVerifier([secret], "X-Signature", "hex", "sha256=", "X-Timestamp", 300,
                        "{id}.{timestamp}.{body}", "X-Request-Id")


def _signed_id(secret: bytes, request_id: str, stamp: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret, f"{request_id}.{stamp}.".encode() + body, hashlib.sha256)
    return {"X-Request-Id": request_id, "X-Timestamp": stamp,
            "X-Signature": f"sha256={digest.hexdigest()}"}


def test_generic_hmac_signed_id_refuses_new_or_missing_request_id() -> None:
    secret, body = b"crm-secret", b'{"customer_no":"C-1"}'
    verifier = _hmac_id_verifier(secret)
    captured = _signed_id(secret, "req-1", SW_STAMP, body)
    verifier.verify(_request(captured, body), NOW)
    assert _refused(verifier, _request({**captured, "X-Request-Id": "req-2"}, body)).kind \
        == "bad"
    without = {k: v for k, v in captured.items() if k != "X-Request-Id"}
    assert _refused(verifier, _request(without, body)).kind == "missing"
    assert _refused(verifier, _request(captured, body), NOW + 301).kind == "stale"


def test_generic_hmac_placeholders_in_header_values_are_signed_literally() -> None:
    # an id that reads like a placeholder must not be expanded into the timestamp
    secret, body = b"crm-secret", b"{}"
    verifier = _hmac_id_verifier(secret)
    verifier.verify(_request(_signed_id(secret, "{timestamp}", SW_STAMP, body), body), NOW)
    forged = _signed_id(secret, SW_STAMP, SW_STAMP, body)
    forged["X-Request-Id"] = "{timestamp}"
    assert _refused(verifier, _request(forged, body)).kind == "bad"


def test_generic_hmac_timestamp_is_signed_as_sent_with_leading_zeros() -> None:
    secret, body = b"crm-secret", b"{}"
    verifier = _hmac_id_verifier(secret)
    verifier.verify(_request(_signed_id(secret, "r", "0" + SW_STAMP, body), body), NOW)


def test_generic_hmac_config_placeholders_and_id_header() -> None:
    base = {"scheme": "hmac", "header": "X-Sig", "secret_env": "S"}
    with pytest.raises(ValidationError, match="set id_header"):
        HmacAuth.model_validate({**base, "signed_payload": "{id}.{body}"})
    with pytest.raises(ValidationError, match="not signed"):
        HmacAuth.model_validate({**base, "id_header": "X-Request-Id"})
    with pytest.raises(ValidationError, match="unknown placeholder"):
        HmacAuth.model_validate({**base, "signed_payload": "{time}.{body}"})
    auth = HmacAuth.model_validate({**base, "id_header": "X-Request-Id",
                                    "signed_payload": "{id}:{body}"})
    assert auth.id_header == "X-Request-Id"


# Values that str.isdigit() accepts or that int() chokes on: each must be a 401, never a crash.
BAD_NUMBERS = [
    ("¹⁶¹⁴²⁶⁵³³⁰", "bad"),            # superscripts: isdigit() True, int() raises
    ("١٦١٤٢٦٥٣٣٠", "bad"),            # Arabic-Indic: isdigit() True, int() accepts
    ("9" * 5000, "bad"),              # int() refuses over 4300 digits (and is quadratic)
    ("99999999999999999", "bad"),     # 17 digits: no signing time
    ("-1614265330", "bad"),
    ("+1614265330", "bad"),
    ("1614265330.5", "bad"),
    ("", "missing"),
]


def _stripe(stamp: str) -> tuple[Verifier, SignedRequest]:
    return StripeVerifier([b"s"], 300), _request(
        {"Stripe-Signature": f"t={stamp},v1={'0' * 64}"}, b"{}")


def _hubspot(stamp: str) -> tuple[Verifier, SignedRequest]:
    return HubspotVerifier([b"s"], 300, None), _request(
        {"X-HubSpot-Signature-v3": "AAAA", "X-HubSpot-Request-Timestamp": stamp}, b"{}")


def _generic(stamp: str) -> tuple[Verifier, SignedRequest]:
    return _hmac_id_verifier(b"s"), _request(
        {"X-Signature": "sha256=00", "X-Request-Id": "r", "X-Timestamp": stamp}, b"{}")


def _sw(stamp: str) -> tuple[Verifier, SignedRequest]:
    return StandardWebhooksVerifier([b"s"], 300), _request(
        _sw_headers(**{"webhook-timestamp": stamp}), b"{}")


@pytest.mark.parametrize(("value", "reason"), BAD_NUMBERS)
@pytest.mark.parametrize("scheme", [_stripe, _hubspot, _generic, _sw])
def test_timestamp_headers_accept_ascii_digits_only(
    scheme: Callable[[str], tuple[Verifier, SignedRequest]], value: str, reason: str,
) -> None:
    verifier, request = scheme(value)
    error = _refused(verifier, request)
    assert error.kind == reason
    if reason == "bad":
        assert "ASCII digits 0-9" in str(error)
    assert len(str(error)) < 400  # a 5000-digit value is not echoed back whole


def test_openapi_names_the_standard_webhooks_signature_header() -> None:
    from adapters.rest.inbound_config import RestEndpointConfig
    from adapters.rest.openapi import _security_scheme

    config = RestEndpointConfig.model_validate({
        "type": "rest", "name": "sw", "path": "/sw", "system": "crm",
        "derive": {"entity": {"value": "customer"}, "action": {"value": "updated"}},
        "auth": {"scheme": "standard_webhooks", "secret_env": "S"}})
    assert _security_scheme(config)["name"] == "webhook-signature"
