"""Helpers for store-fault and loop-blocking tests: a slow store, events at a steady rate."""

from __future__ import annotations

import threading
import time
from typing import Any

import pika

from middleware.broker.topology import EVENTS_EXCHANGE
from middleware.envelope import Envelope
from middleware.stores.base import Stores

__all__ = ["SlowStore", "publish_steadily", "slow_stores"]


class SlowStore:
    """A store whose every call first waits ``delay`` seconds (a loaded or distant database);
    ``calls`` records each call's name and the thread that made it."""

    def __init__(self, inner: Any, delay: float) -> None:
        self._inner = inner
        self._delay = delay
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name == "close" or not callable(attribute):
            return attribute

        def slow(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, threading.current_thread().name))
            time.sleep(self._delay)
            return attribute(*args, **kwargs)

        return slow


def slow_stores(stores: Stores, delay: float) -> Stores:
    """``stores`` with slow idempotency and xref stores (the state store keeps its speed)."""
    return Stores(SlowStore(stores.idempotency, delay), SlowStore(stores.xref, delay),
                  stores.state, stores.lease, shared_close=stores.shared_close)


def publish_steadily(
    url: str, envelopes: list[Envelope], rate: float,
    headers: dict[str, Any] | None = None, stop: threading.Event | None = None,
) -> list[str]:
    """Publish persistent, confirmed, at ``rate`` per second; the ids the broker confirmed."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    sent, started = [], time.monotonic()
    try:
        for n, envelope in enumerate(envelopes):
            if stop is not None and stop.is_set():
                break
            pause = started + n / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            properties = pika.BasicProperties(delivery_mode=2, headers=headers,
                                              **envelope.amqp_properties())
            channel.basic_publish(EVENTS_EXCHANGE, envelope.type, envelope.to_json(),
                                  properties, mandatory=True)
            sent.append(envelope.id)
    finally:
        connection.close()
    return sent
