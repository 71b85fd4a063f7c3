"""The HTTP side every SOAP inbound endpoint shares: limits, parsing, faults, WSDL, publishing.

A subclass only turns a parsed request into envelopes and a response element (``process``).
Everything between the socket and that point is here, so the generic WSDL endpoint and the
Salesforce profile refuse bad input identically and answer only after the broker confirmed:

    GET  <path>?wsdl   the configured WSDL, every soap:address set to ``public_url`` (from the
                       configuration, never from the request's Host header); rendered once
    POST <path>        media type -> client certificate (where configured; a Client fault,
                       HTTP 403) -> HTTP auth -> size (Content-Length, then while reading) ->
                       hardened parse -> envelope checks -> WS-Security auth -> process ->
                       publish with confirms -> answer
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import structlog
from lxml import etree
from starlette.requests import Request
from starlette.responses import Response

from adapters.soap.auth import Authenticator, build_authenticator
from adapters.soap.config import SoapInboundAuth
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
from middleware.broker.ingest import publish_envelopes
from middleware.config.models import ClientCertConfig
from middleware.ingress.publishing import InProgress, StoreFailed, publish_once
from middleware.envelope import Envelope
from middleware.errors import BrokerError, ConfigError, FieldTooLong, Problem
from middleware.tls import ClientCertCheck

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

    def __init__(self, name: str, path: str, limits: XmlLimits, retry_after: int, *,
                 auth: SoapInboundAuth | None = None, public_url: str | None = None) -> None:
        self.name = name
        self._path = path
        self._limits = limits
        self._retry_after = retry_after
        self._auth_config = auth
        self._auth = Authenticator()
        self._public_url = public_url
        self._context: AdapterContext | None = None
        self._wsdl: bytes | None = None
        self._closed = False
        self._client_cert: ClientCertCheck | None = None

    # -- for subclasses -----------------------------------------------------------------

    @abstractmethod
    async def process(self, message: SoapMessage, request: Request) -> etree._Element | None:
        """Publish what the request carries and return the response body element."""

    def mount(self, context: AdapterContext, wsdl: Path | None,
              client_cert: ClientCertConfig | None = None) -> None:
        """Register the route; the WSDL (if any) is read and rendered now, and the auth
        secret read, so a bad file or a missing variable fails the start."""
        if context.ingress is None:
            raise RuntimeError(f"SOAP endpoint {self.name!r} needs the ingress (role ingress/all)")
        self._auth = build_authenticator(self._auth_config, f"inbound.{self.name}",
                                         self._retry_after)
        if wsdl is not None:
            try:
                document = parse_document(wsdl.read_bytes(), _WSDL_LIMITS)
            except (OSError, XmlRejected) as exc:
                raise ConfigError([Problem(str(wsdl), None, "wsdl",
                                           f"cannot read the WSDL: {exc}")]) from exc
            if self._public_url is not None:
                for address in document.iter(*_WSDL_ADDRESS):
                    address.set("location", self._public_url)
            self._wsdl = etree.tostring(document, xml_declaration=True, encoding="UTF-8")
        self._context = context
        self._client_cert = ClientCertCheck(client_cert) if client_cert else None
        context.ingress.add_route(self._path, self.handle, ["GET", "POST"], self.name,
                                  client_cert=client_cert)

    async def publish(self, envelopes: Sequence[Envelope], *, dedupe: bool) -> int:
        """Publish and wait for every confirm; a SoapFault(Server) when the broker failed.

        With ``dedupe`` the envelope ids are source ids, claimed before publishing: ids already
        confirmed earlier are skipped, so a resent message stores nothing twice, and while a
        concurrent copy publishes an id this copy gets a Server fault (retry), never an Ack.
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
            refusal = self._client_cert.refusal(request.scope) if self._client_cert else None
            if refusal is not None:
                raise SoapFault("Client", refusal, reason="client_cert", status=403)
            if self._closed:
                raise SoapFault("Server", "the endpoint is shutting down; send it again later",
                                reason="closed", retry_after=self._retry_after)
            self._auth.check_http(request.headers)
            body = await read_body(request, self._limits.max_bytes)
            # parsing is CPU work: keep it off the loop that serves every other endpoint
            root = await asyncio.to_thread(parse_document, body, self._limits)
            message = split_envelope(root, self._auth.understood)
            if message.version is not version:
                raise SoapFault("Client", f"a SOAP {_label(message.version)} envelope needs "
                                f"content type {message.version.media_type}",
                                reason="content_type", status=415)
            self._auth.check_message(message.header)
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
        context = self._context
        unique: dict[str, Envelope] = {}
        for envelope in envelopes:
            unique.setdefault(envelope.id, envelope)
        if not dedupe:
            publish_envelopes(context.publisher, list(unique.values()),
                              context.broker.publish_timeout)
            metrics.RECEIVED.labels(self.name, ADAPTER_LABEL).inc(len(unique))
            return len(unique)
        # Claimed ids are published once however many copies of the message arrive at once;
        # what was confirmed stays done even when a sibling failed, so the sender's resend of
        # the whole message publishes only the missing envelopes.
        try:
            published = publish_once(context, f"ingress:{self.name}",
                                     list(unique.items()), self.name)
        except InProgress as exc:
            raise SoapFault("Server", f"{exc}; send it again later", reason="in_progress",
                            retry_after=self._retry_after) from exc
        except StoreFailed as exc:
            raise SoapFault("Server", "the dedupe store is unavailable; send it again later",
                            reason="store", retry_after=self._retry_after) from exc
        metrics.RECEIVED.labels(self.name, ADAPTER_LABEL).inc(len(published.ids))
        return len(published.ids)

    def _fault(self, version: SoapVersion, fault: SoapFault) -> Response:
        metrics.REJECTED.labels(self.name, ADAPTER_LABEL, fault.reason).inc()
        log.warning("soap request refused", endpoint=self.name, reason=fault.reason,
                    fault_code=fault.code, fault_string=fault.message)
        status, body = fault_document(version, fault)
        headers = dict(fault.headers)
        if fault.retry_after:
            headers["Retry-After"] = str(fault.retry_after)
        return Response(body, status_code=status, headers=headers,
                        media_type=f"{version.media_type}; charset=utf-8")

    def _serve_wsdl(self, request: Request) -> Response:
        if self._wsdl is None or "wsdl" not in {key.lower() for key in request.query_params}:
            return Response("GET <path>?wsdl serves the WSDL; SOAP requests are POSTed\n",
                            status_code=404 if self._wsdl is None else 400,
                            media_type="text/plain")
        return Response(self._wsdl, media_type="text/xml; charset=utf-8")


def _label(version: SoapVersion) -> str:
    return "1.1" if version is SoapVersion.V11 else "1.2"
