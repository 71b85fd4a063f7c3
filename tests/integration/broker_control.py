"""Stopping and starting the real RabbitMQ application for recovery tests.

Only the application stops (``stop_app``), not the Erlang node, so the broker comes back within
seconds with its durable queues. ``restored`` always starts it again, even when a test fails.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def require_rabbitmqctl() -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not available (broker not local)")


def stop_broker() -> None:
    _ctl("stop_app")


def start_broker() -> None:
    _ctl("start_app")
    _ctl("await_startup", "--timeout", "120")


@contextlib.contextmanager
def restored() -> Iterator[None]:
    """Whatever happens inside, the broker application runs again afterwards."""
    try:
        yield
    finally:
        start_broker()
