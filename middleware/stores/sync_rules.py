"""The decisions of the two-way sync store, pure, so both backends decide alike.

A subject's row holds the version last applied to the target and, while an event of the subject
is being delivered or waits in a retry tier, that event's claim (holder = envelope id, its
version, until when). Each backend reads the row under a lock (SQLite's write lock, PostgreSQL's
``FOR UPDATE``), asks ``begin`` what to do and writes the row it returns, in one transaction:
that read-decide-write is the compare-and-set every replica goes through.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

__all__ = ["SubjectRow", "Verdict", "begin"]


class Verdict(StrEnum):
    GO = "go"
    """Deliver: nothing newer was applied, and (ordering) this event now holds the subject."""
    STALE = "stale"
    """A newer version of the subject was applied already."""
    HELD = "held"
    """Another event of the subject holds it (in flight or in a retry tier): wait and ask again."""


@dataclass(frozen=True)
class SubjectRow:
    applied: int | None = None
    holder: str | None = None
    holder_version: int | None = None
    held_until: float | None = None
    parked: bool = False


def begin(row: SubjectRow, version: int, holder: str, now: float, ttl: float,
          claim: bool, takeover: bool = False) -> tuple[Verdict, SubjectRow | None]:
    """The verdict for an event, and the row to write (None: unchanged).

    Equal versions are not stale: a redelivered copy of the applied event is caught by the
    idempotency record, and two events stamped with the same time cannot be told apart, so
    both go (the target sees no older version after a newer one either way). An expired claim
    belongs to an event whose process died (or whose retry outlived ``claim_ttl``): it is free.

    The event's own claim is taken again when the event comes back from a retry tier (the
    claim is parked) or when this copy is a ``takeover`` (a retry-tier copy, whose park may
    not have landed; a copy the broker redelivered, so the delivery that took the claim has
    ended; a replay). Any other copy of the event
    while the claim is live is a duplicate sent next to it (fifty copies of one event at once
    were written 41 times): it waits like another event.
    """
    if row.applied is not None and version < row.applied:
        return Verdict.STALE, None
    if not claim:
        return Verdict.GO, None
    own = row.holder == holder and (row.parked or takeover)
    active = (row.holder is not None and not own and row.held_until is not None
              and row.held_until > now)
    if active:
        return Verdict.HELD, None
    return Verdict.GO, replace(row, holder=holder, holder_version=version,
                               held_until=now + ttl, parked=False)
