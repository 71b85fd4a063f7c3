"""Store pruning: idempotency records only matter while a redelivery is possible, so records
older than ``store.retention_days`` are deleted. The daemon runs ``prune`` at start and then
hourly on a ``Periodic`` thread of its own (never on a broker or HTTP loop)."""

from __future__ import annotations

import time

import structlog

from middleware.config.models import StoreConfig
from middleware.stores.base import IdempotencyStore

__all__ = ["StorePruning"]

log = structlog.get_logger(__name__)


class StorePruning:
    def __init__(self, config: StoreConfig, idempotency: IdempotencyStore) -> None:
        self._retention_days = config.retention_days
        self._idempotency = idempotency

    def prune(self) -> None:
        """Forget records past retention; a locked or unreachable store is tried next time."""
        before = time.time() - self._retention_days * 86400
        try:
            deleted = self._idempotency.prune(before)
        except Exception as exc:  # a store fault is transient: the next turn tries again
            log.warning("idempotency prune failed", error=str(exc))
            return
        if deleted:
            log.info("idempotency records pruned", deleted=deleted)
