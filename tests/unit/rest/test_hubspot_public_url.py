"""The HubSpot URI rule adapters/rest/README.md documents: ``public_url`` replaces scheme and
host (and adds a path prefix a proxy stripped); the path and query of the request as the ingress
received it are appended; the window is ``max_age`` seconds either way."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from starlette.datastructures import Headers

from adapters.rest.signatures import AuthError, HubspotVerifier, SignedRequest

SECRET = b"hubspot-client-secret"
BODY = b'[{"eventId":1,"objectId":7}]'
BEHIND_PROXY = "http://10.0.0.5:8080/webhooks/hubspot?portal=1"


def _signed(uri: str, stamp_ms: int) -> SignedRequest:
    base = b"POST" + uri.encode() + BODY + str(stamp_ms).encode()
    signature = base64.b64encode(hmac.new(SECRET, base, hashlib.sha256).digest()).decode()
    headers = Headers({"X-HubSpot-Signature-v3": signature,
                       "X-HubSpot-Request-Timestamp": str(stamp_ms)})
    return SignedRequest("POST", BEHIND_PROXY, headers, {}, BODY)


@pytest.mark.parametrize(("public_url", "signed_uri"), [
    ("https://hooks.example.com", "https://hooks.example.com/webhooks/hubspot?portal=1"),
    ("https://example.com/edge/", "https://example.com/edge/webhooks/hubspot?portal=1"),
    (None, BEHIND_PROXY),
])
def test_hubspot_public_url_replaces_scheme_and_host_and_keeps_path_and_query(
    public_url: str | None, signed_uri: str
) -> None:
    verifier = HubspotVerifier([SECRET], 300, public_url)
    assert verifier.uri(_signed(signed_uri, 0)) == signed_uri
    verifier.verify(_signed(signed_uri, 1_000_000), now=1_000.0)


def test_hubspot_window_is_max_age_either_way() -> None:
    verifier = HubspotVerifier([SECRET], 300, None)
    verifier.verify(_signed(BEHIND_PROXY, 1_000_000), now=1_000.0 + 300)
    verifier.verify(_signed(BEHIND_PROXY, 1_000_000), now=1_000.0 - 300)
    for now in (1_000.0 + 301, 1_000.0 - 301):
        with pytest.raises(AuthError) as caught:
            verifier.verify(_signed(BEHIND_PROXY, 1_000_000), now=now)
        assert caught.value.kind == "stale"
