"""REST systems for enrich steps: a GET below a base URL, the JSON answer merged into the payload.

    systems:
      hubspot:
        type: rest
        base_url: https://api.hubapi.com
        auth: {type: bearer, token_env: HUBSPOT_TOKEN}
        timeout: 5
    routes:
      - ...
        enrich:
          - {system: hubspot, get: "/crm/v3/objects/contacts/{payload.objectId}", into: contact}

The client (auth, TLS, proxy, timeouts, error translation) is the REST target's
(``adapters.rest.session``) and answers are classified as deliveries are (``adapters._http``):
a 503 or 429 is retried honouring Retry-After, a 404 dead-letters (or, with ``required:
false``, leaves the payload as it was). Every template value is URL-encoded, so an id holding
``/`` or ``?`` stays inside its path segment; a value that makes a whole segment ``.`` or ``..``
is refused, since a server would read it as a step up the path, and so is an empty value in the
path, which would ask for a whole collection. An answer must be JSON and at
most ``max_response_bytes`` long: anything else is a permanent failure naming what came.
While tracing is on, the request carries ``traceparent`` / ``tracestate`` naming the message's
``enrich`` span, as a REST target's carries its deliver span (a header of the same name in
``headers`` wins, whatever its case).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import aiohttp
import orjson
from pydantic import ConfigDict, Field

from adapters._derive import resolve_path
from adapters._http import status_error
from adapters.rest.client import render
from adapters.rest.outbound_config import ClientAuth
from adapters.rest.session import HttpClient
from middleware.adapter import AdapterConfig, AdapterContext
from middleware.config.enrich import EnrichStep
from middleware.config.models import TargetTlsConfig
from middleware.enrich import Prepared, StepCall
from middleware.envelope import Envelope
from middleware.errors import ConfigError, DeliveryError, Problem

__all__ = ["MAX_URL", "RestSystem", "RestSystemConfig"]

_PLACEHOLDER = re.compile(r"\{(envelope|payload)\.([^{}]+)\}")
MAX_URL = 8192
"""Longest URL a step sends; a longer one means a template took a payload, not an id."""


class RestSystemConfig(AdapterConfig):
    """A system that enrich steps read from with GET requests (``get:`` below ``base_url``)."""

    model_config = ConfigDict(extra="forbid")
    STEP: ClassVar[str] = "get"

    type: Literal["rest"] = Field("rest", description="Selects this adapter.")
    base_url: str = Field(
        pattern=r"^https?://[^/?#]+(/[^?#]*)?$",
        description="Scheme, host and an optional path prefix; each step's 'get' is appended.",
        examples=["https://api.hubapi.com"],
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers sent with every request.",
        examples=[{"X-Api-Version": "2"}])
    auth: ClientAuth | None = Field(None, description="How to authenticate to the system.")
    timeout: float = Field(
        10.0, gt=0, le=120,
        description="Seconds per request, answer included; a system that hangs fails (and is "
        "retried) after this long.",
    )
    concurrency: int = Field(8, ge=1, le=128, description="Requests in flight at most.")
    max_response_bytes: int = Field(
        1_048_576, ge=1, le=64 * 1_048_576,
        description="Largest answer read; a larger one fails the step for good (unread).",
    )
    verify_tls: bool = Field(True, description="Verify the system's TLS certificate.")
    tls: TargetTlsConfig | None = Field(
        None, description="Private CA and/or client certificate for an https:// system.")


class RestSystem:
    def __init__(self, config: RestSystemConfig,
                 connector: Callable[[], aiohttp.BaseConnector] | None = None) -> None:
        self.config = config
        self.label = f"GET {urlsplit(config.base_url).netloc}"
        self.client = HttpClient(
            url=config.base_url, label=self.label, auth=config.auth, where="systems.auth",
            timeout=config.timeout, concurrency=config.concurrency,
            verify_tls=config.verify_tls, tls=config.tls, tls_where="systems",
            connector=connector)

    def start(self, context: AdapterContext) -> None:
        self.client.start()

    def bind(self, step: EnrichStep, where: str) -> StepCall:
        if step.get is None:  # the loader refuses this too; a guard for direct use
            raise ConfigError([Problem("", None, where, "a rest system takes 'get'")])
        return _Get(self, step, step.get)

    def close(self) -> None:
        self.client.close()


class _Get:
    def __init__(self, system: RestSystem, step: EnrichStep, template: str) -> None:
        self._system = system
        self._step = step
        self._template = system.config.base_url.rstrip("/") + template
        self._uses_envelope = "{envelope." in template
        path = template.split("?", 1)[0]
        self._in_path = [(match.group(0), match.group(1), match.group(2))
                         for match in _PLACEHOLDER.finditer(path)]

    def prepare(self, envelope: Envelope, payload: Any) -> Prepared:
        values = {
            "envelope": (orjson.loads(envelope.to_json(data=None)) if self._uses_envelope
                         else None),
            "payload": payload,
        }
        for placeholder, root, path in self._in_path:
            if resolve_path(values.get(root), path) == "":
                raise DeliveryError(
                    f"placeholder {placeholder} of 'get' is empty; the request would ask for "
                    f"the collection instead of one record", retryable=False,
                    details={"template": self._step.get})
        url = render(self._template, values, in_url=True)
        if len(url) > MAX_URL:
            raise DeliveryError(
                f"the URL of 'get' would be {len(url)} characters long (at most {MAX_URL}); "
                f"a placeholder took a long value: point it at an id", retryable=False)
        path = urlsplit(url).path
        if any(segment in (".", "..") for segment in path.split("/")):
            raise DeliveryError(
                "a placeholder of 'get' made a path segment '.' or '..', which a server reads "
                "as a step up the path; the value is no id", retryable=False,
                details={"template": self._step.get})
        return Prepared(url, url)

    def fetch(self, prepared: Prepared, trace: Mapping[str, str]) -> Future[Any]:
        return self._system.client.submit(self._get(prepared.request, trace))

    async def _get(self, url: str, trace: Mapping[str, str]) -> Any:
        system = self._system
        headers = {"Accept": "application/json", **system.config.headers}
        if trace:
            configured = {name.lower() for name in headers}
            headers.update((name, value) for name, value in trace.items()
                           if name not in configured)
        limit = system.config.max_response_bytes
        answer = await system.client.send("GET", url, headers, limit=limit)
        if answer.cut:
            raise DeliveryError(
                f"{system.label} answered more than {limit} bytes; raise max_response_bytes if "
                f"the record really is that large", retryable=False,
                details={"status": answer.status, "limit": limit})
        if answer.status == 404 and not self._step.required:
            return None
        if not 200 <= answer.status < 300:
            raise status_error(answer.status, answer.body.decode(errors="replace"),
                               answer.headers.get("Retry-After"), system.label)
        if answer.status == 204 or not answer.body:
            return None
        kind = answer.headers.get("Content-Type", "")
        if "json" not in kind:
            raise DeliveryError(f"{system.label} answered {kind or 'no Content-Type'}, not JSON; "
                                f"check the system's base_url and the step's 'get'",
                                retryable=False, details={"status": answer.status})
        try:
            return orjson.loads(answer.body)
        except orjson.JSONDecodeError as exc:
            raise DeliveryError(f"{system.label} answered a body that is not valid JSON "
                                f"({exc.msg})", retryable=False,
                                details={"status": answer.status}) from exc
