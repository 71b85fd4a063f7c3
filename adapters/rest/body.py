"""Reading a webhook request safely: size limit before reading, media type, JSON with position.

JSON integers are kept exact. orjson, like most JSON parsers, reads an integer beyond the 64-bit
range as a float, so two event ids that differ only past the 17th digit would become one; such
integers become strings of their exact digits instead (which orjson can also write back, where
a Python int beyond 64 bits would fail the envelope's serialisation).

Each refusal is a ``Refused`` (400) whose JSON answer says what is wrong and where (line, column,
position), so an integrator can act on the sender's log alone. Reading the body (size, media
type) is the ingress's job, shared with every protocol: ``middleware.ingress.reading``.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

import orjson

from middleware.errors import Refused

__all__ = ["parse_json"]

# 2**64 has 20 digits, -2**63 has 19: a shorter digit run always fits orjson's integers
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1
# 2**64 - 1 has 20 digits: a longer integer is never converted (int() is quadratic in length)
_MAX_INT_DIGITS = 20


def parse_json(body: bytes) -> Any:
    """Strict JSON (RFC 8259: no NaN, no lone surrogates); errors name line, column, position.

    A leading UTF-8 byte order mark is skipped, as the RFC allows (some .NET senders add one).
    """
    text = body.removeprefix(codecs.BOM_UTF8)
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Refused(
            400, "bad_json", "malformed JSON",
            f"{exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos}); "
            f"send one JSON document encoded as UTF-8",
            extra={"line": exc.lineno, "column": exc.colno, "position": exc.pos},
        ) from None
    if _LONG_DIGITS.search(text) is None:
        return document
    # orjson has checked the document; parse it again keeping every integer exact
    try:
        return json.loads(text, parse_int=_exact_int)
    except RecursionError:  # orjson nests deeper than Python's recursion limit
        raise Refused(400, "bad_json", "JSON nested too deeply",
                       "the document nests arrays and objects too deeply to parse with its "
                       "long numbers; flatten it") from None


def _exact_int(digits: str) -> int | str:
    """An integer orjson can also write, else its exact digits as a string."""
    if len(digits.lstrip("-")) <= _MAX_INT_DIGITS:
        number = int(digits)
        if _INT_MIN <= number <= _UINT_MAX:
            return number
    return digits
