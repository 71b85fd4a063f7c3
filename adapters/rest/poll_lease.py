"""The lease that lets exactly one of several replicas run a poller.

Every replica configured with a poller keeps trying to hold the store lease ``poll:<name>``:
the holder renews it every ``lease.renew_interval`` seconds; the others try to take it at the
same pace and at every tick, and get it once it expired (its holder died or hung). Only the
holder runs ticks, so the source API sees one GET sequence per tick, not one per replica. The
watermark is written through the lease (``put_if_held``): a replica that lost the lease
half-way through a run cannot commit and the new holder repeats the run from the shared
watermark, skipping what was already published.

A store that cannot be reached counts as "not held": the holder stops at the next page once
its last renewal is older than the lease time, because by then another replica may hold it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import structlog

from middleware.errors import SilobridgeError
from middleware.stores import LeaseStore

__all__ = ["PollLease"]

log = structlog.get_logger(__name__)


class PollLease:
    """This process's claim on one poller's lease, with a thread renewing it."""

    def __init__(self, store: LeaseStore, poller: str, ttl: float, renew_interval: float) -> None:
        self.name = f"poll:{poller}"
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.taken = threading.Event()
        """Set when this process newly took the lease (the poller then checks for a missed
        tick); set by ``stop`` too, to wake the schedule."""
        self._store = store
        self._ttl = ttl
        self._renew_interval = renew_interval
        self._valid_until = 0.0  # monotonic time the last successful acquire is good until
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        """Whether this process held the lease at its last renewal, and that is still valid."""
        return time.monotonic() < self._valid_until

    def acquire(self) -> bool:
        """Take or renew the lease now (a store round trip); False when another replica has it
        or the store cannot be reached."""
        was_held, asked = self.held, time.monotonic()
        try:
            won = self._store.acquire(self.name, self.holder, self._ttl)
        except SilobridgeError as exc:
            log.warning("poll lease not renewed: store unreachable", lease=self.name,
                        error=str(exc))
            return self.held
        self._valid_until = asked + self._ttl if won else 0.0
        if won and not was_held:
            log.info("poll lease taken", lease=self.name, holder=self.holder)
            self.taken.set()
        elif was_held and not won:
            log.warning("poll lease lost to another replica", lease=self.name)
        return won

    def put_if_held(self, key: str, value: str) -> bool:
        """Write ``key`` only while this process holds the lease (see ``LeaseStore``)."""
        return self._store.put_if_held(self.name, self.holder, key, value)

    def start(self) -> None:
        """Renew in the background from now on (once; later calls change nothing)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._renew, name=f"{self.name}-lease",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing and give the lease up, so another replica takes over at once."""
        self._stop.set()
        self.taken.set()
        if self._thread is not None:
            self._thread.join(timeout=self._renew_interval + 10)
        if self.held:
            self._valid_until = 0.0
            try:
                self._store.release(self.name, self.holder)
            except SilobridgeError as exc:
                log.warning("poll lease not released; it expires by itself", lease=self.name,
                            error=str(exc))

    def _renew(self) -> None:
        while not self._stop.wait(self._renew_interval):
            try:
                self.acquire()
            except Exception as exc:  # the renewal thread must outlive one odd failure
                log.error("poll lease renewal failed", lease=self.name, error=repr(exc))
