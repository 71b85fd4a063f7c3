"""Hardened XML: the only way silobridge parses XML that comes from outside.

SOAP requests arrive from the network and WSDLs from integrators, so every parse assumes a
hostile document:

- the size is checked before parsing (the endpoint also refuses a too-large Content-Length
  before reading the body);
- no DTD at all: a DOCTYPE is refused when the root element starts, so neither the billion-laughs
  nor the quadratic-blowup tricks nor an external DTD get anywhere; entities are never expanded
  (``resolve_entities=False``), DTDs never loaded, the network never used (``no_network``) and a
  resolver refuses any external document lxml might still ask for;
- nesting deeper than the limit is refused while parsing (libxml2's own limit is far higher);
- comments and processing instructions are dropped.

zeep reads WSDLs and responses through :func:`zeep_settings`, the same rules in zeep's terms.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from lxml import etree
from zeep import Settings

from adapters.soap.protocol import excerpt
from middleware.errors import Refused

__all__ = ["XmlLimits", "XmlRejected", "parse_document", "zeep_settings"]

DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_MAX_DEPTH = 64


class XmlRejected(Refused):
    """A document refused before or while parsing (413 too large, else 400); ``reason`` is a
    short metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(413 if reason == "too_large" else 400, reason, "XML refused", message)

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class XmlLimits:
    """How large and how deep a document may be."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH


class _RefuseAll(etree.Resolver):
    """Asked for an external document (DTD, entity): refuse instead of reading anything."""

    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:
        raise XmlRejected("dtd", f"external reference {system_url!r} refused")


def parse_document(data: bytes, limits: XmlLimits) -> etree._Element:
    """Parse ``data`` (any encoding lxml detects, BOM included) under ``limits``.

    Raises XmlRejected with reason ``too_large``, ``dtd``, ``too_deep`` or ``malformed``.
    """
    if len(data) > limits.max_bytes:
        raise XmlRejected("too_large", f"document of {len(data)} bytes exceeds the limit of "
                                       f"{limits.max_bytes} bytes")
    events = etree.iterparse(
        io.BytesIO(data), events=("start", "end"), resolve_entities=False, no_network=True,
        load_dtd=False, dtd_validation=False, attribute_defaults=False, huge_tree=False,
        remove_comments=True, remove_pis=True,
    )
    events.resolvers.add(_RefuseAll())
    depth = 0
    root: etree._Element | None = None
    try:
        for event, element in events:
            if event == "end":
                depth -= 1
                continue
            if root is None:
                root = element
                _refuse_doctype(element)
            depth += 1
            if depth > limits.max_depth:
                raise XmlRejected("too_deep", f"elements nested deeper than the limit of "
                                              f"{limits.max_depth}")
    except etree.XMLSyntaxError as exc:
        # libxml2 quotes names from the document: keep its words, bounded
        raise XmlRejected("malformed", f"not well-formed XML: {excerpt(exc.msg, 120)}") from None
    if root is None:
        raise XmlRejected("malformed", "the document has no root element")
    return root


def _refuse_doctype(root: etree._Element) -> None:
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.system_url:
        raise XmlRejected("dtd", "DTDs (DOCTYPE) are not allowed")


def zeep_settings() -> Settings:
    """zeep's settings for every client we build: strict, no DTD, entities or remote imports.

    A fresh object each time: zeep keeps per-thread overrides inside the Settings instance.
    """
    return Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True,
                    xml_huge_tree=False)
