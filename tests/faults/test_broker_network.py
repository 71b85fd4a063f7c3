"""Faults of the network between silobridge and RabbitMQ, through the fault proxy (issue 13).

Only the daemon's own connections pass through the proxy; the test's producer and readers use
the broker directly, so a fault hits exactly what it is meant to hit.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import structlog

from middleware.broker.rabbitmq.publisher import Publisher
from middleware.config.loader import LoadedConfig
from middleware.config.models import BrokerConfig
from middleware.daemon import Daemon, Role
from middleware.errors import SilobridgeError
from tests.faults.conftest import proxied, size
from tests.faults.proxy import FaultProxy
from tests.faults.results import record
from tests.integration.helpers import counter, drain, publish_events, queue_count, wait_until
from tests.integration.rest_helpers import endpoint
from tests.integration.test_pipeline import amqp_route

HEARTBEAT = 2


def _broker(url: str, **extra: Any) -> dict[str, Any]:
    return {"url": url, "prefetch": 200, "publish_timeout": 3, "heartbeat": HEARTBEAT,
            "reconnect_max_delay": 2, "connect_timeout": 3, **extra}


class _Sender:
    """Posts numbered events at a fixed rate; a 503 is retried later, as a sender must."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.rate = url, rate
        self.accepted: set[str] = set()
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Sender:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        pending: list[str] = []
        n = 0
        with httpx.Client(timeout=10) as client:
            began = time.monotonic()
            while not self._stop.is_set() or pending:
                if self._stop.is_set():
                    key = pending.pop(0)
                else:
                    n += 1
                    key = f"C-{n}"
                    if pending and n % 5 == 0:  # retry refused ones in between
                        pending.append(key)
                        key = pending.pop(0)
                try:
                    status = client.post(self.url, json={"customer_no": key},
                                         headers={"X-Request-Id": key}).status_code
                except httpx.HTTPError:
                    status = 0
                if status == 202:
                    self.accepted.add(key)
                else:
                    self.refused += 1
                    pending.append(key)
                    if self._stop.is_set():
                        time.sleep(0.05)
                time.sleep(max(0.0, began + n / self.rate - time.monotonic()))


def _delivered(amqp_url: str, queue: str) -> Counter[str]:
    return Counter(orjson.loads(body)["data"]["customer_no"] for _, body in drain(amqp_url, queue))


def test_partition_is_detected_within_two_heartbeats_and_nothing_is_lost(
    amqp_url: str, prefix: str, broker_proxy: FaultProxy,
    make_config: Callable[..., LoadedConfig],
) -> None:
    # Given a daemon (ingress and worker) whose broker connections pass through the proxy
    seconds, rate = size("partition_seconds", 10), size("partition_rate", 100)
    section = endpoint(prefix, "hook", dedupe={"header": "X-Request-Id"})
    loaded = make_config([amqp_route(prefix)], inbound=[section],
                         broker=_broker(proxied(amqp_url, broker_proxy)))
    daemon = Daemon(loaded, Role.ALL)
    daemon.start()
    try:
        assert daemon.ingress is not None
        url = f"http://127.0.0.1:{daemon.ingress.port}{section['path']}"
        with _Sender(url, rate) as sender:
            assert wait_until(lambda: len(sender.accepted) >= rate, 30)
            # When the network swallows everything, without a FIN or an RST
            broker_proxy.blackhole()
            began = time.monotonic()
            # Then the daemon notices within twice the heartbeat and says so
            assert wait_until(lambda: not all(daemon.readiness().values()), 3 * HEARTBEAT,
                              step=0.05)
            detected = time.monotonic() - began
            assert detected <= 2 * HEARTBEAT + 0.5, f"silent broker noticed after {detected:.1f} s"
            # And the ingress refuses (503) rather than accepting what it cannot store
            refused_before = sender.refused
            assert wait_until(lambda: sender.refused > refused_before, 5)
            ops = f"http://127.0.0.1:{daemon.ops.port}/readyz"
            assert httpx.get(ops, timeout=2).status_code == 503
            time.sleep(max(0.0, seconds - (time.monotonic() - began)))
            broker_proxy.heal()
            healed = time.monotonic()
            # And it reconnects by itself once the network is back
            assert wait_until(lambda: all(daemon.readiness().values()), 30, step=0.05)
            recovered = time.monotonic() - healed
        # And every accepted event reaches the target
        assert wait_until(lambda: queue_count(amqp_url, f"{prefix}.out") >= len(sender.accepted),
                          60)
        assert wait_until(lambda: queue_count(amqp_url, f"silobridge.route.{prefix}-r") == 0, 30)
    finally:
        daemon.stop()
    delivered = _delivered(amqp_url, f"{prefix}.out")
    lost = sender.accepted - set(delivered)
    duplicates = sum(n - 1 for n in delivered.values())
    assert not lost
    assert duplicates <= loaded.config.broker.prefetch
    record("partition", observed=f"{seconds:g} s partition at {rate:g} events/s "
           f"(heartbeat {HEARTBEAT} s): not ready after {detected:.1f} s, {sender.refused} "
           f"requests answered 503 and retried, {len(sender.accepted)} accepted",
           lost=len(lost), duplicates=duplicates, recovery_seconds=round(recovered, 1))


def test_blackholed_listener_fails_startup_within_connect_timeout(
    amqp_url: str, prefix: str, broker_proxy: FaultProxy,
    make_config: Callable[..., LoadedConfig],
) -> None:
    # Given a broker address that accepts TCP connections and never answers
    broker_proxy.blackhole()
    loaded = make_config([amqp_route(prefix)],
                         broker=_broker(proxied(amqp_url, broker_proxy), connect_timeout=2))
    daemon = Daemon(loaded, Role.WORKER)
    # When the daemon starts, each attempt fails within connect_timeout with a clear message
    failures: list[float] = []
    began = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        starter = threading.Thread(target=lambda: _start_expecting_stop(daemon), daemon=True)
        starter.start()
        assert wait_until(lambda: any(e["event"] == "broker unreachable" for e in logs), 10)
        failures.append(time.monotonic() - began)
        # And meanwhile its HTTP thread answers at once, truthfully: not ready
        ops = f"http://127.0.0.1:{daemon.ops.port}/readyz"
        answered = time.monotonic()
        assert httpx.get(ops, timeout=2).status_code == 503
        http_seconds = time.monotonic() - answered
        daemon.stop()
        starter.join(15)
    failure = next(e for e in logs if e["event"] == "broker unreachable")
    assert "timeout" in failure["error"].lower() or "timed out" in failure["error"].lower()
    assert failures[0] <= 2 + 1.5
    assert broker_proxy.accepted >= 1  # the fault was in the path: TCP was accepted
    assert http_seconds < 1
    record("blackhole_listener", observed=f"first attempt failed after {failures[0]:.1f} s "
           f"(connect_timeout 2 s), logged as 'broker unreachable: "
           f"{failure['error'].split('(')[0]}'; /readyz answered 503 in "
           f"{http_seconds * 1000:.0f} ms meanwhile", lost=0, duplicates=0,
           recovery_seconds=None)


def _start_expecting_stop(daemon: Daemon) -> None:
    with contextlib.suppress(SilobridgeError):  # "stopped before the broker became reachable"
        daemon.start()


def test_cuts_in_the_middle_of_frames_lose_nothing(
    amqp_url: str, prefix: str, broker_proxy: FaultProxy,
    make_config: Callable[..., LoadedConfig],
) -> None:
    # Given a worker consuming a backlog through the proxy
    cuts, per_cut = int(size("cuts", 8)), int(size("messages_per_cut", 400))
    loaded = make_config([amqp_route(prefix)], broker=_broker(proxied(amqp_url, broker_proxy)))
    route = f"{prefix}-r"
    daemon = Daemon(loaded, Role.WORKER)
    daemon.start()
    began = time.monotonic()
    ids: list[str] = []
    try:
        for n in range(cuts):
            # When its connections are reset in the middle of a frame while messages flow
            assert wait_until(lambda: all(daemon.readiness().values()), 30)
            before = broker_proxy.cuts
            broker_proxy.cut_after(300 + 797 * n, "downstream", "reset")  # armed, then fed
            ids += publish_events(amqp_url, prefix, per_cut)
            assert wait_until(lambda b=before: broker_proxy.cuts > b, 10), f"cut {n} missed"
        # Then it recovers every time and finishes the backlog
        assert wait_until(lambda: queue_count(amqp_url, f"silobridge.route.{route}") == 0, 90)
        assert wait_until(lambda: all(daemon.readiness().values()), 30)
        # nothing in flight any more (the queue count leaves out unacked messages), and every
        # event published to the target's queue; should one be lost, the check below says which
        assert wait_until(lambda: counter("silobridge_in_flight", route=route) == 0, 30)
        wait_until(lambda: queue_count(amqp_url, f"{prefix}.out") >= len(ids), 30)
    finally:
        daemon.stop()
    elapsed = time.monotonic() - began
    received = Counter(props.message_id for props, _ in drain(amqp_url, f"{prefix}.out"))
    lost = set(ids) - set(received)
    extra = sum(n - 1 for n in received.values())
    assert not lost
    assert extra <= loaded.config.broker.prefetch * broker_proxy.cuts
    duplicates_caught = counter("silobridge_messages_total", route=route, target="amqp",
                                outcome="duplicate")
    record("cut_mid_frame", observed=f"{broker_proxy.cuts} resets mid-frame in {elapsed:.0f} s "
           f"over {len(ids)} messages; {duplicates_caught:.0f} redeliveries acked as duplicates "
           "by the idempotency check", lost=len(lost), duplicates=extra,
           recovery_seconds=None)


def test_stopped_publisher_closes_its_socket(amqp_url: str, broker_proxy: FaultProxy) -> None:
    # Given publishers that connect through the proxy and are stopped again
    for n in range(5):
        publisher = Publisher(BrokerConfig(url=proxied(amqp_url, broker_proxy)), name=f"stop-{n}")
        assert publisher.start(wait=10)
        publisher.stop()
    # Then none of their connections stays open (before: one socket leaked per publisher)
    assert broker_proxy.accepted == 5
    assert wait_until(lambda: broker_proxy.open == 0, 5), f"{broker_proxy.open} still open"
