"""What finally happened to one message; one vocabulary for the worker, logs and metrics."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Outcome"]


class Outcome(StrEnum):
    DELIVERED = "delivered"
    """The target accepted the payload; the source message was acked afterwards."""
    RETRIED = "retried"
    """A transient failure; the message waits in a retry tier and comes back to the route."""
    DEAD_LETTERED = "dead_lettered"
    """A permanent failure or exhausted retries; the message is in the route's DLQ."""
    DUPLICATE = "duplicate"
    """Already delivered earlier (idempotency record); acked without a second delivery."""
    FILTERED = "filtered"
    """The route's filter expression did not match; acked and not delivered."""
    CAPTURE_PARKED = "capture_parked"
    """The target accepted, but the cross-references of its answer could not be stored: the
    delivery stands (its idempotency record is kept, so it is never delivered again) and the
    message waits in the DLQ marked as accepted until an operator fixes the link."""
    STALE = "stale"
    """Older than the version already applied for its subject (``sync.stale: drop``): acked,
    not delivered."""
    ECHO = "echo"
    """A change silobridge itself wrote into the source system, reported back by it: acked, not
    written back (``sync.echo``)."""
    CONFLICT = "conflict"
    """Changed in both systems at about the same time, and the route's conflict rule chose the
    other system's change: acked, not written (``sync.conflict``)."""
    HELD = "held"
    """An earlier event of its subject is in flight or in a retry tier (``sync.ordering:
    subject``): moved to the route's hold queue, checked again after ``sync.hold_delay``."""
    REQUEUED = "requeued"
    """Neither delivery nor the retry/DLQ publish succeeded; nacked back to the route queue."""
