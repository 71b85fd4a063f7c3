"""AMQP header names silobridge writes on retried and dead-lettered messages, in one place.

The retry path, the DLQ tools and the tests read the same names. Values are short strings or
ints: header values end up in the broker UI and in ``silobridge dlq show``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from middleware.errors import ProcessingError

__all__ = [
    "ACCEPTED",
    "ATTEMPTS",
    "ERROR",
    "FIRST_FAILURE",
    "HELD",
    "LAST_FAILURE",
    "REASON",
    "REPLAYS",
    "ROUTE",
    "STAGE",
    "TARGET",
    "failure_headers",
    "without_failure",
]

PREFIX = "x-sb-"
ATTEMPTS = "x-sb-attempts"
STAGE = "x-sb-stage"
ERROR = "x-sb-error"
REASON = "x-sb-reason"
FIRST_FAILURE = "x-sb-first-failure"
LAST_FAILURE = "x-sb-last-failure"
ROUTE = "x-sb-route"
TARGET = "x-sb-target"
REPLAYS = "x-sb-replays"
HELD = "x-sb-held"
"""On a copy a two-way route parked in its hold queue: "true". It may be a duplicate of an
event delivered meanwhile (by another replica), so it is looked up in the store on return."""
ACCEPTED = "x-sb-target-accepted"
"""On a dead letter the target already accepted (only storing its answer failed): "true"."""
DETAIL = "x-sb-detail-"
_MAX_TEXT = 500


def failure_headers(
    previous: dict[str, Any],
    error: BaseException,
    *,
    attempts: int,
    route: str,
    target: str,
    now: datetime,
) -> dict[str, Any]:
    """Headers for the republished message: the old ones plus what this failure adds."""
    stamp = now.isoformat()
    stage = error.stage if isinstance(error, ProcessingError) else "deliver"
    details = error.details if isinstance(error, ProcessingError) else {}
    headers = {k: v for k, v in previous.items() if not k.startswith(DETAIL)}
    headers.update({
        ATTEMPTS: attempts,
        STAGE: stage,
        ERROR: type(error).__name__,
        REASON: str(error)[:_MAX_TEXT],
        FIRST_FAILURE: previous.get(FIRST_FAILURE, stamp),
        LAST_FAILURE: stamp,
        ROUTE: route,
        TARGET: target,
    })
    for key, value in details.items():
        if value not in (None, ""):
            headers[f"{DETAIL}{key}"] = str(value)[:_MAX_TEXT]
    return headers


def without_failure(headers: dict[str, Any]) -> dict[str, Any]:
    """Headers of a replayed message: failure history dropped, replay count kept."""
    return {k: v for k, v in headers.items() if not k.startswith(PREFIX) or k == REPLAYS}
