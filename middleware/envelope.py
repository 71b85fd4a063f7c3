"""The canonical envelope: a CloudEvents 1.0 event in structured JSON mode.

Every inbound adapter produces one, every route consumes one. Keeping to CloudEvents means the
broker UI, the official SDKs and other tools can read our messages without knowing silobridge.
The AMQP properties mirror the key attributes so operators can read them without parsing bodies.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from middleware.broker.shortstr import SURELY_FITS, check_short
from middleware.errors import DecodeError

__all__ = ["CONTENT_TYPE", "Envelope", "utcnow"]

CONTENT_TYPE = "application/cloudevents+json"
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_REQUIRED = ("id", "source", "type")


def _json_default(value: Any) -> Any:
    """What orjson cannot write natively but mappings produce (decimal and set values)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def utcnow() -> datetime:
    """An aware UTC timestamp; the one clock call adapters use for event times."""
    return datetime.now(UTC)


class Envelope(BaseModel):
    """A CloudEvent; extension attributes beyond the known ones are kept as extra fields."""

    model_config = ConfigDict(extra="allow", frozen=False, validate_assignment=False)

    specversion: Literal["1.0"] = Field("1.0", description="CloudEvents spec version.")
    id: str = Field(
        min_length=1,
        description="Stable event id: the source's own id where it has one, so resends dedupe.",
    )
    source: str = Field(min_length=1, description="Producing system, e.g. 'crm/salesforce'.")
    type: str = Field(
        min_length=1, description="'<system>.<entity>.<action>', e.g. 'crm.customer.updated'."
    )
    subject: str | None = Field(None, description="Business key, e.g. the customer number.")
    time: datetime | None = Field(None, description="When the change happened at the source.")
    datacontenttype: str | None = Field("application/json", description="Media type of data.")
    dataschema: str | None = Field(None, description="URI of the schema data conforms to.")
    data: Any = Field(None, description="The business payload.")
    correlationid: str | None = Field(None, description="Ties together all events of one flow.")
    causationid: str | None = Field(None, description="Id of the event that caused this one.")
    traceparent: str | None = Field(
        None, description="W3C trace context: the span this event continues (distributed "
        "tracing extension; set by the ingress, rewritten to the deliver span for a target).")
    tracestate: str | None = Field(None, description="W3C vendor trace state of traceparent.")
    partitionkey: str | None = Field(None, description="Key for per-entity ordering.")
    origin: str | None = Field(None, description="System where the change first happened.")
    hops: int = Field(0, ge=0, description="Bridges crossed; loop prevention.")

    @model_validator(mode="after")
    def _check_extensions(self) -> Envelope:
        for name in self.model_extra or {}:
            if not _EXTENSION_NAME.match(name):
                raise ValueError(
                    f"extension attribute {name!r} must be 1-20 lowercase letters or digits"
                )
        # FieldTooLong is not a ValueError, so pydantic lets it through unwrapped.
        self.check_amqp()
        return self

    def check_amqp(self) -> None:
        """Raise FieldTooLong if an attribute that becomes an AMQP short string (see
        ``amqp_properties``) exceeds 255 bytes.

        Runs on construction, where every inbound adapter builds its envelopes, so the sender
        is told (400, a Client fault) instead of pika failing on the broker thread; call it
        again after changing attributes without validation (``model_copy``).
        """
        correlation = self.correlationid or ""
        if max(len(self.id), len(self.type), len(correlation)) <= SURELY_FITS:
            return  # the common case, on every message consumed: no encoding needed
        check_short("id", self.id, "message_id")
        check_short("type", self.type, "type and routing key")
        check_short("correlationid", self.correlationid, "correlation_id")

    @classmethod
    def new(
        cls,
        *,
        source: str,
        type: str,
        data: Any,
        subject: str | None = None,
        id: str | None = None,
        time: datetime | None = None,
        **extensions: Any,
    ) -> Envelope:
        """Build an envelope, filling id (random UUID) and time (now) when the source has none."""
        ident = id or str(uuid.uuid4())
        return cls(
            id=ident,
            source=source,
            type=type,
            subject=subject,
            time=time or utcnow(),
            data=data,
            correlationid=extensions.pop("correlationid", None) or ident,
            **extensions,
        )

    @property
    def system(self) -> str:
        return self.type.split(".", 1)[0]

    def to_json(self, **changes: Any) -> bytes:
        """Structured-mode JSON; absent optional attributes are left out, as the spec asks.

        ``changes`` replace attributes in the output only (a follow-up event, e.g. a target
        message with the mapped data). Serialised straight from the attributes with orjson:
        this runs for every message, and a pydantic dump would cost several times more.
        """
        attributes = {**self.__dict__, **(self.__pydantic_extra__ or {}), **changes}
        return orjson.dumps({k: v for k, v in attributes.items() if v is not None},
                            default=_json_default, option=orjson.OPT_UTC_Z)

    @classmethod
    def from_json(cls, body: bytes | str) -> Envelope:
        """Parse a structured-mode CloudEvent, or raise DecodeError saying what is wrong."""
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"body is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise DecodeError(f"body is JSON {type(raw).__name__}, expected a CloudEvent object")
        missing = [name for name in _REQUIRED if name not in raw]
        if missing:
            raise DecodeError(f"not a CloudEvent: missing attribute(s) {', '.join(missing)}")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<root>"
            raise DecodeError(f"invalid CloudEvent attribute {where}: {first['msg']}") from exc

    def amqp_properties(self, type: str | None = None) -> dict[str, Any]:
        """Values for the AMQP basic properties that mirror the envelope's key attributes.

        Every string here is an AMQP short string (at most 255 bytes), checked on construction.
        """
        stamp = self.time or utcnow()
        return {
            "message_id": self.id,
            "correlation_id": self.correlationid or self.id,
            "timestamp": int(stamp.timestamp()),
            "type": type or self.type,
            "content_type": CONTENT_TYPE,
        }
