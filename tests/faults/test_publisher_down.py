"""The order after a partition heals: the consumer is back, the publisher not yet (issue 13).

In the full-size 60 s partition run one event was lost: messages failing at the target could not
have their retry copy published ("not connected"), were nacked back at once, about twenty times
in a second, and the quorum queue's ``x-delivery-limit`` dead-lettered one. Here the daemon's
publisher goes through the fault proxy and its consumer straight to RabbitMQ, so the publisher
alone is down while messages fail; the delivery limit is set low, so a requeue storm would show
as messages dead-lettered instead of delivered.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import cast

import structlog

from middleware.broker.rabbitmq.broker import RabbitBroker
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.broker.topology import dlq_name, queue_name, retry_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.faults.conftest import proxied
from tests.faults.proxy import FaultProxy
from tests.faults.results import record
from tests.integration.helpers import (
    ScriptedTarget,
    counter,
    publish_events,
    queue_count,
    wait_until,
)
from tests.integration.test_pipeline import scripted_route

EVENTS = 200
DELIVERY_LIMIT = 3


def test_failed_messages_wait_for_the_publisher_instead_of_requeueing_in_a_loop(
    amqp_url: str, prefix: str, broker_proxy: FaultProxy,
    make_config: Callable[..., LoadedConfig],
) -> None:
    # Given a worker whose consumer reaches RabbitMQ directly and whose publisher (the one
    # that parks failed messages in the retry tiers) goes through the proxy
    loaded = make_config([scripted_route(prefix)], retry={
        "attempts": 3, "initial_delay": 0.3, "multiplier": 2, "delivery_limit": DELIVERY_LIMIT})
    broker = loaded.config.broker.model_copy(update={
        "url": proxied(amqp_url, broker_proxy), "reconnect_max_delay": 1.0})
    route = f"{prefix}-r"
    daemon = Daemon(loaded, Role.WORKER)
    daemon.publisher = Publisher(broker, name="publish-proxied",
                                 loop=cast(RabbitBroker, daemon.broker).loop)
    daemon.start()
    try:
        target = ScriptedTarget.instances[prefix]
        target.fail_all = 1  # every event fails once at the target, then is accepted
        # (the consumer's connection declares the topology: this publisher has no hook for it)
        assert wait_until(lambda: daemon.consumer is not None and daemon.consumer.consuming, 10)
        # When the publisher's connection is gone and stays gone while events arrive
        broker_proxy.refuse()
        broker_proxy.reset_all()
        assert wait_until(lambda: not daemon.publisher.connected, 10)
        with structlog.testing.capture_logs() as logs:
            ids = publish_events(amqp_url, prefix, EVENTS)
            down = time.monotonic()
            # Then each fails once at the target and waits for its retry copy to go out:
            # across several of the publisher's reconnect attempts (seconds), none is
            # requeued, none reaches the target again, none is dead-lettered
            assert wait_until(lambda: len(target.calls) >= EVENTS, 30)
            assert wait_until(lambda: sum(
                e.get("connection") == "publish-proxied" and e["event"] in (
                    "broker connection failed", "broker unreachable") for e in logs) >= 6, 30)
            waited = time.monotonic() - down
            calls_while_down = len(target.calls)
            requeued_while_down = counter("silobridge_messages_total", route=route,
                                          target="scripted", outcome="requeued")
            assert requeued_while_down == 0
            assert calls_while_down == EVENTS
            assert queue_count(amqp_url, dlq_name(route)) == 0
            # When the publisher can connect again
            broker_proxy.heal()
            healed = time.monotonic()
            # Then every copy is parked, comes back from its tier and is delivered
            assert wait_until(lambda: len(set(target.accepted)) >= EVENTS, 60)
            recovered = time.monotonic() - healed
        assert wait_until(lambda: counter("silobridge_in_flight", route=route) == 0, 10)
        assert wait_until(lambda: queue_count(amqp_url, queue_name(route)) == 0, 10)
        assert queue_count(amqp_url, retry_name(route, 1)) == 0
    finally:
        daemon.stop()
    accepted = Counter(target.accepted)
    lost = set(ids) - set(accepted)
    duplicates = sum(n - 1 for n in accepted.values())
    assert not lost
    assert duplicates == 0
    assert queue_count(amqp_url, dlq_name(route)) == 0
    assert counter("silobridge_messages_total", route=route, target="scripted",
                   outcome="requeued") == 0
    record("publisher_down", observed=f"{EVENTS} events failing once at the target while "
           f"only the publisher was down ({waited:.1f} s, x-delivery-limit "
           f"{DELIVERY_LIMIT}): each held unacked, {calls_while_down} target calls "
           f"(one each), 0 requeued; after the publisher reconnected all parked in the "
           f"retry tier and delivered", lost=len(lost), duplicates=duplicates,
           recovery_seconds=round(recovered, 1))
