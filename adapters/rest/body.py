"""Reading a webhook request safely: size limit before reading, media type, JSON with position.

JSON integers are kept exact. orjson, like most JSON parsers, reads an integer beyond the 64-bit
range as a float, so two event ids that differ only past the 17th digit would become one; such
integers become strings of their exact digits instead (which orjson can also write back, where
a Python int beyond 64 bits would fail the envelope's serialisation).

Each refusal is a ``Rejected`` carrying the HTTP status, the metric reason and a JSON body that
says what is wrong, where, and how to fix it, so an integrator can act on the sender's log alone.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse

__all__ = ["Rejected", "media_type", "parse_json", "read_body"]

# 2**64 has 20 digits, -2**63 has 19: a shorter digit run always fits orjson's integers
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1
# 2**64 - 1 has 20 digits: a longer integer is never converted (int() is quadratic in length)
_MAX_INT_DIGITS = 20


class Rejected(Exception):
    """A request refused with ``status``; ``reason`` is the bounded metric label."""

    def __init__(
        self,
        status: int,
        reason: str,
        error: str,
        detail: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status, self.reason, self.error, self.detail = status, reason, error, detail
        self.extra = extra or {}
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error, "detail": self.detail, **self.extra},
                            status_code=self.status, headers=self.headers)


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _too_large(limit: int) -> Rejected:
    return Rejected(413, "too_large", "body too large",
                    f"the body exceeds {limit} bytes; split the batch or raise max_body_bytes",
                    extra={"limit": limit})


async def read_body(request: Request, limit: int, content_types: list[str]) -> bytes:
    """The raw body, refusing early: a declared or streamed size over ``limit`` is never read."""
    declared = request.headers.get("content-length", "").strip()
    # ASCII digits only: isdigit() also passes superscripts, which int() refuses (a 500)
    if declared.isascii() and declared.isdigit() and (
            len(declared.lstrip("0")) > len(str(limit)) or int(declared) > limit):
        raise _too_large(limit)
    kind = media_type(request.headers.get("content-type"))
    if kind not in content_types:
        raise Rejected(415, "content_type", "unsupported media type",
                       f"Content-Type {kind or '(none)'!r} is not accepted; send "
                       f"{' or '.join(content_types)}", extra={"accepted": content_types})
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked bodies have no Content-Length: stop at the limit
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """Strict JSON (RFC 8259: no NaN, no lone surrogates); errors name line, column, position.

    A leading UTF-8 byte order mark is skipped, as the RFC allows (some .NET senders add one).
    """
    text = body.removeprefix(codecs.BOM_UTF8)
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Rejected(
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
        raise Rejected(400, "bad_json", "JSON nested too deeply",
                       "the document nests arrays and objects too deeply to parse with its "
                       "long numbers; flatten it") from None


def _exact_int(digits: str) -> int | str:
    """An integer orjson can also write, else its exact digits as a string."""
    if len(digits.lstrip("-")) <= _MAX_INT_DIGITS:
        number = int(digits)
        if _INT_MIN <= number <= _UINT_MAX:
            return number
    return digits
