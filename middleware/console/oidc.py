"""OpenID Connect sign-in: the authorization code flow with PKCE, checked the way the spec asks.

The browser is sent to the provider with a fresh ``state``, ``nonce`` and PKCE challenge; the
three secrets travel back only in an HttpOnly cookie of this origin (``FLOW_COOKIE``), so any
replica can finish the flow without a shared table, and a callback that did not start in this
browser (login CSRF, a replayed or stolen code) fails the state check. The code is exchanged
with the PKCE verifier; the ID token's signature is checked against the provider's published
keys (JWKS, refetched once when a token names a key id not seen yet, for key rotation), and its
issuer, audience (and ``azp`` when there are several), expiry, issue time and nonce are checked.
Only asymmetric algorithms are accepted: a token signed with ``none`` or with an HMAC over the
public key is refused.

The role comes from one claim (``role_claim``): its values are matched against the configured
rules, first match wins, no match is no entry. Users are named ``oidc:<name>`` so that an
account at the provider can never take over a local user of the same name.

Everything here blocks on HTTP to the provider: the API calls it on a worker thread.

joserfc (with cryptography) is imported where a token or key set is read: with the TLS names'
parser, it added 10.2 MiB to every daemon, most of which never sign anyone in through OIDC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import orjson

from middleware.config.models import OidcConfig

if TYPE_CHECKING:
    from joserfc.jwk import KeySet

__all__ = ["FLOW_COOKIE", "FLOW_SECONDS", "USER_PREFIX", "Flow", "Identity", "OidcClient",
           "OidcError"]

FLOW_COOKIE = "silobridge_oidc"
FLOW_SECONDS = 600
"""How long a started sign-in may take at the provider."""
USER_PREFIX = "oidc:"
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA"]
_CACHE_SECONDS = 3600.0
_REFRESH_GAP = 60.0
"""Least seconds between two key fetches caused by unknown key ids (a flood of forged kids
must not turn into a flood of requests to the provider)."""


class OidcError(Exception):
    """A sign-in that cannot finish; the message says why and what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Flow:
    """One started sign-in: what the callback must match."""

    state: str
    nonce: str
    verifier: str
    started: float

    @classmethod
    def new(cls) -> Flow:
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24),
                   secrets.token_urlsafe(48), time.time())

    def cookie(self) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(self.__dict__)).decode()

    @classmethod
    def parse(cls, text: str | None) -> Flow | None:
        if not text or len(text) > 1000:
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(text.encode()))
            return cls(str(data["state"]), str(data["nonce"]), str(data["verifier"]),
                       float(data["started"]))
        except (ValueError, KeyError, TypeError):
            return None

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Identity:
    """Who signed in and what the role rules grant them."""

    name: str
    role: str
    routes: tuple[str, ...]
    subject: str


class OidcClient:
    """The provider as this console sees it: discovery, keys, code exchange, token checks."""

    def __init__(self, config: OidcConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        self._http = http or httpx.Client(timeout=config.timeout, follow_redirects=False)
        self._lock = threading.Lock()
        self._meta: tuple[float, dict[str, Any]] | None = None
        self._keys: tuple[float, KeySet] | None = None
        self._forced = -_REFRESH_GAP
        """When an unknown key id last caused a fetch (monotonic seconds)."""

    # the provider ------------------------------------------------------------------------
    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            answer = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OidcError(503, f"the identity provider cannot be reached for its {what} "
                                 f"({type(exc).__name__}); try again shortly") from None
        if answer.status_code != 200:
            raise OidcError(503, f"the identity provider answered {answer.status_code} for its "
                                 f"{what} ({url}); check 'console.oidc.issuer'")
        try:
            data = answer.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise OidcError(503, f"the identity provider's {what} is not a JSON object ({url})")
        return data

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document, cached for an hour."""
        with self._lock:
            if self._meta and time.monotonic() - self._meta[0] < _CACHE_SECONDS:
                return self._meta[1]
        issuer = self.config.issuer.rstrip("/")
        meta = self._get_json(f"{issuer}/.well-known/openid-configuration", "discovery document")
        if meta.get("issuer") != self.config.issuer:
            raise OidcError(503, f"the discovery document names the issuer "
                                 f"{meta.get('issuer')!r}, not {self.config.issuer!r}; set "
                                 f"'console.oidc.issuer' to the provider's exact issuer")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(meta.get(key), str):
                raise OidcError(503, f"the discovery document has no {key!r}")
        with self._lock:
            self._meta = (time.monotonic(), meta)
        return meta

    def _key_set(self, kid: str | None) -> KeySet:
        """The provider's keys; fetched again (at most once a minute) for an unknown kid."""
        now = time.monotonic()
        with self._lock:
            cached = self._keys
            if cached is not None and now - cached[0] < _CACHE_SECONDS:
                if kid is None or any(key.kid == kid for key in cached[1].keys):
                    return cached[1]
                if now - self._forced < _REFRESH_GAP:
                    return cached[1]  # the token fails with "no key": no flood of fetches
                self._forced = now
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        data = self._get_json(str(self.metadata()["jwks_uri"]), "signing keys (JWKS)")
        try:
            keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise OidcError(503, f"the provider's signing keys cannot be read: {exc}") from None
        with self._lock:
            self._keys = (time.monotonic(), keys)
        return keys

    # the flow ------------------------------------------------------------------------------
    def start(self) -> tuple[str, Flow]:
        """Where to send the browser, and the flow to remember in its cookie."""
        flow = Flow.new()
        scopes = ["openid", *(s for s in self.config.scopes if s != "openid")]
        query = urlencode({
            "response_type": "code", "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_url, "scope": " ".join(scopes),
            "state": flow.state, "nonce": flow.nonce,
            "code_challenge": flow.challenge, "code_challenge_method": "S256"})
        endpoint = str(self.metadata()["authorization_endpoint"])
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", flow

    def finish(self, params: Mapping[str, str], cookie: str | None) -> Identity:
        """The signed-in identity for the provider's callback, or ``OidcError``."""
        if "error" in params:
            reason = params.get("error_description") or params["error"]
            raise OidcError(401, f"the identity provider did not sign you in: {reason[:200]}")
        flow = Flow.parse(cookie)
        if flow is None or time.time() - flow.started > FLOW_SECONDS:
            raise OidcError(400, "this sign-in was not started in this browser or took longer "
                                 f"than {FLOW_SECONDS // 60} minutes; start it again")
        if not hmac.compare_digest(params.get("state", "").encode(), flow.state.encode()):
            raise OidcError(400, "the sign-in answer does not belong to the sign-in started "
                                 "here (state differs); start it again")
        code = params.get("code")
        if not code:
            raise OidcError(400, "the provider's answer has no authorization code")
        claims = self.verify(self._exchange(code, flow), flow.nonce)
        return self.identity(claims)

    def _exchange(self, code: str, flow: Flow) -> str:
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.config.redirect_url, "code_verifier": flow.verifier,
                "client_id": self.config.client_id}
        if self.config.client_secret is not None:
            form["client_secret"] = self.config.client_secret
        try:
            answer = self._http.post(str(self.metadata()["token_endpoint"]), data=form,
                                     headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OidcError(503, f"the identity provider cannot be reached to redeem the code "
                                 f"({type(exc).__name__}); try again") from None
        try:
            data = answer.json()
        except ValueError:
            data = {}
        if answer.status_code != 200 or not isinstance(data, dict):
            error = data.get("error", answer.status_code) if isinstance(data, dict) else ""
            raise OidcError(401, f"the identity provider refused the code ({error}); sign in "
                                 f"again")
        token = data.get("id_token")
        if not isinstance(token, str):
            raise OidcError(502, "the identity provider sent no ID token; add the 'openid' "
                                 "scope to the client at the provider")
        return token

    def verify(self, token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims once signature, issuer, audience, times and nonce hold."""
        try:
            header = orjson.loads(base64.urlsafe_b64decode(
                token.split(".")[0] + "=" * (-len(token.split(".")[0]) % 4)))
            kid = header.get("kid") if isinstance(header, dict) else None
        except ValueError:
            raise OidcError(401, "the ID token is not a signed JWT") from None
        from joserfc import jwt
        from joserfc.errors import ExpiredTokenError, JoseError

        keys = self._key_set(kid if isinstance(kid, str) else None)
        registry = jwt.JWTClaimsRegistry(
            leeway=int(self.config.clock_skew),
            iss={"essential": True, "value": self.config.issuer},
            aud={"essential": True, "value": self.config.client_id},
            exp={"essential": True}, iat={"essential": True}, sub={"essential": True})
        try:
            claims = jwt.decode(token, keys, algorithms=ALGORITHMS).claims
            registry.validate(claims)
        except ExpiredTokenError:
            raise OidcError(401, "the ID token has expired (or the clocks differ by more than "
                                 "'console.oidc.clock_skew'); sign in again") from None
        except (JoseError, ValueError, TypeError) as exc:
            raise OidcError(401, f"the ID token is not valid for this console "
                                 f"({type(exc).__name__}: {exc}); sign in again") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.config.client_id:
            raise OidcError(401, "the ID token was issued to another client (azp differs)")
        if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise OidcError(401, "the ID token's nonce does not match this sign-in (a replayed "
                                 "token?); sign in again")
        return claims

    def identity(self, claims: Mapping[str, Any]) -> Identity:
        """Apply the role rules to verified claims."""
        name = claims.get(self.config.name_claim) or claims["sub"]
        values = _claim_values(claims, self.config.role_claim)
        for rule in self.config.roles:
            if rule.value in values:
                return Identity(f"{USER_PREFIX}{str(name)[:120]}", rule.role, tuple(rule.routes),
                                str(claims["sub"]))
        raise OidcError(403, f"you are signed in at the provider, but none of your "
                             f"'{self.config.role_claim}' values is given a role here; ask an "
                             f"admin to add one to 'console.oidc.roles'")


def _claim_values(claims: Mapping[str, Any], path: str) -> set[str]:
    """The string values at a dotted claim path (a string or a list of strings)."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()
