"""HTTP outcome classification shared by the REST and SOAP adapters.

One place decides what an HTTP answer means for a delivery, so every HTTP-speaking target retries
and dead-letters alike (DESIGN.md section 2.4):

    2xx                                   delivered
    408, 429, 5xx                         retryable (honouring Retry-After)
    timeouts, connection and protocol     retryable
    any other status                      permanent; status and a truncated body go to the DLQ

Client exceptions are translated here into ``DeliveryError`` so the pipeline never sees them,
and without their frames (``without_frames``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

import aiohttp
import httpx

from middleware.errors import DeliveryError

__all__ = [
    "BODY_LIMIT",
    "Outcome",
    "classify_status",
    "parse_retry_after",
    "status_error",
    "transport_error",
    "truncate",
    "without_frames",
]

BODY_LIMIT = 500
"""Characters of a refused response body kept in dead-letter headers."""

_RETRYABLE_4XX = frozenset({408, 425, 429})


class Outcome(StrEnum):
    """What an HTTP status means for a delivery."""

    DELIVERED = "delivered"
    """The target accepted the request (2xx)."""
    RETRYABLE = "retryable"
    """The target may accept it later (408, 425, 429, 5xx)."""
    PERMANENT = "permanent"
    """Sending the same request again will fail again (other statuses)."""


def classify_status(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status >= 500 or status in _RETRYABLE_4XX:
        return Outcome.RETRYABLE
    return Outcome.PERMANENT


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent/invalid."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def truncate(text: str, limit: int = BODY_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def status_error(
    status: int, body: str, retry_after: str | None, target: str
) -> DeliveryError:
    """The DeliveryError for a non-2xx answer, with status and truncated body as details."""
    retryable = classify_status(status) is Outcome.RETRYABLE
    hint = "will retry" if retryable else "fix the payload or mapping, then replay"
    return DeliveryError(
        f"{target} answered HTTP {status} ({hint})",
        retryable=retryable,
        retry_after=parse_retry_after(retry_after) if retryable else None,
        details={"status": status, "body": truncate(body)},
    )


def transport_error(
    exc: aiohttp.ClientError | httpx.HTTPError | TimeoutError, target: str
) -> DeliveryError:
    """Timeouts, refused connections and broken responses may be retried; a bad URL not.

    aiohttp errors come from the REST target's requests, httpx errors from its OAuth2 token
    endpoint (fetched with the poller's client)."""
    timed_out = isinstance(exc, TimeoutError | httpx.TimeoutException)
    kind = "timed out" if timed_out else "failed"
    return DeliveryError(
        f"request to {target} {kind}: {type(exc).__name__}",
        retryable=not isinstance(exc, aiohttp.InvalidURL | httpx.UnsupportedProtocol),
        details={"error": type(exc).__name__},
    )


def without_frames(error: BaseException) -> BaseException:
    """``error`` and every exception chained to it, without their tracebacks: what a translated
    client error is raised ``from``.

    Client libraries' errors arrive in reference cycles. aiohttp's timeout holds, through its
    traceback, the frame of its timer's ``__exit__``, whose local is the request's task, which
    holds the error (a refused connection's chain has a cycle of its own in the connector's
    frames); urllib3's read timeout under zeep holds one too. Nothing but the cycle collector
    frees a cycle, and the daemon runs it rarely (``middleware.cli.run``), so while a REST
    target hung, every failed request (its task, ClientRequest, envelope, ~75 objects) piled
    up as garbage: 1,000 of them after a 30 s hang at 250 events/s, tens of MiB that the process
    kept as a high-water mark (bench/RESULTS.md, soak). Without the frames no cycle is left and
    reference counting frees a failed request at once. The frames were the libraries' own; the
    error's class and message, which the retry headers and the log keep, stay.
    """
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending.extend(chained for chained in (current.__cause__, current.__context__)
                       if chained is not None)
    return error
