"""Attribute names and outcome helpers every silobridge span shares.

Span attributes are bounded and never carry payload values or error messages: an error is
named by its class (``error.type``) and the stage it happened in, because a message can quote
what it refused (a schema error quotes the value) and spans leave the process.
"""

from __future__ import annotations

from opentelemetry.trace import Span, Status, StatusCode

__all__ = ["ADAPTER", "ATTEMPT", "CALLER", "ENDPOINT", "ERROR_TYPE", "EVENT_TYPE",
           "FAILED_STAGE", "OUTCOME", "ROUTE", "TARGET", "failed"]

ROUTE = "silobridge.route"
ENDPOINT = "silobridge.endpoint"
ADAPTER = "silobridge.adapter"
TARGET = "silobridge.target"
EVENT_TYPE = "silobridge.event_type"
OUTCOME = "silobridge.outcome"
ATTEMPT = "silobridge.attempt"
FAILED_STAGE = "silobridge.failed_stage"
CALLER = "silobridge.caller_trace"
"""At the ingress: 'continued' (a valid traceparent arrived), 'new' (none), 'ignored'
(one arrived but was malformed, too long or repeated)."""
ERROR_TYPE = "error.type"


def failed(span: Span, error: BaseException, *, outcome: str = "failed",
           is_error: bool = True) -> None:
    """Mark ``span`` as failed with ``error``'s class only (never its message)."""
    name = type(error).__name__
    span.set_attribute(ERROR_TYPE, name)
    span.set_attribute(OUTCOME, outcome)
    if is_error:
        span.set_status(Status(StatusCode.ERROR, name))
