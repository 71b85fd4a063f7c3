"""REST target: send one mapped payload per envelope over HTTP, classified for retry or DLQ.

``deliver`` returns at once: the request runs on this target's own bounded thread pool, whose
size is the target's concurrency limit, so a slow ERP ties up only its own threads and never the
consumer's IO thread. The envelope id goes out as the Idempotency-Key, so a redelivery after a
lost answer never creates a second record. The parsed JSON answer is handed back for the
route's mapping to capture cross-references (for example the id the ERP created).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import structlog

from adapters._http import status_error, transport_error
from adapters.rest.client import OAuth2ClientCredentials, build_auth, render
from adapters.rest.outbound_config import RestTargetConfig
from middleware.adapter import AdapterContext, Delivered
from middleware.envelope import Envelope

__all__ = ["RestTarget"]

log = structlog.get_logger(__name__)


class RestTarget:
    def __init__(self, config: RestTargetConfig) -> None:
        self._config = config
        self._label = f"{config.method} {urlsplit(config.url).netloc}"
        self._client: httpx.Client | None = None
        self._auth: httpx.Auth | None = None
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency,
                                        thread_name_prefix=f"rest-{urlsplit(config.url).hostname}")

    def start(self, context: AdapterContext) -> None:
        config = self._config
        self._auth = build_auth(config.auth, "routes.target.auth", config.timeout,
                                config.verify_tls)
        limits = httpx.Limits(max_connections=config.concurrency,
                              max_keepalive_connections=config.concurrency)
        self._client = httpx.Client(timeout=config.timeout, verify=config.verify_tls,
                                    limits=limits, auth=self._auth, follow_redirects=False)

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        return self._pool.submit(self._send, envelope, payload)

    def _send(self, envelope: Envelope, payload: Any) -> Delivered:
        assert self._client is not None, "start() must run before deliver()"
        config = self._config
        values = {"envelope": envelope.model_dump(mode="json"), "payload": payload}
        url = render(config.url, values, in_url=True)
        headers = {name: render(value, values, in_url=False)
                   for name, value in config.headers.items()}
        headers.setdefault("Accept", "application/json")
        if config.idempotency_header:
            headers[config.idempotency_header] = envelope.id
        content = None
        if config.send_body:
            content = orjson.dumps(payload)
            headers["Content-Type"] = "application/json"
        try:
            response = self._client.request(config.method, url, headers=headers,
                                             content=content)
        except httpx.HTTPError as exc:
            raise transport_error(exc, self._label) from exc
        if not response.is_success:
            raise status_error(response.status_code, response.text,
                               response.headers.get("retry-after"), self._label)
        log.debug("delivered", target=self._label, status=response.status_code,
                  message_id=envelope.id)
        return Delivered(response=_json(response), details={"status": response.status_code})

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._client is not None:
            self._client.close()
        if isinstance(self._auth, OAuth2ClientCredentials):
            self._auth.close()


def _json(response: httpx.Response) -> Any:
    """The parsed JSON body, or None for an empty or non-JSON answer."""
    if not response.content or "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
