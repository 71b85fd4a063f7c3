"""Signature verifiers against the providers' published known-answer vectors.

Vectors: HubSpot/hubspot-api-python tests/spec/utils/test_signature.py and GitHub's "validating
webhook deliveries" docs, as recorded in ../shared/realworld/signature-vectors.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from starlette.datastructures import Headers

from adapters.rest.signatures import (
    ApiKeyVerifier,
    AuthError,
    BasicVerifier,
    HmacVerifier,
    HubspotVerifier,
    SignedRequest,
    StripeVerifier,
)

HUBSPOT_SECRET = b"yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
HUBSPOT_BODY = b"{'example_field':'example_value'}"
HUBSPOT_V3 = "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="
GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def _request(headers: dict[str, str], body: bytes, url: str = "http://127.0.0.1/x",
             query: dict[str, str] | None = None) -> SignedRequest:
    return SignedRequest("POST", url, Headers(headers=headers), query or {}, body)


def _reason(verifier: object, request: SignedRequest, now: float = 0.0) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(request, now)  # type: ignore[attr-defined]
    return caught.value.kind


def test_hubspot_v3_published_vector_accepted_within_window() -> None:
    verifier = HubspotVerifier([HUBSPOT_SECRET], 300, "https://www.example.com")
    request = _request({"X-HubSpot-Signature-v3": HUBSPOT_V3,
                        "X-HubSpot-Request-Timestamp": "15000000"}, HUBSPOT_BODY,
                       url="http://127.0.0.1:8080/webhook_uri")
    verifier.verify(request, now=15000.0 + 60)
    assert _reason(verifier, request, now=15000.0 + 301) == "stale"
    tampered = _request({"X-HubSpot-Signature-v3": HUBSPOT_V3,
                         "X-HubSpot-Request-Timestamp": "15000000"}, HUBSPOT_BODY + b" ",
                        url="http://127.0.0.1:8080/webhook_uri")
    assert _reason(verifier, tampered, now=15000.0) == "bad"
    assert _reason(verifier, _request({}, HUBSPOT_BODY), now=15000.0) == "missing"


def test_github_published_vector_and_rotation() -> None:
    body = b"Hello, World!"
    verifier = HmacVerifier([b"new-secret", GITHUB_SECRET], "X-Hub-Signature-256", "hex",
                            "sha256=")
    verifier.verify(_request({"X-Hub-Signature-256": GITHUB_SIGNATURE}, body), 0)
    assert _reason(verifier, _request({"X-Hub-Signature-256": GITHUB_SIGNATURE}, b"x")) == "bad"
    assert _reason(verifier, _request({"X-Hub-Signature-256": "md5=00"}, body)) == "bad"
    assert _reason(verifier, _request({}, body)) == "missing"
    only_new = HmacVerifier([b"new-secret"], "X-Hub-Signature-256", "hex", "sha256=")
    assert _reason(only_new, _request({"X-Hub-Signature-256": GITHUB_SIGNATURE}, body)) == "bad"


def test_stripe_signature_tolerance_and_several_v1() -> None:
    secret, body, stamp = b"whsec_test", b'{"id":"evt_1"}', 1_700_000_000
    good = hmac.new(secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    header = f"t={stamp},v1={'0' * 64},v1={good}"
    verifier = StripeVerifier([secret], 300)
    verifier.verify(_request({"Stripe-Signature": header}, body), stamp + 299)
    assert _reason(verifier, _request({"Stripe-Signature": header}, body), stamp + 301) == "stale"
    assert _reason(verifier, _request({"Stripe-Signature": f"t={stamp}"}, body), stamp) == "bad"


def test_api_key_header_or_query_and_basic() -> None:
    keyed = ApiKeyVerifier([b"k1"], None, "code")
    keyed.verify(_request({}, b"", query={"code": "k1"}), 0)
    assert _reason(keyed, _request({}, b"", query={"code": "k2"})) == "bad"
    basic = BasicVerifier([b"pw"], "crm")
    token = base64.b64encode(b"crm:pw").decode()
    basic.verify(_request({"Authorization": f"Basic {token}"}, b""), 0)
    wrong = base64.b64encode(b"crm:nope").decode()
    assert _reason(basic, _request({"Authorization": f"Basic {wrong}"}, b"")) == "bad"
    assert _reason(basic, _request({}, b"")) == "missing"


def test_generic_hmac_timestamp_template_slack_style() -> None:
    secret, body, stamp = b"slack-signing", b"token=x&team_id=T1", 1_700_000_000
    base = f"v0:{stamp}:".encode() + body
    digest = hmac.new(secret, base, hashlib.sha256).hexdigest()
    verifier = HmacVerifier([secret], "X-Slack-Signature", "hex", "v0=",
                            "X-Slack-Request-Timestamp", 300, "v0:{timestamp}:{body}")
    headers = {"X-Slack-Signature": f"v0={digest}", "X-Slack-Request-Timestamp": str(stamp)}
    verifier.verify(_request(headers, body), stamp + 10)
    assert _reason(verifier, _request(headers, body), stamp + 301) == "stale"
    assert _reason(verifier, _request({"X-Slack-Signature": f"v0={digest}"}, body),
                   stamp) == "missing"


def test_generic_hmac_config_requires_timestamp_header_for_template() -> None:
    from pydantic import ValidationError

    from adapters.rest.inbound_config import HmacAuth

    with pytest.raises(ValidationError, match="timestamp_header"):
        HmacAuth.model_validate({"scheme": "hmac", "header": "X-Sig", "secret_env": "S",
                                 "signed_payload": "{timestamp}.{body}"})
    with pytest.raises(ValidationError, match="exactly once"):
        HmacAuth.model_validate({"scheme": "hmac", "header": "X-Sig", "secret_env": "S",
                                 "signed_payload": "{timestamp}"})
