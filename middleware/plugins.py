"""Adapter registry: one registration call per protocol, found through entry points.

Each adapter package calls ``register(AdapterSpec(...))`` in its ``__init__``; the package is
named in the ``silobridge.adapters`` entry-point group, so third-party adapters plug in the same
way as the built-in ones and the core never imports ``adapters``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from middleware.adapter import AdapterConfig, InboundAdapter, OutboundAdapter

if TYPE_CHECKING:
    from middleware.audit import AuditSink
    from middleware.enrich.contract import System

__all__ = ["AdapterSpec", "get", "known_types", "register"]


@dataclass(frozen=True)
class AdapterSpec:
    """How to configure and build one protocol's adapters; either direction may be absent."""

    type: str
    inbound_config: builtins.type[AdapterConfig] | None = None
    inbound: Callable[[AdapterConfig], InboundAdapter] | None = None
    outbound_config: builtins.type[AdapterConfig] | None = None
    outbound: Callable[[AdapterConfig], OutboundAdapter] | None = None
    commands: Callable[[Any], None] | None = None
    """Adds the adapter's own CLI commands (e.g. ``poll``, ``demo erp``) to the subparsers."""
    advise: Callable[[AdapterConfig], list[str]] | None = None
    """Warnings about a valid inbound config (e.g. a replay risk); ``validate`` prints them."""
    target_advice: Callable[[AdapterConfig], list[str]] | None = None
    """Warnings about a valid target config (e.g. no idempotency key reaches the target);
    ``validate`` prints them and the daemon logs them at start, each naming the route."""
    audit_config: builtins.type[AdapterConfig] | None = None
    """Config of the adapter's audit sink (the top-level ``audit`` section with this type)."""
    audit: Callable[[AdapterConfig], AuditSink] | None = None
    """Builds the sink that receives every route's outcomes (``middleware.audit``)."""
    system_config: builtins.type[AdapterConfig] | None = None
    """Config of a system enrich steps call (an entry of ``systems`` with this type)."""
    system: Callable[[AdapterConfig], System] | None = None
    """Builds that system (``middleware.enrich``)."""


_REGISTRY: dict[str, AdapterSpec] = {}
_loaded = False


def register(spec: AdapterSpec) -> None:
    """Add a protocol; registering the same type twice replaces the earlier spec."""
    _REGISTRY[spec.type] = spec


def _load_entry_points() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in entry_points(group="silobridge.adapters"):
        ep.load()


def known_types() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def get(adapter_type: str) -> AdapterSpec | None:
    _load_entry_points()
    return _REGISTRY.get(adapter_type)
