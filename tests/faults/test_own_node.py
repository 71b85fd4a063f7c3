"""Faults that change a broker's settings or stop it: on a RabbitMQ node of this module's own.

Case 5 (consumer timeout), case 7 (disk alarm) and case 8 (full node restart) share one extra
node (``tests/integration/extra_node.py``), started once: the machine's node stays untouched.
Its ``consumer_timeout`` is low and checked every half second (``channel_tick_interval``; the
default checks once a minute), so only a delivery held for seconds trips it.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import structlog
from starlette.requests import Request
from starlette.responses import Response

from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.faults.conftest import size
from tests.faults.results import record
from tests.faults.targets import GatedTarget, gated_route
from tests.faults.test_broker_network import _Sender
from tests.integration.extra_node import ExtraNode, require_node_tools
from tests.integration.helpers import counter, drain, publish_events, queue_count, wait_until
from tests.integration.rest_helpers import Peer, endpoint
from tests.integration.test_pipeline import amqp_route

CONSUMER_TIMEOUT = 2.0  # seconds


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExtraNode]:
    require_node_tools()
    own = ExtraNode(tmp_path_factory.mktemp("own-node"),
                    extra_conf=(f"consumer_timeout = {int(CONSUMER_TIMEOUT * 1000)}",),
                    erl_args=("-rabbit channel_tick_interval 500",))
    with own:
        yield own


def _broker(node: ExtraNode, **extra: Any) -> dict[str, Any]:
    return {"url": node.url, "prefetch": 200, "publish_timeout": 3, "heartbeat": 5,
            "reconnect_max_delay": 1, "connect_timeout": 3, **extra}


def _rest_route(prefix: str, url: str) -> dict[str, Any]:
    return {"name": f"{prefix}-r", "bind": [f"{prefix}.customer.*"],
            "target": {"type": "rest", "method": "POST", "url": url, "timeout": 10}}


# -- case 5 ------------------------------------------------------------------------------------


def test_target_slower_than_consumer_timeout_is_retried_on_a_reopened_channel(
    node: ExtraNode, prefix: str, make_config: Callable[..., LoadedConfig],
) -> None:
    # Given a REST target whose first answer takes longer than the broker's consumer_timeout
    slow = CONSUMER_TIMEOUT * 2.5
    answered: list[bytes] = []

    async def answer(_request: Request, body: bytes) -> Response:
        if not answered:
            answered.append(b"")
            await asyncio.sleep(slow)
        answered.append(body)
        return Response(b'{"id": "ERP-1"}', media_type="application/json")

    with Peer(answer) as peer:
        loaded = make_config([_rest_route(prefix, f"{peer.url}/erp")], broker=_broker(node))
        route = f"{prefix}-r"
        daemon = Daemon(loaded, Role.WORKER)
        with structlog.testing.capture_logs() as logs:
            daemon.start()
            try:
                # When an event waits on that target past the consumer timeout
                began = time.monotonic()
                ids = publish_events(node.url, prefix, 5)
                # Then the broker closes the channel, the worker reconnects and consumes again,
                # and the event is retried there and delivered
                assert wait_until(lambda: any(
                    e["event"] == "channel closed" and "timed out" in e.get("reason", "")
                    for e in logs), 3 * CONSUMER_TIMEOUT + 5)
                closed = time.monotonic() - began
                assert wait_until(lambda: any(e["event"] == "broker reconnected" and
                                              e.get("connection") == "consume" for e in logs), 10)
                reopened = time.monotonic() - began
                assert wait_until(lambda: counter("silobridge_in_flight", route=route) == 0,
                                  slow + 10)
                assert wait_until(lambda: queue_count(node.url, queue_name(route)) == 0, 10)
            finally:
                daemon.stop()
    delivered = Counter(orjson.loads(body)["customer_no"] for body in answered if body)
    sent = {f"C-{n}" for n in range(len(ids))}
    lost = sent - set(delivered)
    duplicates = sum(n - 1 for n in delivered.values())
    assert not lost
    assert duplicates <= 1  # only the slow one, answered once per channel that held it
    reasons = [e["reason"] for e in logs if e["event"] == "channel closed"]
    reason = reasons[0].split(" - ")[-1].split(". ")[0]
    record("consumer_timeout", observed=f"consumer_timeout {CONSUMER_TIMEOUT:g} s, a target "
           f"answering after {slow:g} s: the broker closed the channel after {closed:.1f} s "
           f"('{reason}'), consuming again after {reopened:.1f} s; "
           f"the event redelivered and delivered, the slow first answer landing too (the "
           f"target saw it {delivered.most_common(1)[0][1]} times)", lost=len(lost),
           duplicates=duplicates, recovery_seconds=round(reopened - closed, 1))


# -- case 7 ------------------------------------------------------------------------------------


def test_disk_alarm_refuses_with_retry_after_and_delivers_everything_after(
    node: ExtraNode, prefix: str, make_config: Callable[..., LoadedConfig],
) -> None:
    # Given an ingress on the node taking events at a steady rate, its worker not yet running
    blocked_timeout, alarm_seconds = 4.0, size("disk_alarm_seconds", 8)
    section = endpoint(prefix, "hook", dedupe={"header": "X-Request-Id"}, retry_after=2)
    loaded = make_config([amqp_route(prefix)], inbound=[section],
                         broker=_broker(node, blocked_timeout=blocked_timeout),
                         retry={"attempts": 5, "initial_delay": 0.5, "multiplier": 2})
    route = f"{prefix}-r"
    ingress, worker = Daemon(loaded, Role.INGRESS), Daemon(loaded, Role.WORKER)
    ingress.start()
    try:
        assert ingress.ingress is not None
        url = f"http://127.0.0.1:{ingress.ingress.port}{section['path']}"
        with _Sender(url, 50) as sender, structlog.testing.capture_logs() as logs:
            assert wait_until(lambda: len(sender.accepted) >= 100, 20)
            # When the node raises a disk alarm (its free-space limit set above what is free)
            free = shutil.disk_usage(node.dir).free
            node.ctl("set_disk_free_limit", str(free * 4))
            began = time.monotonic()
            # Then the ingress answers 503 with Retry-After, within blocked_timeout
            with httpx.Client(timeout=blocked_timeout + 10) as client:
                refusal = _first_refusal(client, url, blocked_timeout + 10)
            refused_after = time.monotonic() - began
            assert refusal.status_code == 503, refusal.text
            assert refusal.headers.get("retry-after") == "2"
            assert refused_after <= blocked_timeout + 1.0, f"first 503 after {refused_after:.1f}"
            # And a worker starting now takes the backlog, its outbound publishes blocked:
            # they fail into retries, and the retry copies (blocked too) wait for the broker
            worker.start()
            assert wait_until(lambda: any(e["event"] == "retry scheduled" for e in logs),
                              blocked_timeout + 10)
            time.sleep(max(0.0, alarm_seconds - (time.monotonic() - began)))
            failed = sum(e["event"] == "retry scheduled" for e in logs)
            # When the alarm clears
            node.ctl("set_disk_free_limit", "50MB")
            cleared = time.monotonic()
            assert wait_until(lambda: all(ingress.readiness().values()) and
                              all(worker.readiness().values()), 30, step=0.05)
        # Then everything accepted reaches the target
        assert wait_until(lambda: queue_count(node.url, f"{prefix}.out") >= len(sender.accepted),
                          60)
        recovered = time.monotonic() - cleared
        assert wait_until(lambda: counter("silobridge_in_flight", route=route) == 0, 30)
        assert wait_until(lambda: queue_count(node.url, queue_name(route)) == 0, 30)
    finally:
        node.ctl("set_disk_free_limit", "50MB")
        worker.stop()
        ingress.stop()
    delivered = Counter(orjson.loads(body)["data"]["customer_no"]
                        for _, body in drain(node.url, f"{prefix}.out"))
    lost = sender.accepted - set(delivered)
    duplicates = sum(n - 1 for n in delivered.values())
    assert not lost
    assert failed >= 1
    record("disk_alarm", observed=f"{alarm_seconds:g} s disk alarm at 50 events/s "
           f"(blocked_timeout {blocked_timeout:g} s): first 503 with Retry-After after "
           f"{refused_after:.1f} s, {sender.refused} requests refused and sent again, "
           f"{len(sender.accepted)} accepted; a worker started during the alarm: {failed} "
           f"outbound publishes failed into retries (their copies waited); all delivered "
           f"after the alarm cleared", lost=len(lost), duplicates=duplicates,
           recovery_seconds=round(recovered, 1))


def _first_refusal(client: httpx.Client, url: str, within: float) -> httpx.Response:
    """Post until one request is refused (or ``within`` passes); the last answer."""
    deadline = time.monotonic() + within
    n = 0
    while True:
        n += 1
        key = f"probe-{n}"
        answer = client.post(url, json={"customer_no": key}, headers={"X-Request-Id": key})
        if answer.status_code != 202 or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


# -- case 8 ------------------------------------------------------------------------------------


def test_full_node_restart_with_quorum_queues_full_delivers_everything(
    node: ExtraNode, prefix: str, make_config: Callable[..., LoadedConfig],
) -> None:
    # Given a route queue (quorum) holding many messages, a window of them in flight
    count = int(size("restart_messages", 10_000))
    loaded = make_config([gated_route(prefix)], broker=_broker(node))
    route = f"{prefix}-r"
    daemon = Daemon(loaded, Role.WORKER)
    daemon.start()
    try:
        target = GatedTarget.instances[prefix]
        ids = publish_events(node.url, prefix, count)
        assert wait_until(lambda: len(target.received) >= 200, 30)
        held = queue_count(node.url, queue_name(route))
        # When the whole node stops (rabbitmqctl stop: the Erlang VM exits) and starts again
        began = time.monotonic()
        node.ctl("stop")
        # (the target answers the window in flight meanwhile: their acks have no channel)
        target.open_gate()
        node.start()
        restarted = time.monotonic() - began
        # Then the worker reconnects and every message is delivered
        assert wait_until(lambda: len(set(target.completed)) >= count, 120)
        recovered = time.monotonic() - began
        assert wait_until(lambda: counter("silobridge_in_flight", route=route) == 0, 30)
        assert wait_until(lambda: queue_count(node.url, queue_name(route)) == 0, 30)
    finally:
        daemon.stop()
    completed = Counter(target.completed)
    lost = set(ids) - set(completed)
    duplicates = sum(n - 1 for n in completed.values())
    caught = counter("silobridge_messages_total", route=route, target="gated",
                     outcome="duplicate")
    assert not lost
    assert duplicates <= loaded.config.broker.prefetch
    record("node_restart", observed=f"{count} events, {held} ready and 200 in flight when "
           f"the node was stopped (`rabbitmqctl stop`) and started ({restarted:.0f} s); all "
           f"delivered {recovered:.0f} s after the stop; the window in flight was answered "
           f"while the node was down, its {caught:.0f} redeliveries acked as duplicates, "
           f"{duplicates} delivered twice",
           lost=len(lost), duplicates=duplicates, recovery_seconds=round(recovered, 1))

