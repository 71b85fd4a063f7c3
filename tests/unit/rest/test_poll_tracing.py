"""A scheduled poll while tracing is on: each published record starts a trace of its own, whose
root is its publish span, so the consume span of every route it reaches has a parent (a real
HTTP API on loopback, the in-memory broker, a route with a scripted target); ``silobridge poll
--once`` exports those spans to a real OTLP/HTTP receiver on loopback before it exits."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from starlette.requests import Request
from starlette.responses import Response

import adapters.rest.cli
from adapters.rest.poll import Poller
from adapters.rest.poll_config import PollConfig
from middleware.adapter import AdapterContext, Delivered
from middleware.broker.memory import MemoryBroker
from middleware.broker.topology import queue_name
from middleware.cli import main
from middleware.config.models import BrokerConfig
from middleware.envelope import Envelope
from tests.integration.rest_helpers import Peer, json_response
from tests.tracing_helpers import OtlpReceiver, parent_of, traced
from tests.unit.pipeline_helpers import Scripted, running_route, take, wait_until

RECORDS = [{"no": f"C-{n}", "name": f"Customer {n}"} for n in range(3)]


async def _api(request: Request, body: bytes) -> Response:
    return json_response({"items": RECORDS})


class _Keeping(Scripted):
    """A target that keeps the traceparent of each envelope it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.traceparents: list[str | None] = []

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        self.traceparents.append(envelope.traceparent)
        return super().deliver(envelope, payload)


@contextmanager
def _polled(tmp_path: Path, prefix: str) -> Iterator[_Keeping]:
    """One poll run of the API into route ``<prefix>``, which delivers every record."""
    target = _Keeping()
    with Peer(_api) as api, running_route(tmp_path, prefix, target) as route:
        poller = Poller(PollConfig.model_validate({
            "type": "poll", "name": f"{prefix}-customers", "schedule": "0 2 * * *",
            "system": prefix, "url": f"{api.url}/customers", "records": "items",
            "derive": {"entity": {"value": "customer"}, "action": {"value": "updated"},
                       "subject": {"path": "no"}}}))
        poller.open(AdapterContext(publisher=route.publisher, broker=BrokerConfig(),
                                   stores=route.stores, base_dir=tmp_path))
        try:
            assert poller.run_once().published == len(RECORDS)
        finally:
            poller.close()
        assert wait_until(lambda: len(target.calls) == len(RECORDS))
        yield target


def test_poll_tracing_each_record_is_a_trace_rooted_in_its_publish_span(
    tmp_path: Path, prefix: str
) -> None:
    with traced() as exporter, _polled(tmp_path, prefix):
        assert wait_until(lambda: sum(s.name == "consume" for s in exporter.get_finished_spans())
                          == len(RECORDS))
        spans = list(exporter.get_finished_spans())
    publish = [span for span in spans if span.name == "publish"]
    consume = [span for span in spans if span.name == "consume"]
    assert len(publish) == len(RECORDS) and all(span.parent is None for span in publish)
    assert len({span.context.trace_id for span in publish}) == len(RECORDS)  # one trace each
    assert all((span.attributes or {})["silobridge.outcome"] == "published" for span in publish)
    assert {(span.attributes or {})["silobridge.adapter"] for span in publish} == {"poll"}
    # each route's consume span continues the publish span of its record
    assert sorted((span.context.trace_id, parent_of(span)) for span in consume) == sorted(
        (span.context.trace_id, span.context.span_id) for span in publish)


def test_poll_tracing_off_publishes_records_without_a_trace_context(
    tmp_path: Path, prefix: str
) -> None:
    with _polled(tmp_path, prefix) as target:
        assert target.traceparents == [None] * len(RECORDS)


def test_poll_tracing_the_poll_command_exports_a_trace_per_record(
    tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    brokers: list[MemoryBroker] = []

    def memory(config: Any, topology: Any) -> MemoryBroker:
        brokers.append(MemoryBroker(topology))
        return brokers[-1]

    monkeypatch.setattr(adapters.rest.cli, "connect", memory)
    with Peer(_api) as api, OtlpReceiver() as receiver:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({
            "store": {"path": str(tmp_path / "store.db")},
            "inbound": [{"type": "poll", "name": "customers", "schedule": "0 2 * * *",
                         "system": prefix, "url": f"{api.url}/customers", "records": "items",
                         "derive": {"entity": {"value": "customer"},
                                    "action": {"value": "updated"}, "subject": {"path": "no"}}}],
            "routes": [{"name": prefix, "bind": [f"{prefix}.customer.*"],
                        "target": {"type": "rest", "url": f"{api.url}/erp"}}]}))
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        assert main(["poll", "customers", "--once", "-c", str(config)]) == 0, capsys.readouterr()
        spans = receiver.spans()  # exported before the command returned
    assert [(span.name, span.parent_id) for span in spans] == [("publish", "")] * len(RECORDS)
    queued = take(brokers[0], queue_name(prefix), len(RECORDS))
    assert sorted(orjson.loads(d.body)["traceparent"][3:52] for d in queued) == sorted(
        f"{span.trace_id}-{span.span_id}" for span in spans)
