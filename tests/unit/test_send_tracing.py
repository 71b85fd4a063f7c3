"""``silobridge send`` with tracing on: the event starts a trace whose root is its publish span,
exported to a real OTLP/HTTP receiver on loopback before the command returns, written into the
envelope a route then consumes, and named on the command's output. Off, the envelope carries
no trace context. The broker is the in-memory one (the command's ``connect`` is replaced)."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson
import pytest

import middleware.cli.send
from middleware.adapter import Delivered
from middleware.cli import main
from middleware.envelope import Envelope
from tests.tracing_helpers import OtlpReceiver
from tests.unit.pipeline_helpers import Scripted, running_route, wait_until


class _Keeping(Scripted):
    """A target that keeps the traceparent of each envelope it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.traceparents: list[str | None] = []

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        self.traceparents.append(envelope.traceparent)
        return super().deliver(envelope, payload)


def _send(tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str | None]]:
    """Run ``silobridge send`` into route ``<prefix>``: (exit code, stdout, what it got)."""
    data = tmp_path / "customer.json"
    data.write_bytes(orjson.dumps({"customer_no": "C-1"}))
    target = _Keeping()
    with running_route(tmp_path, prefix, target) as route:
        monkeypatch.setattr(middleware.cli.send, "connect", lambda config: route.broker)
        code = main(["send", str(data), "--type", f"{prefix}.customer.updated"])
        assert wait_until(lambda: len(target.calls) == 1)
    return code, capsys.readouterr().out, target.traceparents


def test_send_tracing_starts_a_trace_rooted_in_the_publish_span_and_exports_it(
    tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        code, out, got = _send(tmp_path, prefix, monkeypatch, capsys)
        spans = receiver.spans()  # exported before the command returned
    assert code == 0
    (span,) = spans
    assert (span.name, span.parent_id) == ("publish", "")  # the root of a new trace
    assert span.attributes["silobridge.adapter"] == "cli"
    assert span.attributes["silobridge.outcome"] == "published"
    (traceparent,) = got  # the envelope the route consumed names the publish span
    assert traceparent is not None and traceparent[:52] == f"00-{span.trace_id}-{span.span_id}"
    assert out.strip().endswith(f"trace_id={span.trace_id}")


def test_send_tracing_off_sends_no_trace_context(
    tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    code, out, got = _send(tmp_path, prefix, monkeypatch, capsys)
    assert code == 0 and got == [None]
    assert "trace_id" not in out
