"""What an adapter provides for enrich steps: a system that answers prepared requests.

A system adapter (``AdapterSpec.system``) is started once per process and shared by every route
whose steps name it. ``bind`` checks a step against what the system really offers (a SOAP
operation in its WSDL) at start, so a mistake stops the start instead of dead-lettering every
message, and returns the step's call. The call is split in two so the core can cache answers:
``prepare`` renders the request from envelope and payload (its ``key`` identifies it), and
``fetch`` sends it without blocking the caller (a Future, resolved on the system's own thread or
pool), with ``trace``: the W3C headers (``traceparent``, ``tracestate``) naming the message's
``enrich`` span, so the system's own spans join the message's trace. It is empty while tracing
is off, and it is kept out of ``prepare`` because a cached answer must not depend on it.
Failures are ``ProcessingError``s the adapter classified (``DeliveryError``: retryable or not,
with Retry-After); the core turns them into ``EnrichError`` with stage ``enrich``.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from middleware.adapter import AdapterContext
    from middleware.config.enrich import EnrichStep
    from middleware.envelope import Envelope

__all__ = ["Prepared", "StepCall", "System"]


@dataclass(frozen=True)
class Prepared:
    """A rendered request: ``key`` names it for the cache, ``request`` is what ``fetch`` sends."""

    key: str
    request: Any


class StepCall(Protocol):
    """One step's call to its system."""

    def prepare(self, envelope: Envelope, payload: Any) -> Prepared:
        """Render the request; a template value that cannot be used raises (permanent)."""

    def fetch(self, prepared: Prepared, trace: Mapping[str, str]) -> Future[Any]:
        """Send it with the ``trace`` headers (none while tracing is off); the Future holds the
        answer as plain data (None: the system has none)."""


class System(Protocol):
    """A system enrich steps call (REST base URL, SOAP service)."""

    def start(self, context: AdapterContext) -> None:
        """Read secrets and certificates, open connections; fail here, not per message."""

    def bind(self, step: EnrichStep, where: str) -> StepCall:
        """The call of one step; ConfigError (naming ``where``) when the system cannot do it."""

    def close(self) -> None:
        """Let calls in flight finish, release connections and threads."""
