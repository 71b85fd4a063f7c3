"""The daemon survives a broker restart mid-stream: nothing lost, nothing delivered twice."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.broker_control import require_rabbitmqctl, restored, stop_broker
from tests.integration.helpers import counter, drain, publish_events, queue_count, wait_until
from tests.integration.test_pipeline import amqp_route

pytestmark = pytest.mark.integration


def test_daemon_recovers_from_broker_restart_without_loss(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
) -> None:
    require_rabbitmqctl()
    loaded = make_config([amqp_route(prefix)])
    route = f"{prefix}-r"
    before = counter("silobridge_messages_total", route=route, target="amqp",
                     outcome="delivered")
    reconnects = counter("silobridge_reconnects_total", connection="consume")
    daemon = Daemon(loaded, Role.WORKER)
    daemon.start()
    try:
        ids = publish_events(amqp_url, prefix, 2000)
        # When the broker stops while the backlog is being worked off
        assert wait_until(lambda: counter("silobridge_messages_total", route=route,
                                          target="amqp", outcome="delivered") - before >= 200,
                          30, step=0.01)
        with restored():
            stop_broker()
            time.sleep(1)
            # Then the daemon reports itself not ready while the broker is away
            assert not all(daemon.readiness().values())
        # And it recovers by itself and finishes the backlog
        assert wait_until(lambda: queue_count(amqp_url, f"{prefix}.out") >= 2000, 90)
        assert wait_until(lambda: all(daemon.readiness().values()), 30)
        assert wait_until(lambda: queue_count(amqp_url, f"silobridge.route.{route}") == 0, 30)
        time.sleep(1)
    finally:
        daemon.stop()
    received = Counter(props.message_id for props, _ in drain(amqp_url, f"{prefix}.out"))
    # zero lost
    assert set(received) == set(ids)
    # zero delivered twice by the worker: every envelope was confirmed by the target once; a
    # copy the broker stored but could not confirm before it stopped carries the same
    # idempotency key (the envelope id), so the receiving system dedupes it
    delivered = counter("silobridge_messages_total", route=route, target="amqp",
                        outcome="delivered") - before
    assert delivered == 2000
    extra = sum(n - 1 for n in received.values())
    assert extra <= loaded.config.broker.prefetch
    assert counter("silobridge_reconnects_total", connection="consume") > reconnects
    print(f"unconfirmed copies the receiver deduped by message id: {extra}")
