"""The request path every inbound protocol shares; a protocol writes only parse and derive.

    closing (503) -> client certificate where configured (403) -> ``admit`` (the protocol's
    checks on the head, e.g. SOAP's media type and HTTP basic) -> declared size (413) -> media
    type (415) -> streamed size (413) -> ``parse`` (authenticate the body, parse, derive the
    events with their delivery ids) -> publish once per delivery id with confirms (503 +
    Retry-After while a copy publishes an id, the store fails or the broker does not confirm)
    -> ``accepted``

Every failure on the way is a ``Refused`` (``middleware.errors``): the base counts and logs it
and ``refusal`` renders it (JSON here, a fault for SOAP). A value too long for AMQP
(``FieldTooLong``) is a 400 that names the field; anything unexpected is a 500 that names the
endpoint in the log, never a traceback for the sender. Nothing is answered 2xx unless it is
stored, and nothing is published for a request that fails a check.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from middleware import metrics, tracing
from middleware.adapter import AdapterContext
from middleware.errors import FieldTooLong, Refused, SilobridgeError
from middleware.ingress.config import EndpointConfig
from middleware.ingress.publishing import Claimed, IngressPublisher, Keyed, Published
from middleware.ingress.reading import read_body
from middleware.tls import ClientCertCheck

__all__ = ["Incoming", "IngressEndpoint"]

log = structlog.get_logger(__name__)

R = TypeVar("R")


@dataclass(frozen=True)
class Incoming(Generic[R]):
    """What ``parse`` made of a request: its events, and what the protocol answers with."""

    events: Sequence[Keyed]
    """(delivery id or None, envelope) per event; delivery ids unique within the request."""
    reply: R = field(default=None)  # type: ignore[assignment]
    """Protocol data for ``accepted`` (the SOAP response element); None for JSON."""
    claimed: Claimed | None = None
    """The delivery ids, when ``parse`` claimed them on its worker thread (``claim``)."""


class IngressEndpoint(ABC, Generic[R]):
    """One configured inbound endpoint on the shared ingress (see the module docstring)."""

    adapter: ClassVar[str] = "ingress"
    """The adapter label of metrics."""
    methods: ClassVar[tuple[str, ...]] = ("POST",)
    refused_event: ClassVar[str] = "inbound request refused"
    failed_event: ClassVar[str] = "inbound request failed"

    def __init__(self, config: EndpointConfig, content_types: Sequence[str]) -> None:
        self.name = config.name
        self._endpoint = config
        self._content_types = list(content_types)
        self._client_cert = (ClientCertCheck(config.client_cert) if config.client_cert
                             else None)
        self._publisher: IngressPublisher | None = None
        self._trace: tracing.IngressTracer | None = None
        self._closing = False

    # -- for subclasses -----------------------------------------------------------------

    @abstractmethod
    async def parse(self, request: Request, body: bytes) -> Incoming[R]:
        """Authenticate the body, parse it and derive its events; raise ``Refused``."""

    def claim(self, events: Sequence[Keyed]) -> Claimed:
        """Claim the events' delivery ids now (blocking): for a ``parse`` that already runs on
        a worker thread, so the claim costs no hop of its own."""
        assert self._publisher is not None, "claim after mount"
        return self._publisher.claim(events)

    def admit(self, request: Request) -> None:
        """Checks on the request head before the body is read; raise ``Refused``."""

    def accepted(self, request: Request, incoming: Incoming[R], published: Published) -> Response:
        """202 with the ids stored; 200 when every event was a resend already stored."""
        if incoming.events and not published.ids:
            metrics.REJECTED.labels(self.name, self.adapter, "duplicate").inc()
            log.info("duplicate delivery", endpoint=self.name, events=len(incoming.events))
            return JSONResponse({"status": "duplicate",
                                 "ids": [envelope.id for _, envelope in incoming.events],
                                 "duplicates": published.duplicates}, status_code=200)
        # No log line per accepted request: at high rates it costs more than the rest of the
        # answer (silobridge_received_total counts them; the answer lists the ids).
        return Response(orjson.dumps({"status": "accepted", "ids": published.ids,
                                      "duplicates": published.duplicates}),
                        status_code=202, media_type="application/json")

    def refusal(self, request: Request, refused: Refused) -> Response:
        """The answer to a refused request: JSON naming what is wrong and how to fix it."""
        return JSONResponse({"error": refused.error, "detail": refused.detail, **refused.extra},
                            status_code=refused.status, headers=refused.headers)

    # -- the ingress side ---------------------------------------------------------------

    def start(self, context: AdapterContext) -> None:
        """Mount the endpoint; a protocol that reads files or secrets first overrides this
        and calls ``mount`` when they are loaded, so a bad file fails the start."""
        self.mount(context)

    def mount(self, context: AdapterContext) -> None:
        """Route requests of the endpoint's path here (the ingress must run in this process)."""
        config = self._endpoint
        if context.ingress is None:
            raise SilobridgeError(f"{self.adapter} endpoint {config.name!r} needs the ingress "
                                  f"(role ingress or all)")
        self._publisher = IngressPublisher(context, config.name, self.adapter,
                                           config.retry_after)
        self._trace = tracing.ingress_tracer(config.name, self.adapter)
        context.ingress.add_route(config.path, self.handle, self.methods, config.name,
                                  client_cert=config.client_cert)

    def close(self) -> None:
        """New requests are refused as retryable; requests in flight finish."""
        self._closing = True

    async def handle(self, request: Request) -> Response:
        if self._trace is not None:  # a receive span around the answer (middleware.tracing)
            return await self._trace.serve(request, self._answer)
        return await self._answer(request)

    async def _answer(self, request: Request) -> Response:
        try:
            return await self._serve(request)
        except FieldTooLong as exc:  # an id or type AMQP cannot carry: only the sender can fix it
            refused = Refused(400, "field_too_long", "value too long", str(exc),
                              extra={"field": exc.field, "limit": exc.limit})
        except Refused as exc:
            refused = exc
        except Exception as exc:  # the last line of defence: one request fails, not the endpoint
            # through the masking logger; the sender sees no traceback, the operator the whole
            log.exception(self.failed_event, endpoint=self.name, error_type=type(exc).__name__)
            refused = Refused(500, "internal_error", "internal error", (
                "the request could not be handled and its events may or may not be stored; "
                "retry later (a resend with the same delivery id is deduped) and tell the "
                f"operator: the error is logged under endpoint {self.name!r}"))
        metrics.REJECTED.labels(self.name, self.adapter, refused.reason).inc()
        if self._trace is not None:
            self._trace.refused(refused.reason)
        log.warning(self.refused_event, endpoint=self.name, status=refused.status,
                    reason=refused.reason, detail=refused.detail)
        return self.refusal(request, refused)

    async def _serve(self, request: Request) -> Response:
        publisher = self._publisher
        if publisher is None or self._closing:
            raise Refused(503, "closed", "temporarily unable to store events",
                          f"the endpoint is shutting down; nothing was stored, send it again in "
                          f"{self._endpoint.retry_after}s",
                          headers={"Retry-After": str(self._endpoint.retry_after)})
        if self._client_cert is not None:
            refusal = self._client_cert.refusal(request.scope)
            if refusal is not None:
                raise Refused(403, "client_cert", "client certificate refused", refusal)
        self.admit(request)
        body = await read_body(request, self._endpoint.max_body_bytes, self._content_types)
        incoming = await self.parse(request, body)
        # publish spans, written into the envelopes as their traceparent (middleware.tracing)
        with (self._trace.publishing(incoming.events) if self._trace is not None
              else tracing.passing_on(incoming.events)) as publishing:
            if incoming.claimed is None:
                published = await publisher.publish(incoming.events)
            else:
                published = await publisher.publish_claimed(incoming.events, incoming.claimed)
            publishing.confirmed(published.ids)
        return self.accepted(request, incoming, published)
