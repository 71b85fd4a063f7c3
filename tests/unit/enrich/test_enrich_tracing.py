"""Enrich steps in a message's trace: one ``enrich`` span for the steps before the mapping and
one for those after it, between the consume span's ``map`` and ``deliver``; a failing step is
the enrich span that failed, followed by the dead-letter span."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from middleware.adapter import Delivered
from middleware.broker.topology import dlq_name
from middleware.envelope import Envelope
from tests.integration.rest_helpers import Peer
from tests.tracing_helpers import hexid, names, parent_of, traced
from tests.unit.enrich.helpers import enriched_route
from tests.unit.enrich.test_enrich_rest import GET, crm, hook, system
from tests.unit.pipeline_helpers import Scripted, take, wait_until


class Recording(Scripted):
    """A scripted target that keeps the trace context each call was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.traceparents: list[str | None] = []

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        self.traceparents.append(envelope.traceparent)
        return super().deliver(envelope, payload)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with traced() as spans:
        yield spans


def _consumed(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    assert wait_until(lambda: any(s.name == "consume" for s in exporter.get_finished_spans()))
    return list(exporter.get_finished_spans())


def _under_consume(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    (consume,) = [span for span in spans if span.name == "consume"]
    return sorted((span for span in spans if parent_of(span) == consume.context.span_id),
                  key=lambda span: span.start_time or 0)


def test_enrich_tracing_steps_before_and_after_the_mapping_are_spans(
    exporter: InMemorySpanExporter, tmp_path: Path, prefix: str
) -> None:
    target = Recording()
    steps = [{"system": "crm", "get": GET, "into": "contact"},
             {"system": "crm", "get": GET, "into": "again", "after_mapping": True}]
    with Peer(crm) as peer, enriched_route(tmp_path, prefix, system(peer.url), steps,
                                           target=target) as r:
        r.route.send(hook(prefix, 123))
        assert wait_until(lambda: len(target.calls) == 1)
        spans = _consumed(exporter)
    children = _under_consume(spans)
    assert names(children) == ["enrich", "map", "enrich", "deliver"]
    before, _, after, deliver = children
    assert (before.attributes or {})["silobridge.enrich.phase"] == "before_mapping"
    assert (after.attributes or {})["silobridge.enrich.phase"] == "after_mapping"
    assert all((span.attributes or {})["silobridge.outcome"] == "ok"
               for span in children[:3])
    # the phases follow each other: each ends before the next starts
    assert all((a.end_time or 0) <= (b.start_time or 0) for a, b in pairwise(children))
    assert target.traceparents == [
        f"00-{hexid(deliver.context.trace_id, 32)}-{hexid(deliver.context.span_id, 16)}-"
        f"{int(deliver.context.trace_flags):02x}"]


def test_enrich_tracing_a_failing_step_is_the_enrich_span_that_failed(
    exporter: InMemorySpanExporter, tmp_path: Path, prefix: str
) -> None:
    with Peer(crm) as peer, enriched_route(
            tmp_path, prefix, system(peer.url),
            [{"system": "crm", "get": GET, "into": "contact"}]) as r:
        r.route.send(hook(prefix, 404))
        take(r.route.broker, dlq_name(prefix), 1)
        spans = _consumed(exporter)
    children = _under_consume(spans)
    assert names(children) == ["enrich", "dead-letter"]
    enrich, letter = children
    assert enrich.status.status_code is StatusCode.ERROR
    assert (enrich.attributes or {})["error.type"] == "EnrichError"
    assert (letter.attributes or {})["silobridge.failed_stage"] == "enrich"
