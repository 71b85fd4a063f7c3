"""Wiring of the long-running process: broker connections, workers, adapters, ops server.

Roles let ingress and workers scale as separate processes (``--role ingress|worker``); ``all``
runs both in one. Stopping is graceful: consumers stop taking messages, in-flight ones finish
within ``shutdown_grace``, then inbound adapters, connections and stores close.

Every long-lived thread it starts (the broker I/O loop, the ops and ingress servers) is watched
(``middleware.watchdog``); readiness reads their liveness, and a death makes it false for good.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from enum import StrEnum
from pathlib import Path

import structlog

from middleware import metrics, plugins
from middleware.adapter import AdapterContext, InboundAdapter, OutboundAdapter
from middleware.audit import AuditSink, OutcomeListener, guarded
from middleware.broker.contract import Broker, Consumer, Handler
from middleware.broker.factory import connect
from middleware.broker.topology import topology_for
from middleware.config.loader import LoadedConfig
from middleware.console.server import Console
from middleware.enrich import Systems
from middleware.errors import SilobridgeError
from middleware.health import ops_app
from middleware.http import ServerThread
from middleware.ingress import Ingress
from middleware.mapping import Mapping, MappingSet
from middleware.monitor import QueueGauges
from middleware.periodic import Periodic
from middleware.pipeline import RouteWorker
from middleware.pruning import StorePruning, subject_retention
from middleware.reload import MappingReloads
from middleware.storecalls import all_done
from middleware.storehealth import StoreHealth
from middleware.stores import Stores, open_stores
from middleware.watchdog import Watchdog

__all__ = ["Daemon", "Role"]

log = structlog.get_logger(__name__)


class Role(StrEnum):
    ALL = "all"
    INGRESS = "ingress"
    WORKER = "worker"


class Daemon:
    """One silobridge process. ``start`` returns once everything runs; ``stop`` drains."""

    def __init__(self, loaded: LoadedConfig, role: Role = Role.ALL) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.role = role
        self.stopped = threading.Event()
        self.workers: list[RouteWorker] = []
        self.targets: list[OutboundAdapter] = []
        self.inbound: list[InboundAdapter] = []
        self.audit: AuditSink | None = None
        self.systems = Systems(loaded.config)  # what enrich steps call, shared by routes
        self.consumer: Consumer | None = None
        self.ingress: Ingress | None = None
        self.mappings: MappingSet | None = None
        self.stores: Stores = open_stores(self.config.store)
        self.store_health = StoreHealth(lambda: self.stores.probe())
        # one I/O thread for the publishing and consuming connections; the topology is
        # declared once, by whichever connects first
        self.broker: Broker = connect(self.config.broker, topology_for(self.config))
        self.publisher = self.broker.publisher()
        self.watchdog = Watchdog()
        self.console = Console(self.loaded) if self.config.console.enabled else None
        ops = ops_app(self.readiness, self.watchdog.check, self.reasons)
        self.ops = ServerThread(self.console.around(ops) if self.console else ops,
                                self.config.ops.host, self.config.ops.port, "ops",
                                tls=self.config.ops.tls, limits=self.config.ingress.http)
        self.chores: list[Periodic] = []  # queue gauges, mapping reloads, store pruning
        self.started = False  # readiness stays false until every component has started

    @property
    def runs_workers(self) -> bool:
        return self.role in (Role.ALL, Role.WORKER)

    @property
    def runs_ingress(self) -> bool:
        return self.role in (Role.ALL, Role.INGRESS)

    def start(self) -> None:
        self.ops.start_and_wait()
        self.watchdog.watch_thread(self.ops)
        if self.console is not None:
            self.console.start(self.watchdog)
        self.publisher.start()
        self.watchdog.watch_thread(self.broker.thread)
        self.store_health.start()
        self.watchdog.watch_thread(self.store_health.thread)
        self._wait_for_broker()
        context = AdapterContext(self.publisher, self.config.broker, self.stores,
                                 self.loaded.base_dir, messaging=self.broker)
        if self.runs_workers:
            self._start_workers(context)
        if self.runs_ingress:
            self._start_ingress(context)
        self._start_chores()
        self.started = True
        log.info("silobridge started", role=self.role.value, routes=len(self.workers),
                 inbound=len(self.inbound), ops_port=self.ops.port,
                 ingress_port=self.ingress.port if self.ingress else None)

    def _start_chores(self) -> None:
        """The background chores, each on a thread named for its job."""
        gauges = QueueGauges(self.config)
        self.chores = [
            Periodic("queue-gauges", 5.0, gauges.measure, at_start=True, on_stop=gauges.close),
            Periodic("store-pruning", 3600.0,
                     StorePruning(self.config.store, self.stores.idempotency,
                                  self.stores.sync, subject_retention(self.config)).prune,
                     at_start=True),
        ]
        if self.mappings is not None:
            self.chores.append(Periodic("mapping-reloads", 2.0,
                                        MappingReloads(self.mappings).reload))
        for chore in self.chores:
            chore.start()

    def _wait_for_broker(self) -> None:
        """Block until the publisher is connected; a topology conflict is fatal."""
        logged, since = False, time.monotonic()
        while not self.publisher.connected:
            if self.publisher.fatal is not None:
                raise self.publisher.fatal
            if self.watchdog.check() is not None:
                raise SilobridgeError(f"cannot start: {self.watchdog.reason}")
            if self.stopped.wait(0.1):
                raise SilobridgeError("stopped before the broker became reachable")
            if not logged and time.monotonic() - since > 2:
                host = self.config.broker.url.split("@")[-1]
                log.warning("waiting for the broker", broker=host)
                logged = True

    def _start_workers(self, context: AdapterContext) -> None:
        routes = self.config.routes
        self.mappings = MappingSet(mapping_paths(self.loaded))
        handlers: dict[str, Handler] = {}
        listener = self._start_audit(context)
        self.systems.start(context)
        for index, route in enumerate(routes):
            spec = plugins.get(route.target.type)
            assert spec is not None and spec.outbound is not None  # checked by the loader
            target = spec.outbound(route.target)
            target.start(context)
            self.targets.append(target)
            for advice in spec.target_advice(route.target) if spec.target_advice else []:
                log.warning("target advice", route=route.name, advice=advice)
            provider = self._mapping_provider(route.mapping, route.reverse)
            worker = RouteWorker(route, self.config.retry_for(route), target, self.publisher,
                                 self.stores, provider, health=self.store_health,
                                 listener=listener,
                                 enrichment=self.systems.enrichment(route, index),
                                 paired=self.config.echo_pair(route))
            self.workers.append(worker)
            handlers[f"silobridge.route.{route.name}"] = worker.handle
            metrics.CONSUMERS.labels(route.name).set_function(self._consuming)
        if handlers:
            self.consumer = self.broker.consumer(
                handlers, prefetch=self.config.broker.prefetch, before_ack=self._commit)
            self.consumer.start()

    def _commit(self, records: list[tuple[str, str]]) -> Future[None]:
        """The consumer's commit before acks: each route's records on that route's threads."""
        by_route: dict[str, list[tuple[str, str]]] = {}
        for record in records:
            by_route.setdefault(record[0], []).append(record)
        workers = {worker.route.name: worker for worker in self.workers}
        return all_done([workers[route].commit(part) for route, part in by_route.items()])

    def _start_audit(self, context: AdapterContext) -> OutcomeListener | None:
        """The configured audit sink, started; its listener goes to every route's worker."""
        section = self.config.audit
        if section is None:
            return None
        spec = plugins.get(section.type)
        assert spec is not None and spec.audit is not None  # checked by the loader
        self.audit = spec.audit(section)
        self.audit.start(context)
        return guarded(self.audit.record)

    def _consuming(self) -> float:
        """Read at each scrape: 0 while the consumer is disconnected, paused or stopped, or its
        I/O loop died or stalled."""
        return 1.0 if self._consumers_live() else 0.0

    def _consumers_live(self) -> bool:
        return self.consumer is not None and self.consumer.consuming and self.broker.turning()

    def _mapping_provider(
        self, relative: str | None, reverse: bool
    ) -> Callable[[], Mapping | None]:
        if relative is None or self.mappings is None:
            return lambda: None
        mappings, path = self.mappings, self.loaded.resolve(relative).resolve()
        if not reverse:
            return lambda: mappings.get(path)
        cache: dict[int, Mapping] = {}

        def reversed_mapping() -> Mapping:
            current = mappings.get(path)
            if id(current) not in cache:
                cache.clear()
                cache[id(current)] = current.reverse()
            return cache[id(current)]

        return reversed_mapping

    def _start_ingress(self, context: AdapterContext) -> None:
        self.ingress = Ingress(self.config.ingress)
        context.ingress = self.ingress
        for section in self.config.inbound:
            spec = plugins.get(section.type)
            assert spec is not None and spec.inbound is not None  # checked by the loader
            adapter = spec.inbound(section)
            adapter.start(context)
            self.inbound.append(adapter)
        if self.ingress.has_routes:
            self.ingress.start()
            assert self.ingress.thread is not None
            self.watchdog.watch_thread(self.ingress.thread)

    def reload_mappings(self) -> None:
        """SIGHUP: reload changed mapping files; a bad file keeps the previous mapping."""
        if self.mappings is None:
            return
        for problem in self.mappings.reload():
            log.error("mapping reload rejected", problem=str(problem))

    def readiness(self) -> dict[str, bool]:
        """Named checks of liveness: threads running, the loop turning, channels open."""
        checks = {"started": self.started, "threads": self.watchdog.check() is None,
                  "broker_publish": self.publisher.connected, "store": self.store_health.ok}
        if self.runs_workers:
            checks["consumers"] = self.consumer is None or self._consumers_live()
            checks["mappings_loaded"] = self.mappings is not None
        if self.runs_ingress and self.ingress is not None and self.ingress.has_routes:
            checks["ingress_listening"] = self.ingress.listening
        return checks

    def reasons(self) -> dict[str, str]:
        """Why failing checks fail, where more than true/false is known (the store's error)."""
        reason = self.store_health.reason()
        return {} if reason is None else {"store": reason}

    def stop(self) -> bool:
        """Drain and close; True when every in-flight message finished within the grace."""
        self.stopped.set()
        self.watchdog.disarm()  # threads end on purpose from here on
        for adapter in self.inbound:
            adapter.close()
        if self.ingress is not None:
            self.ingress.stop()
        drained = True
        if self.consumer is not None:
            self.consumer.pause()
            deadline = time.monotonic() + self.config.shutdown_grace
            drained = all(
                worker.wait_idle(max(0.0, deadline - time.monotonic())) for worker in self.workers
            )
            # The consumer stops first: the acks its loop has not flushed yet still need their
            # records committed on the routes' store threads (closed first, they refused the
            # commit, and delivered messages went back to the queue: 24 of 20,000 in a CI run).
            # Its wait for commits is bounded; then the workers' threads end, so a commit stuck
            # on a failing store gives up (its messages come back, not yet recorded).
            self.consumer.stop()
            for worker in self.workers:
                worker.close()
        for target in self.targets:
            target.close()
        self.systems.close()
        if self.audit is not None:
            self.audit.close()
        for chore in self.chores:
            chore.stop()
        self.publisher.stop()
        self.store_health.stop()
        self.stores.close()
        if self.console is not None:
            self.console.stop()
        self.ops.stop()
        log.info("silobridge stopped", drained=drained)
        return drained


def mapping_paths(loaded: LoadedConfig) -> list[Path]:
    """Every mapping file the config's routes use, once each."""
    return sorted({loaded.resolve(r.mapping) for r in loaded.config.routes if r.mapping})
