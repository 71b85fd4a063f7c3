"""Who may call a SOAP inbound endpoint: none, HTTP basic, or a WS-Security UsernameToken.

The endpoint asks twice, with no-op defaults: ``check_http`` before the body is read (HTTP
basic: an unauthenticated sender costs no parsing) and ``check_message`` once the envelope is
parsed (the UsernameToken sits in the SOAP header). ``understood`` names the header blocks an
authenticator consumes, so their ``mustUnderstand="1"`` is honoured instead of refused.

A failure is a Client fault with a reason label for the rejected metric (``auth_missing``,
``auth_failed``, ``auth_expired``, ``auth_replay``, ...); basic failures answer HTTP 401 with a
``WWW-Authenticate`` challenge. No answer says whether the user name or the password was wrong.
Passwords are read from the environment at start, so a missing variable fails the start.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence

from lxml import etree

from adapters.soap.config import BasicInboundAuth, SoapInboundAuth, WsseInboundAuth
from adapters.soap.protocol import SoapFault
from adapters.soap.wsse import SECURITY, NonceCache, UsernameTokenCheck
from middleware.secrets import require_secret

__all__ = ["Authenticator", "BasicCheck", "WsseCheck", "build_authenticator"]


class Authenticator:
    """No authentication; subclasses override the step where their credentials are."""

    understood: frozenset[str] = frozenset()

    def check_http(self, headers: Mapping[str, str]) -> None:
        """Before the body is read; ``headers`` has lowercase names."""

    def check_message(self, header: Sequence[etree._Element]) -> None:
        """After parsing; ``header`` holds the SOAP header blocks."""


class BasicCheck(Authenticator):
    def __init__(self, username: str, password: str, realm: str) -> None:
        self._username, self._password = username.encode(), password.encode()
        self._challenge = {"WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'}

    def check_http(self, headers: Mapping[str, str]) -> None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic" or not token.strip():
            raise self._fault("send HTTP basic credentials (Authorization: Basic ...)",
                              "auth_missing")
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise self._fault("the Authorization header is not Base64 user:password",
                              "auth_malformed") from None
        user, _, password = decoded.partition(b":")
        user_ok = hmac.compare_digest(user, self._username)
        if not (hmac.compare_digest(password, self._password) and user_ok):
            raise self._fault("the user name or password is wrong", "auth_failed")

    def _fault(self, message: str, reason: str) -> SoapFault:
        return SoapFault("Client", f"HTTP basic authentication: {message}", reason=reason,
                         status=401, headers=self._challenge)


class WsseCheck(Authenticator):
    understood = frozenset({SECURITY})

    def __init__(self, check: UsernameTokenCheck) -> None:
        self._check = check

    def check_message(self, header: Sequence[etree._Element]) -> None:
        self._check.check(header)


def build_authenticator(auth: SoapInboundAuth | None, where: str,
                        retry_after: int) -> Authenticator:
    """The authenticator an endpoint's ``auth`` section asks for (its password read now)."""
    if auth is None:
        return Authenticator()
    password = require_secret(auth, "password", f"{where}.auth")
    if isinstance(auth, BasicInboundAuth):
        return BasicCheck(auth.username, password, auth.realm)
    assert isinstance(auth, WsseInboundAuth)
    nonces = NonceCache(auth.nonce_cache_size, ttl=2 * auth.max_age)
    return WsseCheck(UsernameTokenCheck(auth.username, password, auth.password_type,
                                        auth.max_age, nonces, retry_after))
