"""zeep, set up the one way silobridge uses it: local WSDLs, hardened parsing, masked logs.

- ``LocalTransport`` reads WSDL and XSD documents from local files only: a WSDL is part of the
  deployment, and fetching one at run time would make a start depend on (and trust) a remote
  host. It also posts without zeep's own debug logging, which prints envelopes unmasked.
- ``load_document`` / ``load_client`` turn any failure into a ConfigError naming the file and
  the cause, so a broken WSDL stops the start instead of the first delivery.
- zeep applies plugins *before* its ``wsse`` option, so a logging plugin would never see the
  security header. ``WssePlugin`` therefore adds the UsernameToken as the first plugin and
  ``MaskedLogPlugin`` logs (at debug) exactly what is sent, with secrets masked.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
import structlog
from lxml import etree
from zeep import Client, Plugin
from zeep.transports import Transport
from zeep.wsdl import Document
from zeep.wsse.username import UsernameToken

from adapters.soap.xmlsafe import zeep_settings
from middleware.errors import ConfigError, Problem
from middleware.log import MASK

__all__ = ["LocalTransport", "MaskedLogPlugin", "ResponseTooLarge", "WssePlugin", "load_client",
           "load_document", "masked_xml"]

log = structlog.get_logger(__name__)

_SECRET_ELEMENT = re.compile(r"(?i)passw(or)?d|token|secret|sessionid|nonce")


class _QuietConversion(logging.Filter):
    """zeep logs a traceback with the offending *value* when a request field fails conversion.

    That value is payload (possibly personal data) and the endpoint reports the field anyway.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Error during xml -> python translation"


for _logger in ("zeep.xsd.types.simple", "zeep.xsd.elements.attribute"):
    logging.getLogger(_logger).addFilter(_QuietConversion())


class LocalTransport(Transport):
    """A zeep Transport that loads documents from local files only and posts without logging.

    It remembers the HTTP status of the last post per thread: zeep reports a non-200 answer
    without a SOAP Fault as a code-less Fault, and the status is what classifies it. With
    ``max_response_bytes`` an answer is read only that far (``ResponseTooLarge`` past it), for
    callers that merge what they read into a message (enrich steps).
    """

    def __init__(self, max_response_bytes: int | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._last = threading.local()
        self._limit = max_response_bytes

    def last_status(self) -> int | None:
        """HTTP status of this thread's last post (None before any answer)."""
        status: int | None = getattr(self._last, "status", None)
        return status

    def load(self, url: str) -> bytes:
        if urlparse(url).scheme in ("http", "https"):
            raise ConfigError([Problem(url, None, "wsdl", "refusing to fetch a remote document; "
                                       "save it next to the WSDL and import it by a local path")])
        content: bytes = super().load(url)
        return content

    def post(self, address: str, message: bytes | str, headers: dict[str, str]) -> Any:
        self._last.status = None
        limit = self._limit
        response = self.session.post(address, data=message, headers=headers,
                                     timeout=self.operation_timeout, stream=limit is not None)
        self._last.status = response.status_code
        if limit is not None:
            body = b"".join(_bounded(response, limit))
            response._content = body  # what zeep reads; the rest stays unread
            response.close()
        return response


class ResponseTooLarge(Exception):
    """An answer passed the caller's ``max_response_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than {limit} bytes")
        self.limit = limit


def _bounded(response: requests.Response, limit: int) -> Iterator[bytes]:
    read = 0
    for chunk in response.iter_content(65536):
        read += len(chunk)
        if read > limit:
            response.close()
            raise ResponseTooLarge(limit)
        yield chunk


def _problem(path: Path, exc: Exception) -> ConfigError:
    if isinstance(exc, ConfigError):
        return exc
    cause = str(exc).splitlines()[0] if str(exc) else ""
    return ConfigError([Problem(str(path), None, "wsdl",
                                f"cannot load the WSDL: {type(exc).__name__}: {cause}")])


def load_document(path: Path) -> Document:
    """The parsed WSDL (with its types) at ``path``; ConfigError if it cannot be used."""
    try:
        return Document(str(path), LocalTransport(),  # type: ignore[arg-type]  # an instance
                        settings=zeep_settings())
    except Exception as exc:  # zeep raises many unrelated types for a bad WSDL
        raise _problem(path, exc) from exc


def load_client(
    path: Path,
    *,
    session: requests.Session | None = None,
    operation_timeout: float | tuple[float, float] | None = None,
    plugins: list[Plugin] | None = None,
    max_response_bytes: int | None = None,
) -> Client:
    """A zeep Client for the WSDL at ``path``; ConfigError if the WSDL cannot be used."""
    transport = LocalTransport(max_response_bytes, session=session,
                               operation_timeout=operation_timeout)
    try:
        return Client(str(path), transport=transport, plugins=plugins or [],
                      settings=zeep_settings())
    except Exception as exc:  # zeep raises many unrelated types for a bad WSDL
        raise _problem(path, exc) from exc


def masked_xml(envelope: etree._Element) -> str:
    """The envelope as text with passwords, tokens, nonces and session ids replaced by ***."""
    copied = copy.deepcopy(envelope)
    for node in copied.iter("*"):
        if _SECRET_ELEMENT.search(etree.QName(node).localname) and len(node) == 0:
            node.text = MASK
    return etree.tostring(copied, encoding="unicode")


class WssePlugin(Plugin):
    """Adds the WS-Security UsernameToken (text or digest) to every request."""

    def __init__(self, token: UsernameToken) -> None:
        self._token = token

    def egress(self, envelope: Any, http_headers: Any, operation: Any,
               binding_options: Any) -> tuple[Any, Any]:
        result: tuple[Any, Any] = self._token.apply(envelope, http_headers)
        return result


class MaskedLogPlugin(Plugin):
    """Logs requests and responses at debug level, secrets masked (runs after WssePlugin)."""

    def egress(self, envelope: Any, http_headers: Any, operation: Any,
               binding_options: Any) -> tuple[Any, Any]:
        if logging.getLogger(__name__).isEnabledFor(logging.DEBUG):
            log.debug("soap request", operation=operation.name, xml=masked_xml(envelope),
                      address=binding_options.get("address"))
        return envelope, http_headers

    def ingress(self, envelope: Any, http_headers: Any, operation: Any) -> tuple[Any, Any]:
        if logging.getLogger(__name__).isEnabledFor(logging.DEBUG):
            log.debug("soap response", operation=operation.name, xml=masked_xml(envelope))
        return envelope, http_headers
