"""Several broker URLs: connections move to the next node when theirs is gone.

Two fault proxies stand for two nodes (both lead to the shared broker, so the queues are the
same, as a cluster's quorum queues are): the node in use is made unreachable (its open
connections reset, new ones refused) and the daemon carries on through the other.
The three-node cluster with a SIGKILLed leader is case 11 (tests/integration/extra_node.py).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.faults.conftest import proxied, size
from tests.faults.proxy import FaultProxy
from tests.faults.results import record
from tests.integration.helpers import drain, publish_events, queue_count, wait_until
from tests.integration.test_pipeline import amqp_route


def test_failover_to_the_next_url_when_the_connected_node_is_gone(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
) -> None:
    count = int(size("failover_messages", 2000))
    parts = urlsplit(amqp_url)
    with FaultProxy(parts.port or 5672) as first, FaultProxy(parts.port or 5672) as second:
        # Given a daemon with two node URLs, connected through the first
        urls = f"{proxied(amqp_url, first)},{proxied(amqp_url, second)}"
        loaded = make_config([amqp_route(prefix)], broker={
            "url": urls, "prefetch": 200, "publish_timeout": 3, "heartbeat": 2,
            "reconnect_max_delay": 2, "connect_timeout": 3})
        daemon = Daemon(loaded, Role.WORKER)
        daemon.start()
        try:
            assert wait_until(lambda: first.open >= 2 and all(daemon.readiness().values()), 10)
            assert second.accepted == 0
            ids = publish_events(amqp_url, prefix, count)
            assert wait_until(lambda: queue_count(amqp_url, f"{prefix}.out") >= count // 10, 30,
                              step=0.01)
            # When that node becomes unreachable mid-stream
            first.refuse()
            first.reset_all()
            lost_at = time.monotonic()
            # Then the daemon reconnects through the second one and finishes the backlog
            assert wait_until(lambda: second.open >= 2 and all(daemon.readiness().values()),
                              30, step=0.05)
            recovered = time.monotonic() - lost_at
            assert wait_until(lambda: queue_count(amqp_url, f"silobridge.route.{prefix}-r") == 0,
                              60)
            time.sleep(0.5)
        finally:
            daemon.stop()
    received = Counter(props.message_id for props, _ in drain(amqp_url, f"{prefix}.out"))
    lost = set(ids) - set(received)
    extra = sum(n - 1 for n in received.values())
    assert not lost
    assert extra <= loaded.config.broker.prefetch
    record("failover", observed=f"two node URLs, the first reset and refused after "
           f"{count // 10}+ of {count} messages: reconnected through the second", lost=len(lost),
           duplicates=extra, recovery_seconds=round(recovered, 1))
