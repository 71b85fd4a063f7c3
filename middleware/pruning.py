"""Store pruning: state that only matters for a bounded time is deleted once that time is past.
The daemon runs ``prune`` at start and then hourly on a ``Periodic`` thread of its own (never on
a broker or HTTP loop).

- Idempotency records matter while a redelivery or replay of their message is possible: kept
  ``store.retention_days``.
- Two-way write fingerprints (``sync_echo``) are dead once past their ``echo.ttl``.
- A two-way subject's row (``sync_subject``: applied version, claim) is what makes an event
  older than the applied one ``stale``. Deleted, such an event would be delivered like a first
  one; old events come from redeliveries, retry tiers and DLQ replays, the same window the
  idempotency records cover, so the row is kept ``store.retention_days`` after its last apply
  (longer when a conflict window is longer: the conflict rules read these rows too), and
  never while an event of the subject holds its claim.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from middleware import metrics
from middleware.config.models import Config, StoreConfig
from middleware.stores.base import IdempotencyStore, SyncStore

__all__ = ["StorePruning", "subject_retention"]

log = structlog.get_logger(__name__)


def subject_retention(config: Config) -> float:
    """Seconds a subject's row is kept after its last apply."""
    windows = [route.sync.conflict.window for route in config.routes
               if route.sync is not None and route.sync.conflict is not None]
    return max([config.store.retention_days * 86400, *windows])


class StorePruning:
    def __init__(self, config: StoreConfig, idempotency: IdempotencyStore,
                 sync: SyncStore | None = None, keep_subjects: float | None = None) -> None:
        self._retention = config.retention_days * 86400
        self._idempotency = idempotency
        self._sync = sync
        self._keep_subjects = self._retention if keep_subjects is None else keep_subjects

    def prune(self) -> None:
        """Forget what is past retention; a locked or unreachable store is tried next time."""
        now = time.time()
        self._one("idempotency", lambda: self._idempotency.prune(now - self._retention))
        sync = self._sync
        if sync is not None:
            self._one("sync_echo", sync.prune_echoes)
            self._one("sync_subject", lambda: sync.prune_subjects(now - self._keep_subjects))

    def _one(self, records: str, prune: Callable[[], int]) -> None:
        try:
            deleted = prune()
        except Exception as exc:  # a store fault is transient: the next turn tries again
            log.warning("store prune failed", records=records, error=str(exc))
            return
        if deleted:
            metrics.STORE_PRUNED.labels(records).inc(deleted)
            log.info("store records pruned", records=records, deleted=deleted)
