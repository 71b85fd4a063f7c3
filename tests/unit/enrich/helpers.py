"""A route with enrich steps on the in-memory broker, its systems talking to real loopback peers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from middleware.adapter import AdapterContext
from middleware.broker.memory import MemoryBroker
from middleware.broker.topology import queue_name, topology_for
from middleware.config.models import BrokerConfig, Config, StoreConfig
from middleware.enrich import Enrichment, Step, System
from middleware.mapping import Mapping
from middleware.pipeline import RouteWorker
from middleware.stores import Stores, open_stores
from tests.unit.pipeline_helpers import Route, Scripted


@dataclass
class Enriched:
    route: Route
    target: Scripted
    enrichment: Enrichment


def system_context(tmp_path: Path, stores: Stores | None = None) -> AdapterContext:
    """What a system needs at start (it uses only base_dir)."""
    return AdapterContext(publisher=None, broker=BrokerConfig(),  # type: ignore[arg-type]
                          stores=stores, base_dir=tmp_path)  # type: ignore[arg-type]


@contextmanager
def enriched_route(tmp_path: Path, prefix: str, system: System, steps: list[dict[str, Any]],
                   target: Scripted | None = None,
                   retry: dict[str, Any] | None = None,
                   mapping: Mapping | None = None) -> Iterator[Enriched]:
    """Route ``<prefix>`` (bound to ``<prefix>.customer.*``) whose steps call ``system``
    (started here, closed after) and whose mapped payload goes to a scripted target."""
    config = Config.model_validate({
        "retry": retry or {"attempts": 2, "initial_delay": 0.05, "multiplier": 1},
        "routes": [{"name": prefix, "bind": [f"{prefix}.customer.*"],
                    "target": {"type": "scripted"}, "enrich": steps}],
    })
    (route_config,) = config.routes
    stores = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    system.start(system_context(tmp_path, stores))
    enrichment = Enrichment([Step(step, system.bind(step, f"routes.0.enrich.{n}"), n + 1,
                                  prefix) for n, step in enumerate(route_config.enrich)])
    target = target or Scripted()
    broker = MemoryBroker(topology_for(config))
    publisher = broker.publisher()
    publisher.start()
    worker = RouteWorker(route_config, config.retry_for(route_config), target, publisher,
                         stores, lambda: mapping, enrichment=enrichment)
    consumer = broker.consumer({queue_name(prefix): worker.handle}, prefetch=10,
                               before_ack=stores.idempotency.record_many)
    consumer.start()
    try:
        yield Enriched(Route(broker, publisher, consumer, worker, target, stores, prefix),
                       target, enrichment)
    finally:
        consumer.stop()
        publisher.stop()
        system.close()
        broker.close()
        stores.close()
