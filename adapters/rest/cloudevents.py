"""CloudEvents over HTTP (the CloudEvents HTTP protocol binding 1.0), both directions.

In: an endpoint with ``cloudevents: accept`` takes an event as it is, keeping its ``id``,
``source``, ``type``, ``subject``, ``time`` and extensions instead of deriving them:

- structured mode: ``Content-Type: application/cloudevents+json``, the whole event in the body;
- binary mode: the attributes in ``ce-*`` headers (values percent-encoded where not ASCII),
  ``Content-Type`` is the event's ``datacontenttype``, the body is its data (JSON here).

Out: the REST target sends the mapped payload as an event in either mode (``cloudevents:
binary|structured``), its id the source event's (the idempotency key downstream) and its
cause the source event.

A request that claims to be a CloudEvent and is not one is refused with 400 naming the
attribute, so a sender can fix it from its own log.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

import orjson
from pydantic import ValidationError

from middleware.envelope import Envelope
from middleware.errors import Refused

__all__ = ["STRUCTURED", "binary_headers", "from_request", "is_cloudevent", "structured_body"]

STRUCTURED = "application/cloudevents+json"
_PREFIX = "ce-"
# what the binding lets a header value carry unencoded: printable ASCII but space, '"', '%'
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


def is_cloudevent(content_type: str, headers: Mapping[str, str]) -> bool:
    """Is this request a CloudEvent in structured or binary mode?"""
    return content_type == STRUCTURED or "ce-specversion" in headers


def from_request(content_type: str, headers: Mapping[str, str], document: Any) -> Envelope:
    """The envelope of a CloudEvent request whose body (JSON) is already parsed."""
    if content_type == STRUCTURED:
        if not isinstance(document, dict):
            raise _refused("<body>", f"a structured-mode event is a JSON object, not "
                                     f"{type(document).__name__}")
        if "data_base64" in document:
            raise _refused("data_base64", "binary data is not accepted here; send JSON data")
        attributes = dict(document)
    else:
        attributes = {name[len(_PREFIX):]: unquote(value) for name, value in headers.items()
                      if name.lower().startswith(_PREFIX)}
        attributes = {name.lower(): value for name, value in attributes.items()}
        attributes["datacontenttype"] = headers.get("content-type")
        attributes["data"] = document
    return _envelope(attributes)


def _envelope(attributes: dict[str, Any]) -> Envelope:
    if attributes.get("specversion") != "1.0":
        raise _refused("specversion", f"CloudEvents specversion "
                                      f"{attributes.get('specversion')!r} is not supported; "
                                      f"send 1.0")
    for name in ("id", "source", "type"):
        if not isinstance(attributes.get(name), str) or not attributes[name]:
            raise _refused(name, f"the required attribute {name!r} is missing or empty")
    attributes.setdefault("correlationid", attributes["id"])
    try:
        return Envelope.model_validate(attributes)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "<event>"
        raise _refused(where, f"invalid attribute: {first['msg']}") from None


def _refused(attribute: str, detail: str) -> Refused:
    return Refused(400, "cloudevent", "invalid CloudEvent", f"{detail} (CloudEvents 1.0, HTTP "
                   f"binding)", extra={"path": attribute})


def _attributes(envelope: Envelope, data: Any, source_id: str) -> dict[str, Any]:
    """The outgoing event: the source event's attributes, the mapped data, the cause."""
    attributes = {**envelope.__dict__, **(envelope.__pydantic_extra__ or {})}
    attributes.update(data=data, causationid=source_id, hops=envelope.hops + 1,
                      datacontenttype="application/json")
    return {name: value for name, value in attributes.items() if value is not None}


def structured_body(envelope: Envelope, data: Any) -> bytes:
    """Body of a structured-mode request (send with Content-Type ``STRUCTURED``)."""
    return envelope.to_json(data=data, causationid=envelope.id, hops=envelope.hops + 1,
                            datacontenttype="application/json")


def binary_headers(envelope: Envelope, data: Any) -> dict[str, str]:
    """``ce-*`` headers of a binary-mode request; the body is the data as JSON."""
    headers = {}
    for name, value in _attributes(envelope, data, envelope.id).items():
        if name in ("data", "datacontenttype"):
            continue
        text = _text(value)
        headers[f"{_PREFIX}{name}"] = quote(text, safe=_SAFE)
    headers["Content-Type"] = "application/json"
    return headers


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return orjson.dumps(value, option=orjson.OPT_UTC_Z).decode().strip('"')
    return str(value)
