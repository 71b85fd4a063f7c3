"""Webhook authentication: provider signature schemes, API keys and HTTP basic.

Every HMAC is computed over the raw request bytes exactly as received (re-serialised JSON would
differ from what the provider signed) and compared with ``hmac.compare_digest``. Each verifier
holds one or two secrets so a rotation never rejects a correctly signed request. Schemes with a
signed timestamp (Stripe, HubSpot v3, Standard Webhooks, hmac with '{timestamp}') also reject
stale requests; within the window a replay is caught by the delivery-id dedupe, which only works
when the id is signed too (Standard Webhooks, hmac with '{id}', body fields): see
``adapters.rest.replay``.

Numbers in headers are parsed as ASCII digits only: ``str.isdigit`` also accepts superscripts
(which ``int`` refuses) and other scripts' digits (which ``int`` accepts), and a long digit run
costs ``int`` quadratic time, so a bad value is a 401 that names the header, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
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
    StandardWebhooksAuth,
    StripeAuth,
)
from adapters.rest.secrets import rotation_secrets
from middleware.errors import ConfigError, Problem, Refused

__all__ = [
    "ApiKeyVerifier",
    "AuthError",
    "BasicVerifier",
    "HmacVerifier",
    "HubspotVerifier",
    "SignedRequest",
    "StandardWebhooksVerifier",
    "StripeVerifier",
    "Verifier",
    "build_verifier",
    "parse_unix",
]

# HubSpot signs the URI with these characters decoded (HubSpot v3 signature documentation).
_HUBSPOT_DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
                   "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
# Unix milliseconds need 13 digits until the year 2286; a longer number is no signing time.
_MAX_STAMP_DIGITS = 16
_PART = re.compile(r"(\{id\}|\{timestamp\}|\{body\})")


@dataclass(frozen=True)
class SignedRequest:
    """What a verifier may look at; ``headers`` is case-insensitive (Starlette Headers)."""

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


class AuthError(Refused):
    """A request whose credentials are ``kind`` (missing, bad or stale): 401, metric reason
    ``stale_request`` for a well-formed but stale timestamp (a clock or queue problem at the
    sender, not an attack), else ``bad_signature``; the detail says how to fix it."""

    def __init__(self, kind: Literal["missing", "bad", "stale"], message: str, *,
                 headers: dict[str, str] | None = None) -> None:
        reason = "stale_request" if kind == "stale" else "bad_signature"
        super().__init__(401, reason, f"{kind} credentials", message, headers=headers)
        self.kind = kind


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


def parse_unix(value: str | None, what: str, unit: str) -> int:
    """A Unix time in ``unit`` from ASCII digits 0-9 only; AuthError naming ``what`` otherwise."""
    if value is None or not value.strip():
        raise AuthError("missing", f"{what} is missing; send the Unix time of signing in {unit}")
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_STAMP_DIGITS:
        shown = text if len(text) <= 24 else text[:24] + "..."
        raise AuthError("bad", f"{what} must be Unix {unit} written with the ASCII digits 0-9 "
                               f"(at most {_MAX_STAMP_DIGITS}, no sign); got {shown!r}")
    return int(text)


def _signed_text(stamp: str | None) -> bytes:
    """A timestamp exactly as the sender wrote it (leading zeros too), once parse_unix passed."""
    return (stamp or "").strip().encode("ascii")


def _header_bytes(value: str) -> bytes:
    """The header as sent: Starlette decodes header bytes as latin-1, so this is lossless."""
    return value.encode("latin-1")


class HmacVerifier:
    """``<header>: <prefix><hex or base64 HMAC-SHA256>`` (also GitHub, Shopify).

    The signed bytes are ``signed_payload`` with ``{body}`` (the raw body), ``{id}`` (the value
    of ``id_header``) and ``{timestamp}`` (the value of ``timestamp_header``, checked against
    ``tolerance``) filled in, e.g. ``{id}.{timestamp}.{body}``.
    """

    def __init__(self, secrets: list[bytes], header: str, encoding: str, prefix: str,
                 timestamp_header: str | None = None, tolerance: int = 300,
                 signed_payload: str = "{body}", id_header: str | None = None) -> None:
        self._secrets, self._header, self._encoding, self._prefix = (
            secrets, header, encoding, prefix)
        self._timestamp_header, self._tolerance = timestamp_header, tolerance
        self._id_header = id_header
        # split keeps the placeholders at the odd indexes, literal text at the even ones
        self._parts = _PART.split(signed_payload)

    def _stamp(self, request: SignedRequest, now: float) -> bytes:
        if not self._timestamp_header:
            return b""
        name = self._timestamp_header
        text = request.headers.get(name)
        stamp = parse_unix(text, f"header {name}", "seconds")
        seconds = stamp / 1000 if stamp >= 1e11 else stamp
        if abs(now - seconds) > self._tolerance:
            raise AuthError("stale", f"header {name} is more than {self._tolerance}s away "
                                     f"from now; sign afresh")
        return _signed_text(text)

    def _id(self, request: SignedRequest) -> bytes:
        if not self._id_header:
            return b""
        value = request.headers.get(self._id_header)
        if not value:
            raise AuthError("missing", f"header {self._id_header} (the signed delivery id) is "
                                       f"missing; send it and sign it with the body")
        return _header_bytes(value)

    def _signed(self, request: SignedRequest, now: float) -> bytes:
        values = {"{body}": request.body, "{id}": self._id(request),
                  "{timestamp}": self._stamp(request, now)}
        return b"".join(values[part] if i % 2 else part.encode()
                        for i, part in enumerate(self._parts))

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
        if len(stamps) != 1 or not signatures:
            raise AuthError("bad", "Stripe-Signature must hold t=<unix seconds> and v1=<hex>")
        stamp = parse_unix(stamps[0] or None, "Stripe-Signature t=", "seconds")
        if abs(now - stamp) > self._tolerance:
            raise AuthError("stale", f"Stripe-Signature timestamp is more than "
                                     f"{self._tolerance}s away from now; send a fresh request")
        signed = _signed_text(stamps[0]) + b"." + request.body
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
        millis = parse_unix(stamp, "X-HubSpot-Request-Timestamp", "milliseconds")
        if abs(now * 1000 - millis) > self._max_age * 1000:
            raise AuthError("stale", f"X-HubSpot-Request-Timestamp is more than "
                                     f"{self._max_age}s old; HubSpot retries with a new one")
        signed = (request.method.upper() + self.uri(request)).encode() + request.body + \
            _signed_text(stamp)
        given = _decode(signature.strip(), "base64")
        if given is None or not _any_match(self._secrets, signed, [given]):
            raise AuthError("bad", "X-HubSpot-Signature-v3 does not match; check the app's "
                                   "client secret and public_url (HubSpot signs the full URI)")


class StandardWebhooksVerifier:
    """``webhook-signature: v1,<base64>[ v1,<base64>...]`` over ``{id}.{timestamp}.{body}``.

    Several entries arrive while the sender rotates its secret; any v1 entry matching any of our
    secrets passes, other versions (``v1a`` is asymmetric) are skipped.
    """

    def __init__(self, secrets: list[bytes], tolerance: int) -> None:
        self._secrets, self._tolerance = secrets, tolerance

    def verify(self, request: SignedRequest, now: float) -> None:
        webhook_id = request.headers.get("webhook-id")
        signature = request.headers.get("webhook-signature")
        if not webhook_id or not signature:
            raise AuthError("missing", "headers webhook-id, webhook-timestamp and "
                                       "webhook-signature are required (Standard Webhooks)")
        stamp = parse_unix(request.headers.get("webhook-timestamp"), "header webhook-timestamp",
                           "seconds")
        if abs(now - stamp) > self._tolerance:
            raise AuthError("stale", f"header webhook-timestamp is more than "
                                     f"{self._tolerance}s away from now; send a fresh request")
        entries = [entry.partition(",") for entry in signature.split()]
        given = [_decode(sig, "base64") for version, _, sig in entries if version == "v1"]
        signed = (_header_bytes(webhook_id) + b"." + _signed_text(
            request.headers.get("webhook-timestamp")) + b"." + request.body)
        if not _any_match(self._secrets, signed, [g for g in given if g is not None]):
            raise AuthError("bad", "no v1 entry of webhook-signature matches; check the "
                                   "endpoint secret (whsec_...) and sign "
                                   "'{webhook-id}.{webhook-timestamp}.{raw body}'")


def _standard_webhooks_key(secret: bytes, where: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix may be left out)."""
    key = _decode(secret.removeprefix(b"whsec_").decode("ascii", "replace"), "base64")
    if not key:
        raise ConfigError([Problem(
            "<environment>", None, where,
            "the Standard Webhooks secret must be 'whsec_' followed by base64 (as the sender's "
            "dashboard shows it); check the variable's value",
        )])
    return key


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
            raise AuthError("missing", "send HTTP basic credentials (Authorization: Basic ...)",
                            headers={"WWW-Authenticate": 'Basic realm="silobridge"'})
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
                            auth.timestamp_header, auth.tolerance, auth.signed_payload,
                            auth.id_header)
    if isinstance(auth, StandardWebhooksAuth):
        keys = [_standard_webhooks_key(secret, where) for secret in secrets]
        return StandardWebhooksVerifier(keys, auth.tolerance)
    if isinstance(auth, StripeAuth):
        return StripeVerifier(secrets, auth.tolerance)
    if isinstance(auth, HubspotAuth):
        return HubspotVerifier(secrets, auth.max_age, auth.public_url)
    if isinstance(auth, ApiKeyAuth):
        return ApiKeyVerifier(secrets, auth.header, auth.query)
    assert isinstance(auth, BasicAuth)
    return BasicVerifier(secrets, auth.username)
