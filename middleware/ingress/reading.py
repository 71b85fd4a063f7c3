"""Reading a request body safely, for every inbound protocol: size limit before reading, media
type, size limit while reading.

A body is refused as early as its problem is known: a declared ``Content-Length`` over the limit
before a byte is read, a media type the endpoint does not take before the body is read, and a
streamed (chunked) body at the first chunk that passes the limit, so a hostile sender never
makes the ingress hold more than ``limit`` bytes of one request.
"""

from __future__ import annotations

from starlette.requests import Request

from middleware.errors import Refused

__all__ = ["media_type", "read_body", "too_large"]


def media_type(header: str | None) -> str:
    """The media type of a Content-Type header, lowercase, without parameters."""
    return (header or "").split(";", 1)[0].strip().lower()


def too_large(limit: int) -> Refused:
    return Refused(413, "too_large", "body too large",
                   f"the body exceeds {limit} bytes; split the batch or raise max_body_bytes",
                   extra={"limit": limit})


async def read_body(request: Request, limit: int, content_types: list[str]) -> bytes:
    """The raw body, refusing early: a declared or streamed size over ``limit`` is never read."""
    declared = request.headers.get("content-length", "").strip()
    # ASCII digits only: isdigit() also passes superscripts, which int() refuses (a 500)
    if declared.isascii() and declared.isdigit() and (
            len(declared.lstrip("0")) > len(str(limit)) or int(declared) > limit):
        raise too_large(limit)
    kind = media_type(request.headers.get("content-type"))
    if kind not in content_types:
        raise Refused(415, "content_type", "unsupported media type",
                      f"Content-Type {kind or '(none)'!r} is not accepted; send "
                      f"{' or '.join(content_types)}", extra={"accepted": content_types})
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked bodies have no Content-Length: stop at the limit
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
