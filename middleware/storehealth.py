"""Whether the store works, as readiness and metrics tell it, and a probe that notices by itself.

A store fault (server down, disk full, read-only, slower than its timeout) is transient: the
worker's calls wait and retry (``middleware.storecalls``) instead of failing messages. Readiness
must say so and turn true again on its own, so the ``store`` check is false while at least one
call waits for the store, or while the last periodic probe failed (the probe notices an outage
while no message flows, and its recovery). Counting waiting calls, rather than remembering
"the last call failed", keeps a read that succeeds from hiding a write that still fails, and an
old failure that nothing retries any more from keeping the pod unready for ever.

Every failed call is counted in ``silobridge_store_errors_total{store,operation}``; the log gets
one line when the store starts failing and one when it recovers, not one per retry.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator

import structlog

from middleware import metrics
from middleware.errors import SilobridgeError

__all__ = ["PROBE_EVERY", "StoreHealth", "describe"]

log = structlog.get_logger(__name__)

PROBE_EVERY = 2.0  # seconds between probes; a probe that hangs is bounded by the store timeouts


def describe(error: BaseException) -> str:
    """The error for readiness and logs: the type, plus the text where it cannot carry secrets.

    silobridge's own messages and SQLite's (fixed texts such as "database or disk is full") are
    safe; a driver's text (psycopg) can name hosts, users or key values, so only its type shows.
    """
    if isinstance(error, SilobridgeError | sqlite3.Error):
        return f"{type(error).__name__}: {error}"
    return type(error).__name__


class StoreHealth:
    """Failing while calls wait for the store or the probe fails; thread-safe."""

    def __init__(self, probe: Callable[[], None], interval: float = PROBE_EVERY) -> None:
        self._probe = probe
        self._interval = interval
        self._lock = threading.Lock()
        self._waiting = 0
        self._probe_error: str | None = None
        self._last: str | None = None  # the latest failure, for the reason
        self._since: float | None = None  # when the current episode of failures began
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._probe_loop, name="store-probe", daemon=True)
        for store, operations in (("idempotency", ("seen", "record_many")),
                                  ("xref", ("lookup", "link")), ("store", ("probe",))):
            for operation in operations:  # exported at 0 from the start, so rate() has a series
                metrics.STORE_ERRORS.labels(store, operation)

    @property
    def ok(self) -> bool:
        with self._lock:
            return self._waiting == 0 and self._probe_error is None

    def reason(self) -> str | None:
        """Why the store counts as failing (None while it works), for ``/readyz``."""
        with self._lock:
            if self._waiting == 0 and self._probe_error is None:
                return None
            since = 0.0 if self._since is None else time.monotonic() - self._since
            waiting = f"; {self._waiting} call(s) waiting to retry" if self._waiting else ""
            return f"store failing for {since:.0f}s: {self._last}{waiting}"

    def failed(self, store: str, operation: str, error: BaseException) -> None:
        """Count one failed call; the first of an episode is logged."""
        metrics.STORE_ERRORS.labels(store, operation).inc()
        text = f"{store}.{operation}: {describe(error)}"
        with self._lock:
            self._last = text
            first = self._since is None
            if first:
                self._since = time.monotonic()
        if first:
            log.error("store failing; messages wait and retry until it works again",
                      store=store, operation=operation, error=describe(error))

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a call that failed and waits to retry: readiness is false meanwhile."""
        with self._lock:
            self._waiting += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1
            self._maybe_recovered()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(30)

    def probe_once(self) -> None:
        """Run the probe now (the probe thread does this every ``interval`` seconds)."""
        try:
            self._probe()
        except Exception as exc:  # any failure of the probe is the store's, not the thread's
            self.failed("store", "probe", exc)
            with self._lock:
                self._probe_error = describe(exc)
            return
        with self._lock:
            self._probe_error = None
        self._maybe_recovered()

    def _probe_loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.probe_once()

    def _maybe_recovered(self) -> None:
        with self._lock:
            if self._waiting or self._probe_error is not None or self._since is None:
                return
            took, self._since = time.monotonic() - self._since, None
        log.info("store works again", failing_for=round(took, 1))
