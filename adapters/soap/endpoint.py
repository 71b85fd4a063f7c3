"""The HTTP side every SOAP inbound endpoint shares: limits, parsing, faults, WSDL, publishing.

A subclass only turns a parsed request into envelopes and a response element (``process``).
Everything between the socket and that point is here, so the generic WSDL endpoint and the
Salesforce profile refuse bad input identically and answer only after the broker confirmed:

    GET  <path>?wsdl   the configured WSDL with every soap:address pointing at this endpoint
    POST <path>        media type -> size (Content-Length, then while reading) -> hardened
                       parse -> envelope checks -> process -> publish with confirms -> answer
"""

from __future__ import annotations

import asyncio
import copy
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import wait as wait_all
from contextlib import contextmanager
from pathlib import Path

import structlog
from lxml import etree
from starlette.requests import Request
from starlette.responses import Response

from adapters.soap.protocol import (
    SoapFault,
    SoapMessage,
    SoapVersion,
    fault_document,
    response_document,
    split_envelope,
)
from adapters.soap.xmlsafe import XmlLimits, XmlRejected, parse_document
from middleware import metrics
from middleware.adapter import AdapterContext
from middleware.broker.ingest import publish_envelope, publish_envelopes
from middleware.envelope import Envelope
from middleware.errors import BrokerError, ConfigError, FieldTooLong, Problem, PublishTimeout

__all__ = ["SoapEndpoint", "read_body"]

log = structlog.get_logger(__name__)

_WSDL_ADDRESS = ("{http://schemas.xmlsoap.org/wsdl/soap/}address",
                 "{http://schemas.xmlsoap.org/wsdl/soap12/}address")
_WSDL_LIMITS = XmlLimits(max_bytes=16 << 20, max_depth=256)
ADAPTER_LABEL = "soap"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (``too_large``) as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise XmlRejected("too_large", f"request of {declared} bytes exceeds the limit of "
                                       f"{limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise XmlRejected("too_large", f"request exceeds the limit of {limit} bytes")
    return bytes(body)


class SoapEndpoint(ABC):
    """Base of the SOAP inbound adapters; see the module docstring for the request path."""

    def __init__(self, name: str, path: str, limits: XmlLimits, retry_after: int) -> None:
        self.name = name
        self._path = path
        self._limits = limits
        self._retry_after = retry_after
        self._context: AdapterContext | None = None
        self._wsdl: etree._Element | None = None
        self._closed = False

    # -- for subclasses -----------------------------------------------------------------

    @abstractmethod
    async def process(self, message: SoapMessage, request: Request) -> etree._Element | None:
        """Publish what the request carries and return the response body element."""

    def mount(self, context: AdapterContext, wsdl: Path | None) -> None:
        """Register the route; the WSDL (if any) is read now so a bad file fails the start."""
        if context.ingress is None:
            raise RuntimeError(f"SOAP endpoint {self.name!r} needs the ingress (role ingress/all)")
        if wsdl is not None:
            try:
                self._wsdl = parse_document(wsdl.read_bytes(), _WSDL_LIMITS)
            except (OSError, XmlRejected) as exc:
                raise ConfigError([Problem(str(wsdl), None, "wsdl",
                                           f"cannot read the WSDL: {exc}")]) from exc
        self._context = context
        context.ingress.add_route(self._path, self.handle, ["GET", "POST"], self.name)

    async def publish(self, envelopes: Sequence[Envelope], *, dedupe: bool) -> int:
        """Publish and wait for every confirm; a SoapFault(Server) when the broker failed.

        With ``dedupe`` the envelope ids are source ids: ids already confirmed earlier are
        skipped (and recorded only after the confirm), so a resent message stores nothing twice.
        Returns how many envelopes were new.
        """
        try:
            return await asyncio.to_thread(self._publish, envelopes, dedupe)
        except BrokerError as exc:
            raise SoapFault("Server", "the message could not be stored; send it again later",
                            reason="broker", retry_after=self._retry_after) from exc

    def close(self) -> None:
        """Refuse new requests with a Server fault; requests in flight finish."""
        self._closed = True

    # -- request path ---------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if request.method == "GET":
            return self._serve_wsdl(request)
        version = SoapVersion.V11
        try:
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            found = SoapVersion.for_media_type(media)
            if found is None:
                raise SoapFault("Client", f"content type {media or '(none)'!r} is not SOAP; "
                                "send text/xml (1.1) or application/soap+xml (1.2)",
                                reason="content_type", status=415)
            version = found
            if self._closed:
                raise SoapFault("Server", "the endpoint is shutting down; send it again later",
                                reason="closed", retry_after=self._retry_after)
            body = await read_body(request, self._limits.max_bytes)
            # parsing is CPU work: keep it off the loop that serves every other endpoint
            root = await asyncio.to_thread(parse_document, body, self._limits)
            message = split_envelope(root)
            if message.version is not version:
                raise SoapFault("Client", f"a SOAP {_label(message.version)} envelope needs "
                                f"content type {message.version.media_type}",
                                reason="content_type", status=415)
            content = await self.process(message, request)
        except XmlRejected as exc:
            return self._fault(version, SoapFault(
                "Client", str(exc), reason=exc.reason,
                status=413 if exc.reason == "too_large" else None))
        except SoapFault as fault:
            return self._fault(version, fault)
        except FieldTooLong as exc:  # an id or type AMQP cannot carry: the sender must fix it
            return self._fault(version, SoapFault("Client", str(exc), reason="field_too_long"))
        except Exception:  # a bug must still answer SOAP, and as retryable: nothing was acked
            log.exception("soap endpoint failed", endpoint=self.name)
            return self._fault(version, SoapFault(
                "Server", "internal error; send it again later", reason="internal",
                retry_after=self._retry_after))
        return Response(response_document(version, content),
                        media_type=f"{version.media_type}; charset=utf-8")

    def _publish(self, envelopes: Sequence[Envelope], dedupe: bool) -> int:
        assert self._context is not None
        context, scope = self._context, f"ingress:{self.name}"
        fresh: dict[str, Envelope] = {}
        with self._store_errors("read"):
            for envelope in envelopes:
                if dedupe and (envelope.id in fresh
                               or context.stores.idempotency.seen(scope, envelope.id)):
                    continue
                fresh[envelope.id] = envelope
        if not dedupe:
            publish_envelopes(context.publisher, list(fresh.values()),
                              context.broker.publish_timeout)
            metrics.RECEIVED.labels(self.name, ADAPTER_LABEL).inc(len(fresh))
            return len(fresh)
        # Record what was confirmed even when a sibling failed: the sender resends the whole
        # message, and only the missing envelopes must go out again.
        futures = {ident: publish_envelope(context.publisher, envelope)
                   for ident, envelope in fresh.items()}
        wait_all(futures.values(), timeout=context.broker.publish_timeout)
        confirmed = [ident for ident, future in futures.items()
                     if future.done() and future.exception() is None]
        metrics.RECEIVED.labels(self.name, ADAPTER_LABEL).inc(len(confirmed))
        if confirmed:
            with self._store_errors("record"):
                context.stores.idempotency.record_many([(scope, ident) for ident in confirmed])
        if len(confirmed) < len(futures):
            failed = next((f.exception() for f in futures.values()
                           if f.done() and f.exception() is not None), None)
            if isinstance(failed, BrokerError):
                raise failed
            raise PublishTimeout(f"{len(futures) - len(confirmed)} of {len(futures)} envelopes "
                                 "not confirmed") from failed
        return len(confirmed)

    @contextmanager
    def _store_errors(self, step: str) -> Iterator[None]:
        """The dedupe store failing is a Server fault: the sender retries, nothing is lost
        (a resend after a failed record is published again and deduped by the routes)."""
        try:
            yield
        except Exception as exc:  # sqlite3 / psycopg errors: the store is an outside system
            log.error("dedupe store unavailable", endpoint=self.name, step=step,
                      error=type(exc).__name__)
            raise SoapFault("Server", "the dedupe store is unavailable; send it again later",
                            reason="store", retry_after=self._retry_after) from exc

    def _fault(self, version: SoapVersion, fault: SoapFault) -> Response:
        metrics.REJECTED.labels(self.name, ADAPTER_LABEL, fault.reason).inc()
        log.warning("soap request refused", endpoint=self.name, reason=fault.reason,
                    fault_code=fault.code, fault_string=fault.message)
        status, body = fault_document(version, fault)
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
        return Response(body, status_code=status, headers=headers,
                        media_type=f"{version.media_type}; charset=utf-8")

    def _serve_wsdl(self, request: Request) -> Response:
        if self._wsdl is None or "wsdl" not in {key.lower() for key in request.query_params}:
            return Response("GET <path>?wsdl serves the WSDL; SOAP requests are POSTed\n",
                            status_code=404 if self._wsdl is None else 400,
                            media_type="text/plain")
        document = copy.deepcopy(self._wsdl)
        here = str(request.url.replace(query=""))
        for address in document.iter(*_WSDL_ADDRESS):
            address.set("location", here)
        return Response(etree.tostring(document, xml_declaration=True, encoding="UTF-8"),
                        media_type="text/xml; charset=utf-8")


def _label(version: SoapVersion) -> str:
    return "1.1" if version is SoapVersion.V11 else "1.2"
