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
