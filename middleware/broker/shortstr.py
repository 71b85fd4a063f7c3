"""AMQP short strings: the values AMQP 0-9-1 limits to 255 bytes, checked before pika sees them.

pika raises ``ShortStringTooLong`` only while it encodes a frame, on the broker I/O thread,
where an exception used to end the thread. So envelopes check their own attributes when they
are built (``check_short``), and the publisher, when pika refuses a message anyway, names the
offending property (``long_property``) in the error the message's Future fails with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from middleware.broker.properties import Properties
from middleware.errors import FieldTooLong

__all__ = ["SHORT_STRING_MAX", "SURELY_FITS", "check_short", "long_property", "utf8_size"]

SHORT_STRING_MAX = FieldTooLong.limit
# A character is at most 4 bytes in UTF-8: anything this short fits without encoding it.
SURELY_FITS = SHORT_STRING_MAX // 4

# Basic properties AMQP encodes as short strings (the others are numbers, a table or a time).
_SHORT_PROPERTIES = ("message_id", "correlation_id", "type", "content_type",
                     "content_encoding", "reply_to", "expiration", "user_id", "app_id",
                     "cluster_id")


def utf8_size(value: str) -> int:
    return len(value) if len(value) <= SURELY_FITS else len(value.encode("utf-8", "replace"))


def check_short(field: str, value: str | None, carried_as: str) -> None:
    """Raise FieldTooLong when ``value`` does not fit an AMQP short string."""
    if value is not None and len(value) > SURELY_FITS:
        size = utf8_size(value)
        if size > SHORT_STRING_MAX:
            raise FieldTooLong(field, size, carried_as=carried_as)


def long_property(
    exchange: str, routing_key: str, properties: Properties
) -> FieldTooLong | None:
    """The first value of a message that is too long for a short string, as an error."""
    values: list[tuple[str, Any]] = [("exchange", exchange), ("routing_key", routing_key)]
    values += [(name, getattr(properties, name, None)) for name in _SHORT_PROPERTIES]
    values += [("header name", key) for key in _table_keys(properties.headers)]
    for name, value in values:
        if isinstance(value, str):
            try:
                check_short(name, value, carried_as=f"{name} (a short string)")
            except FieldTooLong as exc:
                return exc
    return None


def _table_keys(table: Mapping[str, Any] | None) -> list[str]:
    """Every key of a header table, nested tables included (their keys are short strings)."""
    keys: list[str] = []
    for key, value in (table or {}).items():
        keys.append(key)
        if isinstance(value, Mapping):
            keys.extend(_table_keys(value))
    return keys
