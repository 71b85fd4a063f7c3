"""Shared fixtures: where the real RabbitMQ is, and per-test names that are cleaned up.

Integration tests use the broker at ``AMQP_URL`` (default the local one). Where none answers
and a Docker engine does, a testcontainers RabbitMQ is started once per session. Where neither
is available, broker tests skip locally but fail when ``CI`` is set: a CI run that silently
skipped every broker test would prove nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
_TIERS = {"integration": (pytest.mark.integration,), "e2e": (pytest.mark.e2e,),
          # the fault catalogue needs real brokers and servers: outside the fast loop too
          "faults": (pytest.mark.integration, pytest.mark.faults)}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test by its tier folder, so ``-m "not integration and not e2e"`` is the fast,
    broker-free loop. (A ``pytestmark`` in a conftest.py is not read by pytest: it marked
    nothing, and tier folders' tests without a mark of their own ran in the fast loop.)"""
    root = Path(__file__).parent
    for item in items:
        for mark in _TIERS.get(item.path.relative_to(root).parts[0], ()):
            item.add_marker(mark)


def _reachable(url: str) -> bool:
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except (pika.exceptions.AMQPError, OSError):
        return False
    return True


def _container_url() -> Iterator[str] | None:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
    except Exception:
        return None
    from testcontainers.rabbitmq import RabbitMqContainer  # type: ignore[import-untyped]

    def run() -> Iterator[str]:
        with RabbitMqContainer("rabbitmq:3.13-management") as container:
            params = container.get_connection_params()
            yield f"amqp://guest:guest@{params.host}:{params.port}/%2F"

    return run()


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    url = os.environ.get("AMQP_URL", DEFAULT_URL)
    if _reachable(url):
        yield url
        return
    container = _container_url()
    if container is not None:
        yield from container
        return
    message = f"no RabbitMQ at {url} and no Docker engine for testcontainers"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: broker tests must run)")
    pytest.skip(message)


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, usable in queue, exchange, route and event-type names."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def amqp_channel(amqp_url: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()
