"""A background chore on a thread of its own: one job, run every ``interval`` seconds.

The daemon's chores (queue gauges, mapping reloads, store pruning) each get one, named for the
job, so a slow broker round trip never delays a mapping reload and a thread dump says what
each thread does. A job that raises is logged and run again at its next turn: a chore that died
silently would leave a gauge frozen or an edited mapping unloaded with nothing to show for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

__all__ = ["Periodic"]

log = structlog.get_logger(__name__)


class Periodic(threading.Thread):
    """Runs ``job`` every ``interval`` seconds (first at once when ``at_start``) until stopped,
    then ``on_stop`` (to release what the job keeps open)."""

    def __init__(self, name: str, interval: float, job: Callable[[], object], *,
                 at_start: bool = False, on_stop: Callable[[], object] | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self._interval = interval
        self._job = job
        self._at_start = at_start
        self._on_stop = on_stop
        self._halt = threading.Event()
        self.runs = 0
        """Turns completed, failed ones included (what a test waits for)."""

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def run(self) -> None:
        if self._at_start:
            self._turn()
        while not self._halt.wait(self._interval):
            self._turn()
        if self._on_stop is not None:
            self._on_stop()

    def _turn(self) -> None:
        try:
            self._job()
        except Exception:  # a chore must outlive a bad turn: logged, tried again next time
            log.exception("background chore failed", chore=self.name)
        self.runs += 1
