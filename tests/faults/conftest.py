"""Fault fixtures: a fault proxy in front of the shared RabbitMQ, and sizes from the environment.

The proxy only ever touches connections that pass through it, so these cases run against the
shared broker without disturbing anyone else's tests. Cases that change broker-wide settings or
restart a node use a node of their own (``tests/integration/extra_node.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.faults.proxy import FaultProxy
from tests.integration.conftest import make_config, run_daemon  # noqa: F401  (fixtures)


def size(name: str, default: float) -> float:
    """A case's size: CI-sized by default, full-size from ``FAULTS_<NAME>`` (bench/RESULTS.md)."""
    return float(os.environ.get(f"FAULTS_{name.upper()}", default))


@pytest.fixture
def broker_proxy(amqp_url: str) -> Iterator[FaultProxy]:
    """A fault proxy to the broker at ``amqp_url``; ``proxied(amqp_url, proxy)`` is its URL."""
    parts = urlsplit(amqp_url)
    with FaultProxy(parts.port or 5672, parts.hostname or "127.0.0.1") as proxy:
        yield proxy


def proxied(url: str, proxy: FaultProxy) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()
