"""Lineage of one delivery: which route and which mapping version made the payload a target got.

Most targets need only the envelope and the mapped payload. A target that records lineage (the
SQL target writes it into columns of every row) also implements ``deliver_traced``; the worker
calls it through ``delivery_for``, decided once per route so no message pays for the check.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from middleware.adapter import Delivered, OutboundAdapter
    from middleware.envelope import Envelope
    from middleware.mapping import Mapping

__all__ = ["Deliver", "Lineage", "TracesLineage", "delivery_for"]


@dataclass(frozen=True)
class Lineage:
    """Where a payload came from besides its envelope: the route and the mapping that made it."""

    route: str
    mapping: str | None = None
    """The mapping's name (its ``mapping:`` key), None for a route without a mapping."""
    mapping_version: str | None = None
    """Hash of the mapping file and its schemas as loaded; changes with every edit."""


@runtime_checkable
class TracesLineage(Protocol):
    """Optional: an outbound adapter that keeps lineage with what it delivers."""

    def deliver_traced(
        self, envelope: Envelope, payload: Any, lineage: Lineage
    ) -> Future[Delivered]: ...


Deliver = Callable[["Envelope", Any, "Mapping | None"], "Future[Delivered]"]


def delivery_for(route: str, target: OutboundAdapter) -> Deliver:
    """How a route's worker hands a mapped payload to its target."""
    if not isinstance(target, TracesLineage):
        return lambda envelope, payload, mapping: target.deliver(envelope, payload)
    traced: TracesLineage = target
    plain = Lineage(route)

    def deliver(envelope: Envelope, payload: Any, mapping: Mapping | None) -> Future[Delivered]:
        lineage = plain if mapping is None else Lineage(route, mapping.name, mapping.version)
        return traced.deliver_traced(envelope, payload, lineage)

    return deliver
