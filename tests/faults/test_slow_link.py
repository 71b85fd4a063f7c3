"""Case 3: a slow link to the broker (64 KB/s, 500 ms added latency each way).

Throughput falls, nothing is lost, and no publish waits past ``publish_timeout`` without an
answer: each one is confirmed or fails with PublishTimeout in time, so a caller can retry.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any

from middleware.broker.properties import Properties
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.config.loader import LoadedConfig
from middleware.config.models import BrokerConfig
from middleware.daemon import Daemon, Role
from middleware.errors import PublishTimeout
from tests.faults.conftest import proxied, size
from tests.faults.proxy import FaultProxy
from tests.faults.results import record
from tests.integration.helpers import drain, publish_events, queue_count, wait_until
from tests.integration.test_pipeline import amqp_route

RATE, LATENCY, TIMEOUT = 64 * 1024, 0.5, 3.0


def _drain_seconds(url: str, prefix: str, total: int) -> float:
    """Seconds until the target queue holds ``total`` messages (timed from the last publish)."""
    began = time.monotonic()
    assert wait_until(lambda: queue_count(url, f"{prefix}.out") >= total, 120, step=0.05)
    return time.monotonic() - began


def test_slow_link_lowers_throughput_loses_nothing_and_bounds_every_publish(
    amqp_url: str, prefix: str, broker_proxy: FaultProxy,
    make_config: Callable[..., LoadedConfig],
) -> None:
    # 400 messages take seconds through the slow link against a fraction of one on a clean
    # one: plenty to see throughput fall (1,000, as docs/reliability.md records, took 8 s more)
    count = int(size("slow_link_messages", 400))
    loaded = make_config([amqp_route(prefix)], broker={
        "url": proxied(amqp_url, broker_proxy), "prefetch": 200,
        "publish_timeout": TIMEOUT, "heartbeat": 5})
    daemon = Daemon(loaded, Role.WORKER)
    daemon.start()
    try:
        assert wait_until(lambda: all(daemon.readiness().values()), 10)
        # Given the worker's throughput on a clean link
        ids = publish_events(amqp_url, prefix, count)
        clean = _drain_seconds(amqp_url, prefix, count)
        # When the link slows down
        broker_proxy.bandwidth(RATE)
        broker_proxy.latency(LATENCY)
        ids += publish_events(amqp_url, prefix, count)
        slow = _drain_seconds(amqp_url, prefix, 2 * count)
        # Then throughput falls but the backlog is worked off
        assert slow > clean
        assert wait_until(lambda: queue_count(amqp_url, f"silobridge.route.{prefix}-r") == 0, 60)
        time.sleep(1)
        bounded = _publishes_are_bounded(proxied(amqp_url, broker_proxy), prefix)
    finally:
        broker_proxy.heal()
        daemon.stop()
    received = Counter(props.message_id for props, _ in drain(amqp_url, f"{prefix}.out"))
    lost = set(ids) - set(received)
    duplicates = sum(n - 1 for n in received.values())
    assert not lost
    record("slow_link", observed=f"{count} messages all at the target {clean:.1f} s after "
           f"the last publish on a clean link, {slow:.1f} s after it at 64 KB/s + 500 ms; "
           f"{bounded}", lost=len(lost), duplicates=duplicates, recovery_seconds=None)


def _publishes_are_bounded(url: str, prefix: str) -> str:
    """Publish 400 KB through the slow link: more than fits in ``publish_timeout``."""
    publisher = Publisher(BrokerConfig(url=url, publish_timeout=TIMEOUT, heartbeat=5),
                          name=f"{prefix}-slow")
    assert publisher.start(wait=15)
    waited: dict[int, float] = {}
    lock = threading.Lock()

    def done(n: int, began: float) -> Callable[[Future[Any]], None]:
        def on_done(_f: Future[Any]) -> None:
            with lock:
                waited[n] = time.monotonic() - began
        return on_done

    futures = []
    try:
        for n in range(200):
            properties = Properties(message_id=f"{prefix}-{n}")
            future = publisher.publish("", f"{prefix}.out", b"x" * 2048, properties)
            future.add_done_callback(done(n, time.monotonic()))
            futures.append(future)
        _done, pending = wait(futures, timeout=TIMEOUT + 10)
    finally:
        publisher.stop()
    assert not pending
    errors = [f.exception() for f in futures if f.exception() is not None]
    assert all(isinstance(e, PublishTimeout) for e in errors), errors[:3]
    # the sweep runs every second: an unanswered publish fails within the timeout + 1 s
    assert max(waited.values()) <= TIMEOUT + 1.5, max(waited.values())
    confirmed = len(futures) - len(errors)
    return (f"of 200 publishes of 2 KB, {confirmed} confirmed and {len(errors)} failed with "
            f"PublishTimeout; the longest wait {max(waited.values()):.1f} s "
            f"(publish_timeout {TIMEOUT:g} s)")
