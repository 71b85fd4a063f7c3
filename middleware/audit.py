"""The audit hook: every outcome a route decides, handed to an optional sink (e.g. a SQL table).

The worker calls the listener where it settles a message, on whichever thread that happens (the
broker loop among them), so a listener only queues: the sink parses and writes on its own thread,
and a failing sink costs audit rows, never a delivery. The sink is configured in the top-level
``audit`` section and provided by an adapter (``AdapterSpec.audit``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from middleware.outcome import Outcome

if TYPE_CHECKING:
    from middleware.adapter import AdapterContext

__all__ = ["AuditSink", "OutcomeListener", "OutcomeRecord", "guarded"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OutcomeRecord:
    """What a route decided for one message; ``body`` is the envelope as it was consumed."""

    route: str
    outcome: Outcome
    body: bytes
    failure: Mapping[str, Any] | None = None
    """The failure headers (stage, error, reason, attempts) of a retried or dead-lettered one."""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


OutcomeListener = Callable[[OutcomeRecord], None]


class AuditSink(Protocol):
    """Receives every outcome of every route; ``record`` must neither block nor raise."""

    def start(self, context: AdapterContext) -> None:
        """Open connections and create or check tables; fail here, not on the first record."""

    def record(self, record: OutcomeRecord) -> None:
        """Queue one record."""

    def close(self) -> None:
        """Write what is queued and release connections."""


def guarded(listener: OutcomeListener) -> OutcomeListener:
    """The listener, made unable to raise into the worker (an audit bug costs one row)."""

    def call(record: OutcomeRecord) -> None:
        try:
            listener(record)
        except Exception:
            log.exception("audit listener failed", route=record.route)

    return call
