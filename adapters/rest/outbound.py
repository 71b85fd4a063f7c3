"""REST target: send one mapped payload per envelope over HTTP, classified for retry or DLQ.

``deliver`` returns at once: the request runs on this target's own event loop thread (aiohttp),
at most ``concurrency`` of them at a time, so a slow ERP ties up only its own connections and
never the consumer's IO thread. One loop rather than a thread per request in flight: measured
against a loopback server with 16 requests in flight, a thread pool with httpx cost about
1.2 ms of client CPU per request (GIL hand-overs between the threads, httpcore's pool lock),
aiohttp on one loop about 0.26 ms, which is what lets one process deliver 1,000 events/s
(``bench/sync_lag.py``). With ``cloudevents`` the payload goes out as a CloudEvent
(``adapters.rest.cloudevents``). The envelope id goes out as the Idempotency-Key, so a
redelivery after a lost answer never creates a second record; the envelope's W3C trace context
(the worker's deliver span while tracing is on) goes out as ``traceparent`` / ``tracestate``.
The parsed JSON answer is handed back for the route's mapping to capture cross-references (for
example the id the ERP created).
``tls``
(a private CA, a client certificate) is loaded at start, off the target's loop; a handshake
that fails is retried like any connection error, with a message that says what to set.

``connector`` is a test seam: the unit tier passes a factory of ``aiohttp.UnixConnector`` so
the target talks to a peer on a unix socket, without TCP (``tests/unit/targets``). The factory
runs on the target's loop, where aiohttp wants its connectors made.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import httpx
import orjson
import structlog
from yarl import URL

from adapters._http import status_error, transport_error
from adapters.rest.client import OAuth2ClientCredentials, render
from adapters.rest.cloudevents import STRUCTURED, binary_headers, structured_body
from adapters.rest.outbound_config import BasicClientAuth, BearerAuth, RestTargetConfig
from middleware.adapter import AdapterContext, Delivered
from middleware.envelope import Envelope
from middleware.errors import DeliveryError
from middleware.secrets import require_secret
from middleware.tls import describe_tls_failure, target_context
from middleware.tracing import outgoing

__all__ = ["RestTarget"]

log = structlog.get_logger(__name__)

_WHERE = "routes.target.auth"


class RestTarget:
    def __init__(self, config: RestTargetConfig,
                 connector: Callable[[], aiohttp.BaseConnector] | None = None) -> None:
        self._config = config
        self._connector = connector
        self._label = f"{config.method} {urlsplit(config.url).netloc}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"rest-{urlsplit(config.url).hostname}")
        self._session: aiohttp.ClientSession | None = None
        self._authorization: str | None = None
        self._oauth: OAuth2ClientCredentials | None = None
        templates = [config.url, *config.headers.values()]
        self._uses_envelope = any("{envelope." in template for template in templates)
        self._proxy = _env_proxy(config.url)
        self._ssl: ssl.SSLContext | bool = config.verify_tls

    def start(self, context: AdapterContext) -> None:
        config = self._config
        auth = config.auth
        if isinstance(auth, BasicClientAuth):
            password = require_secret(auth, "password", _WHERE)
            self._authorization = aiohttp.BasicAuth(auth.username, password).encode()
        elif isinstance(auth, BearerAuth):
            self._authorization = f"Bearer {require_secret(auth, 'token', _WHERE)}"
        elif auth is not None:
            self._oauth = OAuth2ClientCredentials(
                auth, require_secret(auth, "client_secret", _WHERE), config.timeout,
                config.verify_tls)
        if config.verify_tls and config.tls is not None:
            self._ssl = target_context(config.tls, "routes.target")
        self._thread.start()
        self._session = asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()

    async def _open(self) -> aiohttp.ClientSession:
        config = self._config
        connector = (self._connector() if self._connector is not None
                     else aiohttp.TCPConnector(limit=config.concurrency, ssl=self._ssl))
        return aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=config.timeout))

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        return asyncio.run_coroutine_threadsafe(self._send(envelope, payload), self._loop)

    async def _send(self, envelope: Envelope, payload: Any) -> Delivered:
        config = self._config
        values = {
            # the attributes only: serialising the payload just to drop it cost ~20 µs a call
            "envelope": (orjson.loads(envelope.to_json(data=None)) if self._uses_envelope
                         else None),
            "payload": payload,
        }
        url = render(config.url, values, in_url=True)
        headers = {name: render(value, values, in_url=False)
                   for name, value in config.headers.items()}
        headers.setdefault("Accept", "application/json")
        # the deliver span's W3C context (configured headers of the same name win)
        for name, value in outgoing(envelope.traceparent, envelope.tracestate).items():
            headers.setdefault(name, value)
        if config.idempotency_header:
            headers[config.idempotency_header] = envelope.id
        content = None
        if config.cloudevents == "structured":
            content = structured_body(envelope, payload)
            headers["Content-Type"] = STRUCTURED
        elif config.send_body:
            content = orjson.dumps(payload)
            headers["Content-Type"] = "application/json"
            if config.cloudevents == "binary":
                headers.update(binary_headers(envelope, payload))
        token = await self._token() if self._oauth else None
        status, body, answer = await self._request(url, headers, content, token)
        if status == 401 and token is not None:  # revoked or rotated early: renew once
            token = await self._token(replace=token)
            status, body, answer = await self._request(url, headers, content, token)
        if not 200 <= status < 300:
            raise status_error(status, body.decode(errors="replace"),
                               answer.get("Retry-After"), self._label)
        log.debug("delivered", target=self._label, status=status, message_id=envelope.id)
        return Delivered(response=_json(body, answer.get("Content-Type", "")),
                         details={"status": status})

    async def _token(self, replace: str | None = None) -> str:
        """The cached OAuth2 token; a renewal (rare, blocking httpx) runs off the loop."""
        oauth = self._oauth
        assert oauth is not None
        cached = None if replace else oauth.fresh()
        if cached is not None:
            return cached
        try:
            return await asyncio.to_thread(oauth.token, replace)
        except httpx.HTTPError as exc:  # the token endpoint is unreachable: try again later
            raise transport_error(exc, "token endpoint") from exc

    async def _request(
        self, url: str, headers: dict[str, str], content: bytes | None, token: str | None
    ) -> tuple[int, bytes, Mapping[str, str]]:
        assert self._session is not None, "start() must run before deliver()"
        authorization = f"Bearer {token}" if token else self._authorization
        if authorization:
            headers["Authorization"] = authorization
        try:
            # encoded: the templates already quoted each value; yarl must not re-normalise them
            async with self._session.request(self._config.method, URL(url, encoded=True),
                                             headers=headers, proxy=self._proxy,
                                             data=content, allow_redirects=False) as response:
                return response.status, await response.read(), response.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = describe_tls_failure(exc)
            if problem is not None:  # retried: a target's certificate can be fixed in time
                raise DeliveryError(f"request to {self._label} failed: {problem}",
                                    retryable=True, details={"error": "tls"}) from exc
            raise transport_error(exc, self._label) from exc

    def close(self) -> None:
        """Let the requests in flight finish, then close the connections and the loop."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._drain(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()
        if self._oauth is not None:
            self._oauth.close()

    async def _drain(self) -> None:
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


def _env_proxy(url: str) -> str | None:
    """The proxy HTTP(S)_PROXY / NO_PROXY name for the target, as the poller (httpx) uses them.

    Looked up once: aiohttp's ``trust_env`` would look it up per request and also read
    ``~/.netrc`` on a worker thread for every request without auth, which doubled the lag.
    """
    parts = urlsplit(url)
    if proxy_bypass(parts.hostname or ""):
        return None
    return getproxies().get(parts.scheme)


def _json(body: bytes, content_type: str) -> Any:
    """The parsed JSON body, or None for an empty or non-JSON answer."""
    if not body or "json" not in content_type:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
