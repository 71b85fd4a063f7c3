"""Loopback ports for servers a test starts, restarts and finds again."""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range, never handed out twice.

    A port the kernel picked (bind to 0) lies in the ephemeral range, where any outgoing
    connection of the test run (pika, httpx) may take it as its source port before a daemon,
    restarted on the same port after a kill, binds it again: 'address already in use' in CI.
    """
    low = int(_RANGE.read_text().split()[0]) if _RANGE.exists() else 32768
    for _ in range(1000):
        port = random.randrange(10000, low)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in 10000-{low}")
