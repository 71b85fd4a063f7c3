"""HTTP client pieces shared by the REST target and the poller: auth and templates.

OAuth2 client credentials keep one token per target, shared by all its requests: it is renewed
``refresh_margin`` seconds before it expires and, when the target still answers 401 (revoked or
rotated early), renewed once and the request repeated once. A second 401 is the target's answer.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Generator
from typing import Any
from urllib.parse import quote

import httpx

from adapters._derive import resolve_path
from adapters._http import status_error
from adapters.rest.outbound_config import BasicClientAuth, BearerAuth, ClientAuth, OAuth2Auth
from middleware.errors import DeliveryError
from middleware.secrets import require_secret

__all__ = ["BearerToken", "OAuth2ClientCredentials", "build_auth", "render"]

_PLACEHOLDER = re.compile(r"\{(envelope|payload)\.([^{}]+)\}")

# httpx logs every request URL at INFO; our URLs carry business keys (and, for some polled APIs,
# query-string credentials), which must not reach the logs. Its warnings still do.
logging.getLogger("httpx").setLevel(logging.WARNING)


def render(template: str, values: dict[str, Any], *, in_url: bool) -> str:
    """Fill ``{envelope.x}`` / ``{payload.a.b}``; a missing value is a permanent error."""

    def fill(match: re.Match[str]) -> str:
        value = resolve_path(values.get(match.group(1)), match.group(2))
        if value is None or isinstance(value, dict | list):
            raise DeliveryError(
                f"template placeholder {match.group(0)} has no scalar value; fix the target "
                f"template or the mapping", retryable=False, details={"template": template})
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return quote(text, safe="") if in_url else text

    return _PLACEHOLDER.sub(fill, template)


class BearerToken(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class OAuth2ClientCredentials(httpx.Auth):
    """Client-credentials token, cached and renewed before expiry and once on a 401."""

    def __init__(self, config: OAuth2Auth, secret: str, timeout: float, verify: bool) -> None:
        self._config = config
        self._secret = secret
        self._client = httpx.Client(timeout=timeout, verify=verify)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self.fetched = 0
        """Tokens obtained so far (observability and tests)."""

    def fresh(self) -> str | None:
        """The cached token if it is not yet due for renewal; never blocks, never fetches."""
        token = self._token
        if token is None or time.monotonic() >= self._expires - self._config.refresh_margin:
            return None
        return token

    def token(self, replace: str | None = None) -> str:
        """The cached token, or a new one when it is near expiry or equals ``replace``."""
        with self._lock:
            due = time.monotonic() >= self._expires - self._config.refresh_margin
            if self._token is None or due or self._token == replace:
                self._token, lifetime = self._fetch()
                self._expires = time.monotonic() + lifetime
                self.fetched += 1
            return self._token

    def _fetch(self) -> tuple[str, float]:
        config = self._config
        form = {"grant_type": "client_credentials"}
        if config.scope:
            form["scope"] = config.scope
        if config.audience:
            form["audience"] = config.audience
        if config.client_auth == "post":
            form.update(client_id=config.client_id, client_secret=self._secret)
            response = self._client.post(config.token_url, data=form)
        else:
            response = self._client.post(config.token_url, data=form,
                                         auth=(config.client_id, self._secret))
        if not response.is_success:
            raise status_error(response.status_code, response.text,
                               response.headers.get("retry-after"), "token endpoint")
        try:
            answer = response.json()
            token = str(answer["access_token"])
            lifetime = float(answer.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise DeliveryError("token endpoint answered without access_token",
                                retryable=True) from None
        return token, lifetime

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self.token(replace=token)}"
            yield request

    def close(self) -> None:
        self._client.close()


def build_auth(
    auth: ClientAuth | None, where: str, timeout: float, verify: bool
) -> httpx.Auth | None:
    """The httpx auth for a config; reads its secret (variable or file) now."""
    if auth is None:
        return None
    if isinstance(auth, BasicClientAuth):
        return httpx.BasicAuth(auth.username, require_secret(auth, "password", where))
    if isinstance(auth, BearerAuth):
        return BearerToken(require_secret(auth, "token", where))
    return OAuth2ClientCredentials(auth, require_secret(auth, "client_secret", where), timeout,
                                   verify)
