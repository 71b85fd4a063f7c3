"""Background chores of a running daemon: queue depth gauges and mapping file watching.

Queue depths come from passive declares on a connection of the monitor's own (the management
plugin is not required). The age of a route's oldest dead letter is read from the head of its
DLQ, only while the DLQ holds something: the head is taken with basic.get and put back unacked
when the monitor's channel closes (a DLQ has no delivery limit on RabbitMQ 3.x, so peeking
never loses a message). Mapping files are polled for changes: cheap (a stat per file), and it
works the same on every filesystem and in containers with ConfigMap volumes.
"""

from __future__ import annotations

import threading
import time

import structlog

from middleware import metrics
from middleware.broker.dlq import route_counts
from middleware.broker.factory import Session
from middleware.config.models import Config
from middleware.errors import BrokerUnavailable
from middleware.mapping import MappingSet
from middleware.stores.base import IdempotencyStore

__all__ = ["QueueMonitor"]

log = structlog.get_logger(__name__)


class QueueMonitor(threading.Thread):
    def __init__(
        self, config: Config, mappings: MappingSet | None, idempotency: IdempotencyStore,
        interval: float = 5.0, reload_interval: float = 2.0, prune_interval: float = 3600.0,
    ) -> None:
        super().__init__(name="monitor", daemon=True)
        self._config = config
        self._mappings = mappings
        self._idempotency = idempotency
        self._prune_interval = prune_interval
        self._interval = interval
        self._reload_interval = reload_interval
        self._halt = threading.Event()
        self._session = Session(config.broker, "monitor")

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def run(self) -> None:
        since_depths = self._interval
        self._prune()
        next_prune = time.monotonic() + self._prune_interval
        while not self._halt.wait(self._reload_interval):
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + self._prune_interval
                self._prune()
            if self._mappings is not None:
                for problem in self._mappings.reload(settle=True):
                    log.error("mapping reload rejected", problem=str(problem))
            since_depths += self._reload_interval
            if since_depths >= self._interval:
                since_depths = 0.0
                self._measure()
        self._session.close()

    def _prune(self) -> None:
        """Idempotency records only matter while a redelivery is possible; forget older ones."""
        before = time.time() - self._config.store.retention_days * 86400
        try:
            deleted = self._idempotency.prune(before)
        except Exception as exc:  # a locked or unreachable store: try again next time
            log.warning("idempotency prune failed", error=str(exc))
            return
        if deleted:
            log.info("idempotency records pruned", deleted=deleted)

    def _measure(self) -> None:
        try:
            with self._session.channel() as channel:
                for route in self._config.routes:
                    counts = route_counts(channel, self._config, route)
                    metrics.QUEUE_DEPTH.labels(route.name, "main").set(counts.ready or 0)
                    metrics.QUEUE_DEPTH.labels(route.name, "retry").set(counts.retry or 0)
                    metrics.QUEUE_DEPTH.labels(route.name, "dlq").set(counts.dlq or 0)
                    metrics.DLQ_OLDEST_AGE.labels(route.name).set(max(0.0, counts.dlq_age or 0))
        except BrokerUnavailable as exc:
            log.debug("queue depth unavailable", error=str(exc))

