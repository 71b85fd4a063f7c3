"""zeep values -> plain JSON values, for envelope payloads and captured responses.

zeep returns its own objects holding ``datetime`` (with isodate time zones), ``Decimal`` and
``bytes``; envelopes, CEL derivation rules and the xref capture all want JSON types. Decimals
become strings so amounts keep their exact digits.
"""

from __future__ import annotations

import base64
from datetime import date, time
from decimal import Decimal
from typing import Any

from zeep.helpers import serialize_object

__all__ = ["plain"]


def plain(value: Any) -> Any:
    """A JSON-compatible copy of a zeep result (dicts, lists, str, int, float, bool, None)."""
    return _convert(serialize_object(value, dict))


def _convert(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _convert(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_convert(item) for item in value]
    if isinstance(value, date | time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value
