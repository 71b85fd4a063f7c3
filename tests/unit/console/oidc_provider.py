"""A minimal OpenID Connect provider for tests, on a real loopback HTTP server.

Discovery, authorize (signs the scripted user in at once and redirects back with a code),
token (checks the client, the redirect URI, one-time codes and the PKCE verifier, as a real
provider does) and JWKS. Tests script the user's claims, override or drop claims of the next
ID token, sign with a key the provider does not publish, or rotate the published key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from middleware.http import ServerThread

CLIENT_ID = "silobridge-console"
CLIENT_SECRET = "provider-test-secret"


class Provider:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.user: dict[str, Any] = {"sub": "u-1", "preferred_username": "ana",
                                     "groups": ["ops"]}
        self.overrides: dict[str, Any] = {}
        """Claims of the next ID tokens to replace (None: leave the claim out)."""
        self.sign_key: Any = None
        """Sign with this key instead of the published one (a forgery)."""
        self.algorithm = "RS256"
        self.codes: dict[str, dict[str, str]] = {}
        self.jwks_fetches = 0
        app = Starlette(routes=[
            Route("/.well-known/openid-configuration", self._discovery),
            Route("/authorize", self._authorize),
            Route("/token", self._token, methods=["POST"]),
            Route("/jwks", self._jwks),
        ])
        self._server = ServerThread(app, "127.0.0.1", 0, "oidc-provider")

    def __enter__(self) -> Provider:
        self._server.start_and_wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def rotate(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(4)})

    async def _discovery(self, _request: Request) -> Response:
        return JSONResponse({
            "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"], "id_token_signing_alg_values_supported":
            ["RS256"], "code_challenge_methods_supported": ["S256"]})

    async def _jwks(self, _request: Request) -> Response:
        self.jwks_fetches += 1
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        if (q.get("response_type") != "code" or q.get("client_id") != CLIENT_ID
                or q.get("code_challenge_method") != "S256" or not q.get("code_challenge")):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"redirect_uri": q["redirect_uri"], "challenge": q["code_challenge"],
                            "nonce": q.get("nonce", "")}
        return RedirectResponse(f"{q['redirect_uri']}?"
                                + urlencode({"code": code, "state": q.get("state", "")}),
                                status_code=302)

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        grant = self.codes.pop(str(form.get("code")), None)  # one use only
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                             ).rstrip(b"=").decode()
        if (grant is None or form.get("grant_type") != "authorization_code"
                or form.get("client_id") != CLIENT_ID
                or form.get("client_secret") != CLIENT_SECRET
                or form.get("redirect_uri") != grant["redirect_uri"]
                or challenge != grant["challenge"]):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                  "nonce": grant["nonce"], **self.user}
        for name, value in self.overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        key = self.sign_key or self.key
        header = {"alg": self.algorithm, "kid": self.key.kid}
        if self.algorithm == "none":
            token = ".".join(_b64(part) for part in (header, claims)) + "."
        elif self.algorithm == "HS256" and isinstance(key, bytes):
            signed = ".".join(_b64(part) for part in (header, claims))
            mac = hmac.new(key, signed.encode(), hashlib.sha256).digest()
            token = signed + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        else:
            token = jwt.encode(header, claims, key, algorithms=[self.algorithm])
        return JSONResponse({"access_token": "at", "token_type": "Bearer", "id_token": token})


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def public_key_as_hmac_secret(provider: Provider) -> bytes:
    """The 'algorithm confusion' forgery: HMAC keyed with the provider's public key (joserfc
    refuses to build it, so it is signed by hand)."""
    return provider.key.as_pem(private=False)
