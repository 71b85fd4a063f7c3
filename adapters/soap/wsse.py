"""WS-Security UsernameToken, checked on the receiving side (OASIS UsernameToken Profile 1.0).

A sender puts ``wsse:Security/wsse:UsernameToken`` in the SOAP header with its user name and
either the password itself (``#PasswordText``, safe only over TLS) or a digest
``Base64(SHA-1(nonce + created + password))`` (``#PasswordDigest``) with the Base64 ``Nonce``
and the ``wsu:Created`` time it hashed. A digest proves the password without showing it, but
anyone who saw one request could send it again, so:

- ``Created`` must lie within ``max_age`` seconds of our clock (either side: clocks drift);
- a digest's ``Nonce`` is remembered for ``2 * max_age`` seconds, so within the time its
  ``Created`` is accepted it is accepted once. Only nonces of *valid* digests are remembered,
  so unauthenticated senders cannot fill the cache; when authenticated senders fill it, requests
  get a retryable Server fault rather than an unchecked pass (replays stay impossible).

The cache lives in the process: with several ingress replicas a digest could be replayed once
per replica within its window; TLS between sender and ingress closes that gap.

Failures say what to fix (missing header, stale clock, reused nonce, password form not
accepted) but never whether the user name or the password was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from lxml import etree

from adapters.soap.protocol import SoapFault

__all__ = ["SECURITY", "NonceCache", "UsernameTokenCheck"]

WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
SECURITY = f"{{{WSSE_NS}}}Security"
_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
_TEXT, _DIGEST = f"{_PROFILE}#PasswordText", f"{_PROFILE}#PasswordDigest"
_BASE64 = ("http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0"
           "#Base64Binary")
_MAX_NONCE_CHARS = 128  # the profile suggests 16 random bytes (24 Base64 characters)
_MAX_CREATED_CHARS = 64


def _malformed(message: str) -> SoapFault:
    return SoapFault("Client", f"WS-Security UsernameToken: {message}", reason="auth_malformed")


class NonceCache:
    """Nonces seen within their validity window; bounded, oldest expire first."""

    def __init__(self, capacity: int, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity, self._ttl, self._clock = capacity, ttl, clock
        self._expiry: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, nonce: bytes) -> bool | None:
        """True the first time, False for a replay, None when full of nonces still valid.

        Expiry times grow with insertion (one ttl for all), so expired entries are at the front.
        """
        now = self._clock()
        with self._lock:
            while self._expiry and next(iter(self._expiry.values())) <= now:
                self._expiry.popitem(last=False)
            if nonce in self._expiry:
                return False
            if len(self._expiry) >= self._capacity:
                return None
            self._expiry[nonce] = now + self._ttl
            return True


class UsernameTokenCheck:
    """Verifies the UsernameToken of a request; raises a Client fault on any failure."""

    def __init__(self, username: str, password: str, password_type: str, max_age: int,
                 nonces: NonceCache, retry_after: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._username, self._password = username.encode(), password.encode()
        self._accepted = {"digest": {_DIGEST}, "text": {_TEXT},
                          "any": {_DIGEST, _TEXT}}[password_type]
        self._max_age, self._nonces = max_age, nonces
        self._retry_after, self._clock = retry_after, clock

    def check(self, header: Sequence[etree._Element]) -> None:
        token = next((block.find(f"{{{WSSE_NS}}}UsernameToken") for block in header
                      if block.tag == SECURITY), None)
        if token is None:
            raise SoapFault("Client", "this endpoint needs a WS-Security UsernameToken "
                            "(wsse:Security header)", reason="auth_missing")
        password = token.find(f"{{{WSSE_NS}}}Password")
        if password is None:
            raise _malformed("the Password element is missing")
        kind = password.get("Type", _TEXT)  # the profile's default is PasswordText
        if kind not in self._accepted:
            wanted = " or ".join(sorted(k.rsplit("#", 1)[-1] for k in self._accepted))
            raise SoapFault("Client", f"WS-Security UsernameToken: this endpoint accepts "
                            f"{wanted} only", reason="auth_password_type")
        created = self._created(token, required=kind == _DIGEST)
        user_ok = hmac.compare_digest(
            (token.findtext(f"{{{WSSE_NS}}}Username") or "").strip().encode(), self._username)
        if kind == _DIGEST:
            nonce = self._nonce(token)
            expected = hashlib.sha1(nonce + (created or "").encode() + self._password).digest()
            secret_ok = hmac.compare_digest(_b64(password.text or "", "Password"), expected)
        else:
            nonce = None
            secret_ok = hmac.compare_digest((password.text or "").encode(), self._password)
        if not (user_ok and secret_ok):
            raise SoapFault("Client", "WS-Security UsernameToken: the user name or password is "
                            "wrong", reason="auth_failed")
        if nonce is not None:
            claimed = self._nonces.claim(nonce)
            if claimed is False:
                raise SoapFault("Client", "WS-Security UsernameToken: this Nonce was used "
                                "already; send a fresh nonce with every request",
                                reason="auth_replay")
            if claimed is None:
                raise SoapFault("Server", "too many requests within the nonce window; send it "
                                "again later", reason="auth_nonce_cache_full",
                                retry_after=self._retry_after)

    def _created(self, token: etree._Element, *, required: bool) -> str | None:
        node = token.find(f"{{{WSU_NS}}}Created")
        if node is None:
            node = token.find(f"{{{WSSE_NS}}}Created")  # older senders use the wsse namespace
        if node is None:
            if required:
                raise _malformed("a PasswordDigest needs wsu:Created")
            return None
        text = (node.text or "").strip()
        try:
            if len(text) > _MAX_CREATED_CHARS:
                raise ValueError
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise _malformed("Created is not an xsd:dateTime such as "
                             "2024-05-01T10:00:00Z") from None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        if abs(self._clock() - when.timestamp()) > self._max_age:
            raise SoapFault("Client", f"WS-Security UsernameToken: Created is more than "
                            f"{self._max_age} s away from this server's clock; check the "
                            "sender's clock (and send a fresh token)", reason="auth_expired")
        return node.text or ""

    @staticmethod
    def _nonce(token: etree._Element) -> bytes:
        node = token.find(f"{{{WSSE_NS}}}Nonce")
        if node is None:
            raise _malformed("a PasswordDigest needs a Nonce")
        if node.get("EncodingType", _BASE64) != _BASE64:
            raise _malformed("the Nonce must be Base64Binary")
        text = (node.text or "").strip()
        if not text or len(text) > _MAX_NONCE_CHARS:
            raise _malformed(f"the Nonce must be 1 to {_MAX_NONCE_CHARS} Base64 characters")
        return _b64(text, "Nonce")


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"the {what} is not Base64") from None
