"""One HTTP client on an event loop: what the REST target and REST enrich steps share.

The loop thread, the aiohttp session with its connection limit, client auth (basic, bearer,
OAuth2 client credentials with one renewal on a 401), TLS to the peer, the environment's proxy
and the translation of client errors into ``DeliveryError`` live here once, so a target and an
enrich system configured alike behave alike. Callers hand requests over with ``submit`` and get
a ``concurrent.futures.Future``: nothing waits on the caller's thread.

The loop is the client's own thread, or a ``shared`` loop it is given: a REST target runs on
the broker's I/O loop (``Broker.event_loop``), where the worker's handlers run, so a request
submitted there starts as a task at once and its answer settles the message on the same
thread. Handing every request to a thread of its own and every answer back cost ~100 µs of CPU
per request at 1,000/s (a thread wake-up and a GIL hand-over each way), a sixth of the
worker's CPU per event (``bench/RESULTS.md``, Sync lag).

Answers are read with a size limit: a peer that answers a gigabyte (or streams forever) costs
at most ``limit`` bytes, and the caller learns that the answer was cut (``Answer.cut``). An
enrich step fails for good then (it would merge half a record); a target's request was
accepted all the same, only its answer is not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import threading
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import httpx
import orjson
from yarl import URL

from adapters._http import transport_error, without_frames
from adapters.rest.client import OAuth2ClientCredentials
from adapters.rest.outbound_config import BasicClientAuth, BearerAuth, ClientAuth
from middleware.config.models import TargetTlsConfig
from middleware.errors import DeliveryError
from middleware.secrets import require_secret
from middleware.tls import describe_tls_failure, target_context

__all__ = ["Answer", "HttpClient", "json_body"]

T = TypeVar("T")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]
    cut: bool = False
    """The body passed the read limit: ``body`` is its first ``limit`` bytes, the rest unread."""


class HttpClient:
    """Requests to one peer on a loop thread of its own, at most ``concurrency`` at a time."""

    def __init__(self, *, url: str, label: str, auth: ClientAuth | None, where: str,
                 timeout: float, concurrency: int, verify_tls: bool,
                 tls: TargetTlsConfig | None, tls_where: str,
                 connector: Callable[[], aiohttp.BaseConnector] | None = None,
                 shared: asyncio.AbstractEventLoop | None = None) -> None:
        self.label = label
        self._url = url
        self._auth = auth
        self._where = where
        self._timeout = timeout
        self._concurrency = concurrency
        self._verify = verify_tls
        self._tls = tls
        self._tls_where = tls_where
        self._connector = connector
        self._loop = shared or asyncio.new_event_loop()
        self._thread = None if shared else threading.Thread(  # None: the loop is someone else's
            target=self._loop.run_forever, daemon=True, name=f"rest-{urlsplit(url).hostname}")
        self._tasks: set[asyncio.Task[Any]] = set()  # in flight, for close() to wait for
        self._session: aiohttp.ClientSession | None = None
        self._authorization: str | None = None
        self._oauth: OAuth2ClientCredentials | None = None
        self._proxy = _env_proxy(url)
        self._ssl: ssl.SSLContext | bool = verify_tls

    def start(self) -> None:
        """Read secrets and certificates (a mistake stops the start), open the session."""
        auth = self._auth
        if isinstance(auth, BasicClientAuth):
            password = require_secret(auth, "password", self._where)
            self._authorization = aiohttp.BasicAuth(auth.username, password).encode()
        elif isinstance(auth, BearerAuth):
            self._authorization = f"Bearer {require_secret(auth, 'token', self._where)}"
        elif auth is not None:
            self._oauth = OAuth2ClientCredentials(
                auth, require_secret(auth, "client_secret", self._where), self._timeout,
                self._verify)
        if self._verify and self._tls is not None:
            self._ssl = target_context(self._tls, self._tls_where)
        if self._thread is not None:  # a shared loop opens the session at the first request
            self._thread.start()
            self._session = asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()

    async def _open(self) -> aiohttp.ClientSession:
        connector = (self._connector() if self._connector is not None
                     else aiohttp.TCPConnector(limit=self._concurrency, ssl=self._ssl))
        return aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=self._timeout))

    def submit(self, work: Coroutine[Any, Any, T]) -> Future[T]:
        """Run a coroutine (one that calls ``send``) as a task on the client's loop.

        On that loop's own thread the task starts right away; from any other thread it is
        handed over. Its Future is resolved by the task's callback, on the loop's thread.
        """
        result: Future[T] = Future()
        if asyncio._get_running_loop() is self._loop:
            self._start_task(work, result)
        else:
            self._loop.call_soon_threadsafe(self._start_task, work, result)
        return result

    def _start_task(self, work: Coroutine[Any, Any, T], result: Future[T]) -> None:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._settle, result))

    def _settle(self, result: Future[T], done: asyncio.Task[T]) -> None:
        self._tasks.discard(done)
        if done.cancelled():  # the loop went away under it: as if the connection was lost
            result.set_exception(DeliveryError(f"request to {self.label} was cancelled",
                                               retryable=True))
            return
        error = done.exception()
        if error is not None:
            result.set_exception(error)
        else:
            result.set_result(done.result())

    async def send(self, method: str, url: str, headers: dict[str, str],
                   content: bytes | None = None, limit: int | None = None) -> Answer:
        """One request with the client's auth; an expired OAuth2 token is renewed once."""
        token = await self._token() if self._oauth else None
        answer = await self._request(method, url, headers, content, token, limit)
        if answer.status == 401 and token is not None:  # revoked or rotated early: renew once
            token = await self._token(replace=token)
            answer = await self._request(method, url, headers, content, token, limit)
        return answer

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

    async def _request(self, method: str, url: str, headers: dict[str, str],
                       content: bytes | None, token: str | None, limit: int | None) -> Answer:
        if self._session is None:  # a shared loop: opened on it by the first request
            self._session = await self._open()
        authorization = f"Bearer {token}" if token else self._authorization
        if authorization:
            headers["Authorization"] = authorization
        try:
            # encoded: the templates already quoted each value; yarl must not re-normalise them
            async with self._session.request(method, URL(url, encoded=True), headers=headers,
                                             proxy=self._proxy, data=content,
                                             allow_redirects=False) as response:
                if limit is None:
                    return Answer(response.status, await response.read(), response.headers)
                body, cut = await self._bounded(response, limit)
                return Answer(response.status, body, response.headers, cut)
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = describe_tls_failure(exc)
            if problem is not None:  # retried: a peer's certificate can be fixed in time
                raise DeliveryError(f"request to {self.label} failed: {problem}",
                                    retryable=True, details={"error": "tls"}
                                    ) from without_frames(exc)
            raise transport_error(exc, self.label) from without_frames(exc)

    async def _bounded(self, response: aiohttp.ClientResponse,
                       limit: int) -> tuple[bytes, bool]:
        """The body, and whether it passed ``limit`` bytes: then only its first ``limit`` bytes
        are read, the rest never is and the connection is not reused."""
        declared = response.content_length
        body = bytearray()
        if declared is None or declared <= limit:
            async for chunk in response.content.iter_chunked(65536):
                body += chunk
                if len(body) > limit:
                    break
            else:
                return bytes(body), False
        response.close()
        return bytes(body[:limit]), True

    def close(self) -> None:
        """Let the requests in flight finish, then close the connections (and an own loop).

        On a shared loop the wait is bounded by the request timeout, and skipped once that
        loop has stopped (its thread died): nothing on it can finish any more.
        """
        if self._thread is None:
            if self._loop.is_running():
                drained = asyncio.run_coroutine_threadsafe(self._drain(), self._loop)
                with contextlib.suppress(TimeoutError):
                    drained.result(self._timeout + 5)
        elif self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._drain(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
        else:
            self._loop.close()
        if self._oauth is not None:
            self._oauth.close()

    async def _drain(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


def _env_proxy(url: str) -> str | None:
    """The proxy HTTP(S)_PROXY / NO_PROXY name for the peer, as the poller (httpx) uses them.

    Looked up once: aiohttp's ``trust_env`` would look it up per request and also read
    ``~/.netrc`` on a worker thread for every request without auth, which doubled the lag.
    """
    parts = urlsplit(url)
    if proxy_bypass(parts.hostname or ""):
        return None
    return getproxies().get(parts.scheme)


def json_body(body: bytes, content_type: str) -> Any:
    """The parsed JSON body, or None for an empty or non-JSON answer."""
    if not body or "json" not in content_type:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
