"""The queue gauges read a route's queues on the real broker: depths by kind and the age of
the oldest dead letter, with the letters left where they were."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pika
import pytest

from middleware import headers as h
from middleware import metrics
from middleware.broker.factory import declare
from middleware.broker.topology import dlq_name, queue_name, topology_for
from middleware.config.loader import LoadedConfig
from middleware.monitor import QueueGauges
from tests.integration.helpers import queue_count

pytestmark = pytest.mark.integration


def _publish(amqp_url: str, queue: str, count: int, headers: dict[str, object]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    for n in range(count):
        channel.basic_publish("", queue, b"{}", pika.BasicProperties(
            message_id=f"m-{n}", delivery_mode=2, headers=headers), mandatory=True)
    connection.close()


def test_queue_gauges_set_depths_and_the_dead_letter_age(
    make_config: Callable[..., LoadedConfig], prefix: str, amqp_url: str
) -> None:
    # Given a route with 3 messages waiting and 2 dead letters failing for an hour
    route = f"{prefix}-g"
    loaded = make_config([{"name": route, "bind": [f"{prefix}.g.*"],
                           "target": {"type": "amqp", "exchange": f"{prefix}.out",
                                      "routing_key": "x"}}])
    declare(loaded.config.broker, topology_for(loaded.config))
    _publish(amqp_url, queue_name(route), 3, {})
    failed = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    _publish(amqp_url, dlq_name(route), 2, {h.FIRST_FAILURE: failed, h.REASON: "no"})
    gauges = QueueGauges(loaded.config)
    try:
        gauges.measure()
    finally:
        gauges.close()
    assert metrics.QUEUE_DEPTH.labels(route, "main")._value.get() == 3
    assert metrics.QUEUE_DEPTH.labels(route, "retry")._value.get() == 0
    assert metrics.QUEUE_DEPTH.labels(route, "dlq")._value.get() == 2
    assert metrics.DLQ_OLDEST_AGE.labels(route)._value.get() == pytest.approx(3600, abs=60)
    assert queue_count(amqp_url, dlq_name(route)) == 2  # peeked, not taken
