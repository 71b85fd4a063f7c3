"""Queue gauges: each route's queue depths and the age of its oldest dead letter, as metrics.

Queue depths come from passive declares on a connection of the gauges' own (the management
plugin is not required). The age of a route's oldest dead letter is read from its DLQ, only
while the DLQ holds something: the letters are taken with basic.get and put back unacked when
the channel closes (a DLQ has no delivery limit on RabbitMQ 3.x, so peeking never loses a
message). The daemon runs ``measure`` on a ``Periodic`` thread of its own.
"""

from __future__ import annotations

import structlog

from middleware import metrics
from middleware.broker.dlq import route_counts
from middleware.broker.factory import Session
from middleware.config.models import Config
from middleware.errors import BrokerUnavailable

__all__ = ["QueueGauges"]

log = structlog.get_logger(__name__)


class QueueGauges:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._session = Session(config.broker, "queue-gauges")

    def measure(self) -> None:
        """Set every route's depth and DLQ age gauges; a broker away leaves them as they were."""
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

    def close(self) -> None:
        self._session.close()
