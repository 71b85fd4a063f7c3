"""The RabbitMQ publisher's confirm bookkeeping, driven without a broker: a stand-in channel and
a loop that is the test's own thread."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from pika.spec import Basic
from prometheus_client import REGISTRY

from middleware.broker.properties import Properties
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.config.models import BrokerConfig
from middleware.errors import PublishNacked


class _Loop:
    def in_loop(self) -> bool:
        return True

    def call_soon(self, fn: Callable[[], Any]) -> bool:
        fn()
        return True

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        """No timers here."""

    def turning(self) -> bool:
        return False  # read at scrapes (silobridge_broker_connected): never connected here


class _Channel:
    is_open = True

    def basic_publish(self, *args: Any, **kwargs: Any) -> None:
        """Nothing goes anywhere."""


def _confirm(publisher: Publisher, method: Any) -> None:
    publisher._on_confirm(SimpleNamespace(method=method))


def _published(purpose: str) -> float:
    return REGISTRY.get_sample_value("silobridge_published_total", {"purpose": purpose}) or 0.0


@pytest.fixture
def publisher(prefix: str) -> Publisher:
    publisher = Publisher(BrokerConfig(), name=f"{prefix}-publish",
                          loop=_Loop())  # type: ignore[arg-type]
    publisher._channel = _Channel()
    publisher._connection.ready.set()
    return publisher


def test_publisher_multiple_confirm_resolves_and_counts_each_message_once(
        publisher: Publisher, prefix: str) -> None:
    # Given five messages in flight, four of one purpose and one of another
    purpose, other = f"{prefix}-a", f"{prefix}-b"
    futures = [publisher.publish("x", "k", b"{}", Properties(message_id=str(n)),
                                 purpose=other if n == 1 else purpose, result=n)
               for n in range(5)]
    # When the broker confirms the first three with one frame, nacks the fourth, acks the fifth
    _confirm(publisher, Basic.Ack(delivery_tag=3, multiple=True))
    assert [f.done() for f in futures] == [True, True, True, False, False]
    assert _published(purpose) == 2 and _published(other) == 1
    _confirm(publisher, Basic.Nack(delivery_tag=4))
    _confirm(publisher, Basic.Ack(delivery_tag=5))
    # Then each resolved as confirmed, and only the acked ones are counted as published
    assert [f.result() for f in futures[:3]] == [0, 1, 2] and futures[4].result() == 4
    assert isinstance(futures[3].exception(), PublishNacked)
    assert _published(purpose) == 3 and _published(other) == 1
    assert not publisher._pending


def test_publisher_confirm_of_a_cancelled_future_resolves_the_rest(publisher: Publisher) -> None:
    futures = [publisher.publish("x", "k", b"{}", Properties(message_id=str(n)), result=n)
               for n in range(3)]
    assert futures[1].cancel()
    _confirm(publisher, Basic.Ack(delivery_tag=3, multiple=True))
    assert futures[0].result() == 0 and futures[2].result() == 2
    assert futures[1].cancelled() and not publisher._pending
