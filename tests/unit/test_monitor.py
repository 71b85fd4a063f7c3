"""The daemon's monitor thread outlives a failing idempotency store."""

from __future__ import annotations

import sqlite3
import time

from middleware.config.models import Config
from middleware.monitor import QueueMonitor


class LockedStore:
    def __init__(self) -> None:
        self.prunes = 0

    def prune(self, before: float) -> int:
        self.prunes += 1
        raise sqlite3.OperationalError("database is locked")


def test_monitor_keeps_running_when_pruning_fails() -> None:
    config = Config.model_validate({"broker": {"url": "amqp://guest:guest@127.0.0.1:9/"},
                                    "routes": []})
    store = LockedStore()
    monitor = QueueMonitor(config, None, store,  # type: ignore[arg-type]
                           interval=60, reload_interval=0.01, prune_interval=0.01)
    monitor.start()
    try:
        deadline = time.monotonic() + 5
        while store.prunes < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.prunes >= 3 and monitor.is_alive()  # failed, tried again, still there
    finally:
        monitor.stop()
