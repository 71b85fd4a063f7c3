"""What every SOAP inbound endpoint adds to the ingress: versions, parsing, faults, WSDL.

A subclass only turns a parsed request into envelopes and a response element (``derive``). The
request path is the ingress's (``middleware.ingress.endpoint``), so the generic WSDL endpoint and
the Salesforce profile refuse bad input like every other protocol and answer only after the
broker confirmed:

    GET  <path>?wsdl   the configured WSDL, every soap:address set to ``public_url`` (from the
                       configuration, never from the request's Host header); rendered once
    POST <path>        client certificate (where configured; a Client fault, HTTP 403) ->
                       media type (415) -> HTTP auth -> size (Content-Length, then while
                       reading) -> one worker-thread hop: hardened parse, envelope checks,
                       WS-Security auth, ``derive``, claim of the delivery ids -> publish
                       with confirms (on the event loop) -> confirm or release the claims
                       (a second hop, only with delivery ids) -> answer

Every refusal is answered as a fault in the request's SOAP version (``fault_document``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
from lxml import etree
from starlette.requests import Request
from starlette.responses import Response

from adapters.soap.auth import Authenticator, build_authenticator
from adapters.soap.config import SoapEndpointBase
from adapters.soap.protocol import (
    SoapFault,
    SoapMessage,
    SoapVersion,
    fault_document,
    response_document,
    split_envelope,
)
from adapters.soap.xmlsafe import XmlLimits, XmlRejected, parse_document
from middleware.adapter import AdapterContext
from middleware.envelope import Envelope
from middleware.errors import ConfigError, Problem, Refused
from middleware.ingress.endpoint import Incoming, IngressEndpoint
from middleware.ingress.publishing import Keyed, Published
from middleware.ingress.reading import media_type

__all__ = ["Derived", "SoapEndpoint"]

_WSDL_ADDRESS = ("{http://schemas.xmlsoap.org/wsdl/soap/}address",
                 "{http://schemas.xmlsoap.org/wsdl/soap12/}address")
_WSDL_LIMITS = XmlLimits(max_bytes=16 << 20, max_depth=256)


@dataclass(frozen=True)
class Derived:
    """What a SOAP request carries: its events and the response element (None: empty Body)."""

    envelopes: list[Envelope]
    dedupe: bool
    """The envelope ids are source ids: a resend with the same ids is stored once."""
    reply: etree._Element | None


@dataclass(frozen=True)
class _Reply:
    version: SoapVersion
    content: etree._Element | None


class SoapEndpoint(IngressEndpoint[_Reply]):
    """Base of the SOAP inbound adapters; see the module docstring for the request path."""

    adapter = "soap"
    methods = ("GET", "POST")
    refused_event = "soap request refused"
    failed_event = "soap endpoint failed"

    def __init__(self, config: SoapEndpointBase) -> None:
        super().__init__(config, [version.media_type for version in SoapVersion])
        self._limits = XmlLimits(config.max_body_bytes, config.max_depth)
        self._auth_config = config.auth
        self._auth = Authenticator()
        self._public_url = config.public_url
        self._retry_after = config.retry_after
        self._wsdl: bytes | None = None

    # -- for subclasses -----------------------------------------------------------------

    @abstractmethod
    def derive(self, message: SoapMessage, headers: Mapping[str, str]) -> Derived:
        """The events and the answer of a parsed request (worker thread: CPU work is fine
        here, I/O is not); ``headers`` has lowercase names. Raise SoapFault to refuse."""

    def mount(self, context: AdapterContext, wsdl: Path | None = None) -> None:
        """Register the route; the WSDL (if any) is read and rendered now, and the auth
        secret read, so a bad file or a missing variable fails the start."""
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
        super().mount(context)

    # -- request path ---------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if request.method == "GET":
            return self._serve_wsdl(request)
        return await super().handle(request)

    def admit(self, request: Request) -> None:
        media = media_type(request.headers.get("content-type"))
        if SoapVersion.for_media_type(media) is None:
            raise SoapFault("Client", f"content type {media or '(none)'!r} is not SOAP; "
                            "send text/xml (1.1) or application/soap+xml (1.2)",
                            reason="content_type", status=415)
        self._auth.check_http(request.headers)

    async def parse(self, request: Request, body: bytes) -> Incoming[_Reply]:
        version = _version(request)
        headers = {key.lower(): value for key, value in request.headers.items()}
        # one hop for the CPU work and the claim, so the loop serving every endpoint stays free
        return await anyio.to_thread.run_sync(self._read, body, version, headers)

    def _read(self, body: bytes, version: SoapVersion,
              headers: Mapping[str, str]) -> Incoming[_Reply]:
        root = parse_document(body, self._limits)
        message = split_envelope(root, self._auth.understood)
        if message.version is not version:
            raise SoapFault("Client", f"a SOAP {_label(message.version)} envelope needs "
                            f"content type {message.version.media_type}",
                            reason="content_type", status=415)
        self._auth.check_message(message.header)
        derived = self.derive(message, headers)
        unique: dict[str, Envelope] = {}
        for envelope in derived.envelopes:
            unique.setdefault(envelope.id, envelope)
        keyed: list[Keyed] = [(ident if derived.dedupe else None, envelope)
                              for ident, envelope in unique.items()]
        return Incoming(keyed, _Reply(version, derived.reply), self.claim(keyed))

    def accepted(self, request: Request, incoming: Incoming[_Reply],
                 published: Published) -> Response:
        version = incoming.reply.version
        return Response(response_document(version, incoming.reply.content),
                        media_type=f"{version.media_type}; charset=utf-8")

    def refusal(self, request: Request, refused: Refused) -> Response:
        version = _version(request)
        status, body = fault_document(version, refused)
        return Response(body, status_code=status, headers=refused.headers,
                        media_type=f"{version.media_type}; charset=utf-8")

    def _serve_wsdl(self, request: Request) -> Response:
        if self._wsdl is None or "wsdl" not in {key.lower() for key in request.query_params}:
            return Response("GET <path>?wsdl serves the WSDL; SOAP requests are POSTed\n",
                            status_code=404 if self._wsdl is None else 400,
                            media_type="text/plain")
        return Response(self._wsdl, media_type="text/xml; charset=utf-8")


def _version(request: Request) -> SoapVersion:
    """The SOAP version the request's media type names (1.1 when it names none)."""
    found = SoapVersion.for_media_type(media_type(request.headers.get("content-type")))
    return found or SoapVersion.V11


def _label(version: SoapVersion) -> str:
    return "1.1" if version is SoapVersion.V11 else "1.2"
