"""A target adapter whose deliveries wait at a gate the test opens: events held in flight."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict

from middleware.adapter import AdapterConfig, AdapterContext, Delivered
from middleware.envelope import Envelope
from middleware.plugins import AdapterSpec, register


class GatedConfig(AdapterConfig):
    model_config = ConfigDict(extra="forbid")
    type: Literal["gated"] = "gated"
    name: str


class GatedTarget:
    """Every delivery is recorded at once and completes when ``open_gate`` is called."""

    instances: ClassVar[dict[str, GatedTarget]] = {}

    def __init__(self, config: GatedConfig) -> None:
        self.received: list[str] = []
        self.completed: list[str] = []
        self._held: list[tuple[str, Future[Delivered]]] = []
        self._open = False
        self._lock = threading.Lock()
        GatedTarget.instances[config.name] = self

    def start(self, context: AdapterContext) -> None:
        """Nothing to open."""

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        future: Future[Delivered] = Future()
        with self._lock:
            self.received.append(envelope.id)
            if not self._open:
                self._held.append((envelope.id, future))
                return future
            self.completed.append(envelope.id)
        future.set_result(Delivered(response=None))
        return future

    def open_gate(self) -> None:
        with self._lock:
            self._open = True
            held, self._held = self._held, []
            self.completed.extend(event_id for event_id, _ in held)
        for _, future in held:
            future.set_result(Delivered(response=None))

    def close(self) -> None:
        """Nothing to release."""


def _gated(config: AdapterConfig) -> GatedTarget:
    assert isinstance(config, GatedConfig)
    return GatedTarget(config)


register(AdapterSpec("gated", outbound_config=GatedConfig, outbound=_gated))


def gated_route(prefix: str) -> dict[str, Any]:
    return {"name": f"{prefix}-r", "bind": [f"{prefix}.customer.*"],
            "target": {"type": "gated", "name": prefix}}
