"""A hostile Content-Type no longer stalls the daemon (issue 11, finding 2), end to end.

The filed case: a 20 kB ``Content-Type`` of ``a-a-a-...`` was accepted, refused with 415, and
the log line quoting it took the masking 27 s, holding the GIL: every endpoint and ``/readyz``
stalled. Now such a header is refused with 431 at once, and even where the header limit is
raised, masking the 415's log line is linear: ``/readyz`` answers while it is handled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DaemonProcess, free_port
from tests.integration.rest_helpers import catch_all_route, endpoint

pytestmark = pytest.mark.e2e


def _hostile_post(url: str, content_type: str, result: dict[str, Any]) -> None:
    started = time.monotonic()
    response = httpx.post(url, content=b"{}", headers={"Content-Type": content_type}, timeout=60)
    result.update(status=response.status_code, seconds=time.monotonic() - started,
                  body=response.json())


def _readyz_while_hostile(daemon: DaemonProcess, url: str, content_type: str) -> dict[str, Any]:
    """Send the hostile request; meanwhile time /readyz. Returns the hostile request's result."""
    result: dict[str, Any] = {}
    sender = threading.Thread(target=_hostile_post, args=(url, content_type, result))
    sender.start()
    time.sleep(0.05)
    started = time.monotonic()
    ready = httpx.get(f"http://127.0.0.1:{daemon.ops_port}/readyz", timeout=60)
    readyz_seconds = time.monotonic() - started
    sender.join(60)
    assert ready.status_code == 200
    assert readyz_seconds < 1.0, f"/readyz took {readyz_seconds:.1f}s"
    return result


@pytest.mark.parametrize(
    ("http_limits", "size", "status"),
    [
        ({}, 20_000, 431),  # the filed case, under the default limits
        ({"max_header_bytes": 131072, "max_head_bytes": 262144}, 100_000, 415),  # limits raised
    ],
)
def test_hostile_content_type_neither_stalls_the_daemon_nor_readyz(
    daemon_process: Callable[..., DaemonProcess], prefix: str, out_queue: str,
    http_limits: dict[str, int], size: int, status: int,
) -> None:
    section = endpoint(prefix, "hostile")
    port = free_port()
    daemon = daemon_process([catch_all_route(prefix)], inbound=[section],
                            ingress={"port": port, "http": http_limits})
    daemon.start()
    daemon.wait_ready()
    url = f"http://127.0.0.1:{port}{section['path']}"
    result = _readyz_while_hostile(daemon, url, "a-" * (size // 2))
    assert result["status"] == status
    assert result["seconds"] < 3.0  # the old masking needed minutes for 100 kB
    # and the daemon still takes webhooks
    assert httpx.post(url, json={"customer_no": "C-1"}, timeout=10).status_code == 202
