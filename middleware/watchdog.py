"""The supervisor of a daemon's long-lived threads: a death is never silent.

The broker I/O loop, the HTTP servers and the pollers each run on one thread. If one of them
ends while the process keeps running, the process answers nothing useful while looking alive.
The watchdog learns of a death two ways: ``threading.excepthook`` (a thread ended by an
exception; the traceback is logged through the masking logger instead of raw on stderr), and
``check`` (a watched thread is no longer alive, however it ended). Either trips it once, for
good: readiness turns false with the reason, ``/healthz`` fails, and ``silobridge run`` stops
the process with ``EXIT_CODE`` so the orchestrator starts a fresh one (OTP's "let it crash",
under a supervisor that sees the crash).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

__all__ = ["EXIT_CODE", "Watchdog"]

log = structlog.get_logger(__name__)

EXIT_CODE = 3  # documented in README (operating): a long-lived thread died


class Watchdog:
    """Watches named threads; ``tripped`` holds the first death's description."""

    def __init__(self) -> None:
        self._watched: dict[str, Callable[[], bool]] = {}
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._disarmed = False
        self.tripped = threading.Event()

    @property
    def reason(self) -> str | None:
        return self._reason

    @property
    def exit_code(self) -> int | None:
        """The code the process must exit with, once tripped."""
        return EXIT_CODE if self.tripped.is_set() else None

    def watch(self, name: str, alive: Callable[[], bool]) -> None:
        """Watch something long-lived (``alive`` is read at every check)."""
        with self._lock:
            self._watched[name] = alive

    def watch_thread(self, thread: threading.Thread) -> None:
        self.watch(thread.name, thread.is_alive)

    def disarm(self) -> None:
        """An orderly stop begins: threads ending from now on are expected."""
        self._disarmed = True

    def check(self) -> str | None:
        """Trip on any watched thread that is gone; the reason, or None while all is well."""
        with self._lock:
            watched = list(self._watched.items())
        for name, alive in watched:
            if self._reason is None and not alive():
                self.trip(f"thread {name} is no longer running")
        return self._reason

    def trip(self, reason: str) -> None:
        """Record the first death and signal it; later ones only add a log line."""
        if self._disarmed:
            return
        with self._lock:
            first = self._reason is None
            if first:
                self._reason = reason
        log.critical("a long-lived thread died; the process must be restarted",
                     reason=reason, first=first, exit_code=EXIT_CODE)
        self.tripped.set()

    def install(self) -> Callable[[threading.ExceptHookArgs], object]:
        """Make this watchdog the process's ``threading.excepthook``; returns the previous
        hook (a test puts it back)."""
        previous = threading.excepthook
        threading.excepthook = self._excepthook
        return previous

    def _excepthook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:  # a deliberate exit of a thread, as Python treats it
            return
        name = args.thread.name if args.thread is not None else "(unknown)"
        exc_info = None
        if args.exc_value is not None:
            exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
        log.error("thread ended by an exception", thread=name, exc_info=exc_info)
        # only the type in the reason: /readyz is no place for values an exception may quote
        self.trip(f"thread {name} died: {args.exc_type.__name__}")

