"""Stopping and starting the real RabbitMQ application for recovery tests.

Only the application stops (``stop_app``), not the Erlang node, so the broker comes back within
seconds with its durable queues. ``restored`` always starts it again, even when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pika
import pika.exceptions
import pytest


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def require_rabbitmqctl() -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not available (broker not local)")


def stop_broker() -> None:
    _ctl("stop_app")


def start_broker() -> None:
    """Start the application and wait until route queues can be declared; if the quorum-queue
    subsystem came back wedged (RabbitMQ 3.10 does that now and then), restart the app once."""
    for attempt in range(2):
        _ctl("start_app")
        _ctl("await_startup", "--timeout", "120")
        try:
            wait_for_quorum_queues(30)
            return
        except (pika.exceptions.AMQPError, OSError):
            if attempt:
                raise
            _ctl("stop_app")


def wait_for_quorum_queues(timeout: float = 60) -> None:
    """Block until a route queue (quorum, at-least-once dead-lettering) can be declared.

    After ``start_app`` RabbitMQ 3.10 accepts connections before all of its quorum-queue
    processes run (the at-least-once dead-letter workers come last); until they do, declaring
    such a queue fails with INTERNAL_ERROR (541), which would fail whichever test comes next.
    """
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(url))
            channel = connection.channel()
            name = f"health.{uuid.uuid4().hex[:8]}"
            channel.queue_declare(name, durable=True, arguments={
                "x-queue-type": "quorum", "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": f"{name}.dlq",
                "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
            })
            channel.queue_delete(name)
            connection.close()
            return
        except (pika.exceptions.AMQPError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@contextlib.contextmanager
def restored() -> Iterator[None]:
    """Whatever happens inside, the broker application runs again afterwards."""
    try:
        yield
    finally:
        start_broker()
