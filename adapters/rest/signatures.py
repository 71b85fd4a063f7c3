"""Webhook authentication: provider signature schemes, API keys and HTTP basic.

Every HMAC is computed over the raw request bytes exactly as received (re-serialised JSON would
differ from what the provider signed) and compared with ``hmac.compare_digest``. Each verifier
holds one or two secrets so a rotation never rejects a correctly signed request. Schemes with a
signed timestamp (Stripe, HubSpot v3) also reject stale requests, which stops replays; for the
others a replay is caught by the delivery-id dedupe.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from adapters.rest.inbound_config import (
    ApiKeyAuth,
    BasicAuth,
    GithubAuth,
    HmacAuth,
    HubspotAuth,
    InboundAuth,
    ShopifyAuth,
    StripeAuth,
)
from adapters.rest.secrets import rotation_secrets

__all__ = [
    "ApiKeyVerifier",
    "AuthError",
    "BasicVerifier",
    "HmacVerifier",
    "HubspotVerifier",
    "SignedRequest",
    "StripeVerifier",
    "Verifier",
    "build_verifier",
]

# HubSpot signs the URI with these characters decoded (HubSpot v3 signature documentation).
_HUBSPOT_DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
                   "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


@dataclass(frozen=True)
class SignedRequest:
    """What a verifier may look at; ``headers`` is case-insensitive (Starlette Headers)."""

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


class AuthError(Exception):
    """Rejected: ``reason`` is missing, bad or stale; the message says how to fix it."""

    def __init__(self, reason: Literal["missing", "bad", "stale"], message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Verifier(Protocol):
    def verify(self, request: SignedRequest, now: float) -> None:
        """Return when authentic; raise AuthError otherwise. ``now`` is Unix seconds."""


def _digest(secret: bytes, data: bytes) -> bytes:
    return hmac.digest(secret, data, hashlib.sha256)  # one-shot, in C


def _any_match(secrets: Sequence[bytes], data: bytes, given: Sequence[bytes]) -> bool:
    expected = [_digest(secret, data) for secret in secrets]
    return any(hmac.compare_digest(e, g) for e in expected for g in given)


def _decode(text: str, encoding: str) -> bytes | None:
    try:
        if encoding == "hex":
            return bytes.fromhex(text)
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return None


class HmacVerifier:
    """``<header>: <prefix><hex or base64 HMAC-SHA256>`` (also GitHub, Shopify).

    The signed bytes are the body, or a template around it with the signing time from
    ``timestamp_header`` (checked against ``tolerance``), e.g. ``{timestamp}.{body}``.
    """

    def __init__(self, secrets: list[bytes], header: str, encoding: str, prefix: str,
                 timestamp_header: str | None = None, tolerance: int = 300,
                 signed_payload: str = "{body}") -> None:
        self._secrets, self._header, self._encoding, self._prefix = (
            secrets, header, encoding, prefix)
        self._timestamp_header, self._tolerance = timestamp_header, tolerance
        self._before, self._after = signed_payload.split("{body}")

    def _signed(self, request: SignedRequest, now: float) -> bytes:
        stamp = ""
        if self._timestamp_header:
            stamp = request.headers.get(self._timestamp_header, "")
            if not stamp:
                raise AuthError("missing", f"header {self._timestamp_header} is missing")
            if not stamp.isdigit():
                raise AuthError("bad", f"header {self._timestamp_header} must be Unix time")
            seconds = int(stamp) / 1000 if int(stamp) >= 1e11 else int(stamp)
            if abs(now - seconds) > self._tolerance:
                raise AuthError("stale", f"header {self._timestamp_header} is more than "
                                         f"{self._tolerance}s away from now; sign afresh")
        before = self._before.replace("{timestamp}", stamp).encode()
        after = self._after.replace("{timestamp}", stamp).encode()
        return before + request.body + after

    def verify(self, request: SignedRequest, now: float) -> None:
        value = request.headers.get(self._header)
        if not value:
            raise AuthError("missing", f"header {self._header} is missing; sign the raw body "
                                       f"with HMAC-SHA256 and send {self._prefix}<digest>")
        if not value.startswith(self._prefix):
            raise AuthError("bad", f"header {self._header} must start with {self._prefix!r}")
        signed = self._signed(request, now)
        given = _decode(value[len(self._prefix):].strip(), self._encoding)
        if given is None or not _any_match(self._secrets, signed, [given]):
            raise AuthError("bad", f"header {self._header} does not match the body; check the "
                                   f"secret and sign the raw bytes ({self._encoding} digest)")


class StripeVerifier:
    """``Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`` over ``<t>.<body>``, with a tolerance."""

    def __init__(self, secrets: list[bytes], tolerance: int) -> None:
        self._secrets, self._tolerance = secrets, tolerance

    def verify(self, request: SignedRequest, now: float) -> None:
        value = request.headers.get("stripe-signature")
        if not value:
            raise AuthError("missing", "header Stripe-Signature is missing")
        parts = [item.split("=", 1) for item in value.split(",") if "=" in item]
        stamps = [v.strip() for k, v in parts if k.strip() == "t"]
        signatures = [_decode(v.strip(), "hex") for k, v in parts if k.strip() == "v1"]
        if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
            raise AuthError("bad", "Stripe-Signature must hold t=<unix seconds> and v1=<hex>")
        if abs(now - int(stamps[0])) > self._tolerance:
            raise AuthError("stale", f"Stripe-Signature timestamp is more than "
                                     f"{self._tolerance}s away from now; send a fresh request")
        signed = stamps[0].encode() + b"." + request.body
        if not _any_match(self._secrets, signed, [s for s in signatures if s is not None]):
            raise AuthError("bad", "no v1 signature in Stripe-Signature matches; check the "
                                   "endpoint signing secret (whsec_...)")


class HubspotVerifier:
    """``X-HubSpot-Signature-v3``: base64 HMAC of method + URI + body + timestamp (ms)."""

    def __init__(self, secrets: list[bytes], max_age: int, public_url: str | None) -> None:
        self._secrets, self._max_age, self._public_url = secrets, max_age, public_url

    def uri(self, request: SignedRequest) -> str:
        uri = request.url
        if self._public_url:
            path = uri.split("://", 1)[-1]
            path = path[path.index("/"):] if "/" in path else "/"
            uri = self._public_url.rstrip("/") + path
        for encoded, char in _HUBSPOT_DECODE.items():
            uri = uri.replace(encoded, char).replace(encoded.lower(), char)
        return uri

    def verify(self, request: SignedRequest, now: float) -> None:
        signature = request.headers.get("x-hubspot-signature-v3")
        stamp = request.headers.get("x-hubspot-request-timestamp")
        if not signature or not stamp:
            raise AuthError("missing", "headers X-HubSpot-Signature-v3 and "
                                       "X-HubSpot-Request-Timestamp are required")
        if not stamp.isdigit():
            raise AuthError("bad", "X-HubSpot-Request-Timestamp must be Unix milliseconds")
        if abs(now * 1000 - int(stamp)) > self._max_age * 1000:
            raise AuthError("stale", f"X-HubSpot-Request-Timestamp is more than "
                                     f"{self._max_age}s old; HubSpot retries with a new one")
        signed = (request.method.upper() + self.uri(request)).encode() + request.body + \
            stamp.encode()
        given = _decode(signature.strip(), "base64")
        if given is None or not _any_match(self._secrets, signed, [given]):
            raise AuthError("bad", "X-HubSpot-Signature-v3 does not match; check the app's "
                                   "client secret and public_url (HubSpot signs the full URI)")


class ApiKeyVerifier:
    def __init__(self, secrets: list[bytes], header: str | None, query: str | None) -> None:
        self._secrets, self._header, self._query = secrets, header, query

    def verify(self, request: SignedRequest, now: float) -> None:
        where = f"query parameter {self._query}" if self._query else f"header {self._header}"
        value = (request.query.get(self._query) if self._query
                 else request.headers.get(self._header or ""))
        if not value:
            raise AuthError("missing", f"{where} with the API key is missing")
        if not any(hmac.compare_digest(value.encode(), s) for s in self._secrets):
            raise AuthError("bad", f"{where} does not hold a valid API key")


class BasicVerifier:
    def __init__(self, secrets: list[bytes], username: str) -> None:
        self._secrets, self._username = secrets, username.encode()

    def verify(self, request: SignedRequest, now: float) -> None:
        value = request.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "basic" or not token:
            raise AuthError("missing", "send HTTP basic credentials (Authorization: Basic ...)")
        decoded = _decode(token.strip(), "base64") or b""
        user, _, password = decoded.partition(b":")
        user_ok = hmac.compare_digest(user, self._username)
        if not (any(hmac.compare_digest(password, s) for s in self._secrets) and user_ok):
            raise AuthError("bad", "user name or password is wrong")


def build_verifier(auth: InboundAuth, where: str) -> Verifier:
    """The verifier for an auth config; reads its secrets from the environment now."""
    secrets = rotation_secrets(auth, where)
    if isinstance(auth, GithubAuth):
        return HmacVerifier(secrets, "X-Hub-Signature-256", "hex", "sha256=")
    if isinstance(auth, ShopifyAuth):
        return HmacVerifier(secrets, "X-Shopify-Hmac-SHA256", "base64", "")
    if isinstance(auth, HmacAuth):
        return HmacVerifier(secrets, auth.header, auth.encoding, auth.prefix,
                            auth.timestamp_header, auth.tolerance, auth.signed_payload)
    if isinstance(auth, StripeAuth):
        return StripeVerifier(secrets, auth.tolerance)
    if isinstance(auth, HubspotAuth):
        return HubspotVerifier(secrets, auth.max_age, auth.public_url)
    if isinstance(auth, ApiKeyAuth):
        return ApiKeyVerifier(secrets, auth.header, auth.query)
    assert isinstance(auth, BasicAuth)
    return BasicVerifier(secrets, auth.username)
