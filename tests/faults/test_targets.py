"""Case 9 (targets): a REST target that misbehaves at the HTTP level, through the fault proxy.

Each fault is classified as adapters/_http.py documents it (timeouts, connection and protocol
errors retryable; 2xx delivered), no worker waits on a target past its ``timeout``, and the
daemon leaves no thread or socket behind (counted before it starts and after it stops).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.faults.proxy import FaultProxy
from tests.faults.results import record
from tests.integration.helpers import counter, publish_events, wait_until
from tests.integration.rest_helpers import Peer

TIMEOUT = 2.0
_OBSERVED: dict[str, str] = {}


async def _answer(request: Request, _body: bytes) -> Response:
    if request.url.path.endswith("/html"):
        return Response("<html><body>Welcome</body></html>", media_type="text/html")
    return Response(b'{"id": "ERP-1", "pad": "' + b"x" * 20_000 + b'"}',
                    media_type="application/json")


@pytest.fixture
def peer_proxy() -> Iterator[tuple[Peer, FaultProxy]]:
    with Peer(_answer) as peer, FaultProxy(int(peer.url.rsplit(":", 1)[1])) as proxy:
        yield peer, proxy


def _fds() -> int:
    return len(_fd_targets())


def _leaked(before: list[str]) -> str:
    """The fds opened since ``before``, sockets described by their /proc/net line."""
    sockets = _inodes()
    return str([sockets.get(t.removeprefix("socket:[").rstrip("]"), t)
                for t in sorted(set(_fd_targets()) - set(before))])


def _inodes() -> dict[str, str]:
    table = {}
    for kind in ("tcp", "tcp6", "unix", "udp"):
        with open(f"/proc/net/{kind}") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                inode = cols[6] if kind == "unix" else cols[9]
                table[inode] = f"{kind} {cols[1]} {cols[2]} {cols[3]}"
    return table


def _fd_targets() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return sorted(out)


def _route(prefix: str, url: str) -> dict[str, Any]:
    return {"name": f"{prefix}-r", "bind": [f"{prefix}.customer.*"],
            "target": {"type": "rest", "method": "POST", "url": url, "timeout": TIMEOUT}}


FAULTS: dict[str, tuple[str, Callable[[FaultProxy], None], str]] = {
    # name: (path, how to break the proxy, expected outcome)
    "never_answers": ("/erp", lambda p: p.blackhole(), "retried"),
    "half_body_then_close": ("/erp", lambda p: p.cut_after(8000, "downstream", "close"),
                             "retried"),
    "one_byte_per_second": ("/erp", lambda p: p.bandwidth(1), "retried"),
    "html_with_200": ("/html", lambda p: None, "delivered"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_rest_target_fault_is_classified_without_stuck_workers_or_leaks(
    prefix: str, peer_proxy: tuple[Peer, FaultProxy],
    make_config: Callable[..., LoadedConfig], amqp_url: str, fault: str,
) -> None:
    peer, proxy = peer_proxy
    path, breaks, expected = FAULTS[fault]
    route = f"{prefix}-r"
    loaded = make_config([_route(prefix, f"http://127.0.0.1:{proxy.port}{path}")],
                         retry={"attempts": 2, "initial_delay": 0.3, "multiplier": 2})
    threads, named = threading.active_count(), _fd_targets()
    fds = len(named)
    daemon = Daemon(loaded, Role.WORKER)
    daemon.start()
    try:
        # Given the target answered one event normally (connections are pooled and warm)
        publish_events(amqp_url, prefix, 1, entity="customer")
        assert wait_until(lambda: len(peer.calls(path)) == 1, 10)
        assert wait_until(lambda: counter("silobridge_in_flight", route=route) == 0, 10)
        # When the target (or the way to it) breaks
        breaks(proxy)
        began = time.monotonic()
        publish_events(amqp_url, prefix, 1, entity="customer")
        # Then the event is classified as documented, within the target's timeout
        assert wait_until(lambda: _outcome(route, expected) >= 1, TIMEOUT + 5, step=0.02), {
            o: counter("silobridge_messages_total", route=route, target="rest", outcome=o)
            for o in ("delivered", "retried", "dead_lettered", "requeued")}
        decided = time.monotonic() - began
        assert decided <= TIMEOUT + 1.0, f"the worker waited {decided:.1f} s"
        assert wait_until(lambda: counter("silobridge_in_flight", route=route) == 0, 10)
    finally:
        proxy.heal()
        daemon.stop()
    # And nothing is left behind: no thread, no socket of the daemon's
    assert wait_until(lambda: threading.active_count() <= threads, 10), threading.enumerate()
    assert wait_until(lambda: _fds() <= fds + 2, 10), _leaked(named)
    _OBSERVED[fault] = f"{fault.replace('_', ' ')}: {expected} after {decided:.1f} s"
    if len(_OBSERVED) == len(FAULTS):
        record("rest_target", observed="; ".join(_OBSERVED[f] for f in FAULTS) +
               f" (timeout {TIMEOUT:g} s); threads and fds back to their count before",
               lost=0, duplicates=None, recovery_seconds=None)


def _outcome(route: str, outcome: str) -> float:
    baseline = 1.0 if outcome == "delivered" else 0.0  # the warm-up event was delivered
    return counter("silobridge_messages_total", route=route, target="rest",
                   outcome=outcome) - baseline
