"""Contracts between the core and protocol adapters.

Adapters import the core, never the reverse: the core finds adapters through the registry in
``middleware.plugins``. An outbound adapter returns a Future from ``deliver`` so the worker never
blocks its consumer thread on a slow target: the AMQP adapter resolves it on the broker confirm,
HTTP and SOAP adapters on a bounded thread pool.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from middleware.broker.publisher import Publisher
    from middleware.broker.topology import Topology
    from middleware.config.models import BrokerConfig
    from middleware.envelope import Envelope
    from middleware.ingress import Ingress
    from middleware.stores.base import Stores

__all__ = [
    "AdapterConfig",
    "AdapterContext",
    "DeclaresTopology",
    "Delivered",
    "InboundAdapter",
    "OutboundAdapter",
]


class AdapterConfig(BaseModel):
    """Base of every adapter's config model; ``type`` selects the adapter in the registry.

    The core validates only ``type`` (and ``name`` for inbound adapters); the rest is validated by
    the adapter's own subclass, which sets ``extra="forbid"``.
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Adapter type as registered, e.g. 'amqp', 'rest', 'soap'.")


@dataclass(frozen=True)
class Delivered:
    """What a target answered: ``response`` (parsed body, or None) feeds xref capture."""

    response: Any = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class AdapterContext:
    """What the daemon hands an adapter at start.

    ``publisher`` sends confirmed messages (``middleware.broker.ingest`` for envelopes),
    ``broker`` lets an adapter declare what it needs, ``ingress`` is the shared HTTP server
    (None in a worker-only process), ``base_dir`` resolves relative paths in its config.
    """

    publisher: Publisher
    broker: BrokerConfig
    stores: Stores
    base_dir: Path
    ingress: Ingress | None = None


class OutboundAdapter(Protocol):
    """Delivers one mapped payload to a target system."""

    def start(self, context: AdapterContext) -> None:
        """Open connections and load what is needed; fail here, not on the first message."""

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        """Start delivering; the Future fails with DeliveryError (classified) or BrokerError."""

    def close(self) -> None:
        """Release connections and threads."""


@runtime_checkable
class DeclaresTopology(Protocol):
    """Optional: an adapter whose broker objects ``silobridge topology apply`` declares too."""

    def topology(self) -> Topology: ...


class InboundAdapter(Protocol):
    """Turns what a source system sends into envelopes published on the events exchange."""

    name: str

    def start(self, context: AdapterContext) -> None:
        """Register HTTP routes on the ingress or start own threads; must not block."""

    def close(self) -> None:
        """Stop accepting input; in-flight requests finish."""
