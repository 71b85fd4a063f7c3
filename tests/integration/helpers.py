"""Small helpers for broker tests: publish events, wait for and read queues, test targets."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ClassVar, Literal

import pika
from prometheus_client import REGISTRY
from pydantic import ConfigDict

from middleware.adapter import AdapterConfig, AdapterContext, Delivered
from middleware.broker.ingest import publish_envelopes
from middleware.broker.rabbitmq.publisher import Publisher
from middleware.broker.topology import queue_name, retry_name
from middleware.config.models import BrokerConfig
from middleware.envelope import Envelope
from middleware.errors import DeliveryError
from middleware.plugins import AdapterSpec, register


def publish_events(url: str, prefix: str, count: int, entity: str = "customer") -> list[str]:
    """Publish ``count`` envelopes of type ``<prefix>.<entity>.updated``, all confirmed."""
    publisher = Publisher(BrokerConfig(url=url))
    assert publisher.start(wait=10), "cannot connect to the broker"
    envelopes = [
        Envelope.new(source="crm/test", type=f"{prefix}.{entity}.updated", subject=f"C-{n}",
                     data={"customer_no": f"C-{n}", "n": n})
        for n in range(count)
    ]
    try:
        publish_envelopes(publisher, envelopes, timeout=60)
    finally:
        publisher.stop()
    return [envelope.id for envelope in envelopes]


def queue_count(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True)
                   .method.message_count)
    finally:
        connection.close()


def waiting(url: str, route: str, tiers: int) -> dict[str, int]:
    """Messages ready in a route's queue and its retry tiers, by queue (empty queues left out).

    Read after a sentinel came through, an empty answer shows no copy is parked in a retry tier,
    where a late duplicate waits out its delay off the sentinel's path.
    """
    names = [queue_name(route), *(retry_name(route, n) for n in range(1, tiers + 1))]
    counts = {name: queue_count(url, name) for name in names}
    return {name: count for name, count in counts.items() if count}


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def drain(url: str, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
    """Take (and ack) every message of a queue."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    out = []
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        out.append((props, body))
    connection.close()
    return out


def publish_sentinel(url: str, prefix: str, entity: str = "customer") -> str:
    """Publish one more event, behind everything published so far, and return its id.

    A test that must show something did *not* happen waits for the sentinel to come out instead
    of sleeping: whatever was queued ahead of it on the same path has been handled by then, so a
    count taken after it is evidence, where a count taken after a pause only hopes the pause was
    long enough (and passes when the unwanted message is merely late).
    """
    [sentinel] = publish_events(url, prefix, 1, entity)
    return sentinel


def take_until(
    url: str, queue: str, is_sentinel: Callable[[pika.BasicProperties, bytes], bool],
    timeout: float = 30,
) -> list[tuple[pika.BasicProperties, bytes]]:
    """Take (and ack) messages of a queue up to and including a sentinel; return those before it.

    Fails when the sentinel does not come within ``timeout``. What arrives behind the sentinel
    stays in the queue, for the test to count.
    """
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        before: list[tuple[pika.BasicProperties, bytes]] = []
        deadline = time.monotonic() + timeout
        while True:
            method, props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                assert time.monotonic() < deadline, (
                    f"the sentinel did not reach {queue} within {timeout}s "
                    f"({len(before)} messages before it)")
                time.sleep(0.05)
                continue
            if is_sentinel(props, body):
                return before
            before.append((props, body))
    finally:
        connection.close()


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class ScriptedConfig(AdapterConfig):
    model_config = ConfigDict(extra="forbid")
    type: Literal["scripted"] = "scripted"
    name: str


class ScriptedTarget:
    """A real outbound adapter whose answers a test scripts: fail N times, then accept.

    ``failures[envelope id]`` says how many more calls fail; ``retryable`` how they fail.
    Calls are recorded with their time so tests can check backoff.
    """

    instances: ClassVar[dict[str, ScriptedTarget]] = {}

    def __init__(self, config: ScriptedConfig) -> None:
        self.calls: list[tuple[str, float]] = []
        self.accepted: list[str] = []
        self.failures: dict[str, int] = {}
        self.fail_all = 0
        self.retryable = True
        self._lock = threading.Lock()
        ScriptedTarget.instances[config.name] = self

    def start(self, context: AdapterContext) -> None:
        """Nothing to open."""

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        future: Future[Delivered] = Future()
        with self._lock:
            self.calls.append((envelope.id, time.monotonic()))
            left = self.failures.get(envelope.id, self.fail_all)
            if left > 0:
                self.failures[envelope.id] = left - 1
                future.set_exception(DeliveryError(
                    "scripted failure", retryable=self.retryable,
                    details={"status": "503" if self.retryable else "400"}))
            else:
                self.accepted.append(envelope.id)
                future.set_result(Delivered(response={"id": f"ERP-{envelope.subject}"}))
        return future

    def close(self) -> None:
        """Nothing to release."""


def _scripted(config: AdapterConfig) -> ScriptedTarget:
    assert isinstance(config, ScriptedConfig)
    return ScriptedTarget(config)


register(AdapterSpec("scripted", outbound_config=ScriptedConfig, outbound=_scripted))
