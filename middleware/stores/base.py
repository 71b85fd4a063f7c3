"""Store interfaces: idempotency records, cross-references, small persistent state.

Embedded SQLite implements all three by default; PostgreSQL fills the same interfaces when several
replicas must share them. Stores are called from worker and adapter threads, so implementations
must be thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["IdempotencyStore", "StateStore", "Stores", "XrefStore"]


class IdempotencyStore(Protocol):
    """Which envelope ids a route already delivered, so a redelivery is acked, not re-sent."""

    def seen(self, route: str, message_id: str) -> bool: ...

    def record_many(self, records: list[tuple[str, str]]) -> None:
        """Remember (route, id) pairs in one transaction; durable when this returns."""

    def prune(self, before: float) -> int:
        """Forget records made before this Unix time; returns how many were deleted."""

    def close(self) -> None: ...


class XrefStore(Protocol):
    """Cross-references between systems: ``crm.customer:C-1001 <-> erp.account:A-77``.

    A namespace is ``<system>.<entity>``; each (namespace, key) links to at most one key per
    other namespace, both ways, so lookups work in either direction.
    """

    def lookup(self, from_ns: str, key: str, to_ns: str) -> str | None: ...

    def link(self, ns_a: str, key_a: str, ns_b: str, key_b: str) -> None:
        """Store a pair; re-linking the same pair is a no-op, a conflicting pair an error."""

    def close(self) -> None: ...


class StateStore(Protocol):
    """Small named values that must survive restarts, such as poller watermarks."""

    def get(self, name: str) -> str | None: ...

    def put(self, name: str, value: str) -> None: ...

    def close(self) -> None: ...


@dataclass
class Stores:
    """The stores a daemon opened from its config, handed to the pipeline and adapters."""

    idempotency: IdempotencyStore
    xref: XrefStore
    state: StateStore

    def close(self) -> None:
        self.idempotency.close()
        self.xref.close()
        self.state.close()
