"""``silobridge run`` with only OTEL_* variables set exports its traces over OTLP/HTTP.

The daemon runs as a subprocess, configured for tracing by the environment alone, and exports
to a real OTLP receiver on loopback; a webhook with the caller's ``traceparent`` reaches a
loopback REST target. What arrives at the receiver is decoded with the OpenTelemetry protobuf
definitions: every stage as a span, in the caller's trace, under the configured service name,
with the spans still queued at SIGTERM exported before the process exits.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.requests import Request
from starlette.responses import Response

from tests.e2e.conftest import DaemonProcess
from tests.integration.helpers import wait_until
from tests.integration.rest_helpers import Peer, endpoint, json_response
from tests.tracing_helpers import OtlpReceiver

pytestmark = pytest.mark.e2e

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER = f"00-{CALLER_TRACE}-b7ad6b7169203331-01"


def test_tracing_daemon_exports_one_trace_over_otlp_configured_by_the_environment(
    prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    daemon_process: Callable[..., DaemonProcess],
) -> None:
    received: list[dict[str, str]] = []

    async def erp(request: Request, body: bytes) -> Response:
        received.append(dict(request.headers))
        return json_response({"id": "ERP-9"}, status=201)

    with OtlpReceiver() as receiver, Peer(erp) as peer:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", f"sb-{prefix}")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # only the exit flush exports
        route: dict[str, Any] = {"name": f"{prefix}-erp", "bind": [f"{prefix}.customer.*"],
                                 "target": {"type": "rest", "url": f"{peer.url}/erp"}}
        daemon = daemon_process([route], inbound=[endpoint(prefix, "hook")])
        port = yaml.safe_load(daemon.config.read_text())["ingress"]["port"]
        daemon.start()
        daemon.wait_ready()
        answer = httpx.post(f"http://127.0.0.1:{port}/hooks/{prefix}/hook",
                            json={"customer_no": "C-9"}, headers={"traceparent": CALLER})
        assert answer.status_code == 202, answer.text
        assert wait_until(lambda: len(received) == 1, 20)
        assert receiver.spans() == []  # nothing exported before the batch is due
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        spans = receiver.spans()
    assert received[0]["traceparent"].startswith(f"00-{CALLER_TRACE}-")
    assert {span.service for span in spans} == {f"sb-{prefix}"}
    assert {span.trace_id for span in spans} == {CALLER_TRACE}
    assert sorted(span.name for span in spans) == sorted(
        ["receive", "publish", "consume", "map", "deliver"])
    deliver = next(span for span in spans if span.name == "deliver")
    assert received[0]["traceparent"] == f"00-{CALLER_TRACE}-{deliver.span_id}-01"
    assert deliver.attributes["silobridge.route"] == f"{prefix}-erp"
