"""Reading a webhook request safely: size limit before reading, media type, JSON with position.

Each refusal is a ``Rejected`` carrying the HTTP status, the metric reason and a JSON body that
says what is wrong, where, and how to fix it, so an integrator can act on the sender's log alone.
"""

from __future__ import annotations

import codecs
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse

__all__ = ["Rejected", "media_type", "parse_json", "read_body"]


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
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
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
    try:
        return orjson.loads(body.removeprefix(codecs.BOM_UTF8))
    except orjson.JSONDecodeError as exc:
        raise Rejected(
            400, "bad_json", "malformed JSON",
            f"{exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos}); "
            f"send one JSON document encoded as UTF-8",
            extra={"line": exc.lineno, "column": exc.colno, "position": exc.pos},
        ) from None
