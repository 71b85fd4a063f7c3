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
from typing import Any, Protocol, runtime_checkable

from middleware.broker.contract import Broker, Publisher
from middleware.broker.topology import Topology
from middleware.config.adapter_base import AdapterConfig
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


@dataclass(frozen=True)
class Delivered:
    """What a target answered: ``response`` (parsed body, or None) feeds xref capture."""

    response: Any = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class AdapterContext:
    """What the daemon hands an adapter at start.

    ``publisher`` sends confirmed messages (``middleware.broker.ingest`` for envelopes),
    ``broker`` is the broker's config (timeouts), ``ingress`` is the shared HTTP server
    (None in a worker-only process), ``base_dir`` resolves relative paths in its config,
    ``messaging`` is the broker itself, for an adapter that declares what it needs (None in
    tools that only publish). Every type here is a contract of the core, never a client
    library's, so ``typing.get_type_hints(AdapterContext)`` resolves at run time.
    """

    publisher: Publisher
    broker: BrokerConfig
    stores: Stores
    base_dir: Path
    ingress: Ingress | None = None
    messaging: Broker | None = None


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
