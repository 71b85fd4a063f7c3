"""Every route's live state for the overview: the ``silobridge status`` columns, from the
broker (queues, DLQ and its oldest age) and from this process's own metrics registry (rates,
in flight, sync lag p95, consumers).

Rates need two samples: the sampler keeps the previous registry reading and computes rates over
the time since, so a console polling every few seconds sees rates over its own interval.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import Any

from prometheus_client import REGISTRY, generate_latest

from middleware.cli.status import route_status
from middleware.config.models import Config
from middleware.scrape import Scrape, parse

__all__ = ["LiveState"]

_MIN_INTERVAL = 1.0
"""Seconds a previous sample must be old before rates are computed against it."""


class LiveState:
    """Blocking (broker connection): call on a worker thread."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._previous: tuple[float, Scrape] | None = None

    def routes(self, names: list[str]) -> list[dict[str, Any]]:
        now, current = time.monotonic(), parse(generate_latest(REGISTRY).decode())
        with self._lock:
            previous = self._previous
            if previous is None or now - previous[0] >= _MIN_INTERVAL:
                self._previous = (now, current)
        before, seconds = (previous[1], now - previous[0]) if previous else (None, 0.0)
        if seconds < _MIN_INTERVAL:
            before = None
        wanted = set(names)
        config = self._config.model_copy(
            update={"routes": [r for r in self._config.routes if r.name in wanted]})
        rows = []
        for row in route_status(config, before, current, seconds):
            item = asdict(row)
            item["rate_in"] = _rate_in(before, current, seconds, row.route)
            item["consumers"] = current.sum("silobridge_consumers", route=row.route)
            rows.append(item)
        return rows


def _rate_in(before: Scrape | None, after: Scrape, seconds: float, route: str) -> float | None:
    """Messages per second taken off the route queue (every outcome counts)."""
    if before is None or seconds <= 0:
        return None
    return max(0.0, after.sum("silobridge_messages_total", route=route)
               - before.sum("silobridge_messages_total", route=route)) / seconds
