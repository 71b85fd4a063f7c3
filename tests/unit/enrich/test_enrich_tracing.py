"""Enrich steps in a message's trace: one ``enrich`` span for the steps before the mapping and
one for those after it, between the consume span's ``map`` and ``deliver``; a failing step is
the enrich span that failed, followed by the dead-letter span. The requests of the steps (REST
against a loopback server, SOAP against spyne) carry a ``traceparent`` in the message's trace
naming the enrich span of their phase; none while tracing is off, never what a message claimed."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import StatusCode

from middleware.adapter import Delivered
from middleware.broker.topology import dlq_name
from middleware.envelope import Envelope
from tests.integration.nav_page import running_nav
from tests.integration.rest_helpers import Peer
from tests.tracing_helpers import hexid, names, parent_of, traced
from tests.unit.enrich.helpers import enriched_route
from tests.unit.enrich.test_enrich_rest import GET, crm, hook, system
from tests.unit.enrich.test_enrich_soap import READ_KEY, update
from tests.unit.enrich.test_enrich_soap import system as soap_system
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


# -- the trace context a step's request carries -------------------------------------------------

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"
"""The message's trace: what an ingress wrote into the envelope."""
BOTH = [{"system": "crm", "get": GET, "into": "contact"},
        {"system": "crm", "get": GET, "into": "again", "after_mapping": True}]


def _named(span: ReadableSpan) -> str:
    """The traceparent that names ``span`` as the parent."""
    return (f"00-{hexid(span.context.trace_id, 32)}-{hexid(span.context.span_id, 16)}-"
            f"{int(span.context.trace_flags):02x}")


def _sent(peer: Peer) -> list[tuple[str | None, str | None]]:
    return [(headers.get("traceparent"), headers.get("tracestate"))
            for _, _, headers, _ in peer.requests]


def _traced_hook(prefix: str, traceparent: str | None, tracestate: str | None) -> Envelope:
    envelope = hook(prefix, 123)
    envelope.traceparent, envelope.tracestate = traceparent, tracestate
    return envelope


def test_enrich_tracing_rest_requests_carry_the_message_trace_and_their_enrich_span(
    exporter: InMemorySpanExporter, tmp_path: Path, prefix: str
) -> None:
    with Peer(crm) as peer, enriched_route(tmp_path, prefix, system(peer.url), BOTH) as r:
        r.route.send(_traced_hook(prefix, CALLER, "vendor=abc"))
        assert wait_until(lambda: len(r.target.calls) == 1)
        spans = _consumed(exporter)
    before, _, after, _ = _under_consume(spans)
    assert before.context.trace_id == after.context.trace_id == int(CALLER_TRACE, 16)
    # each request names the enrich span of its own phase; the caller's tracestate goes on
    assert _sent(peer) == [(_named(before), "vendor=abc"), (_named(after), "vendor=abc")]


def test_enrich_tracing_soap_call_carries_the_message_trace_and_its_enrich_span(
    exporter: InMemorySpanExporter, tmp_path: Path, prefix: str
) -> None:
    with running_nav(tmp_path / "customer.wsdl") as (page, url):
        page.add("C1", "Ada")
        with enriched_route(tmp_path, prefix, soap_system(tmp_path / "customer.wsdl", url),
                            [READ_KEY]) as r:
            envelope = update(prefix, "C1")
            envelope.traceparent = CALLER
            r.route.send(envelope)
            assert wait_until(lambda: len(r.target.calls) == 1)
            spans = _consumed(exporter)
    _, enrich, _ = _under_consume(spans)  # map, enrich (after the mapping), deliver
    assert enrich.name == "enrich" and enrich.context.trace_id == int(CALLER_TRACE, 16)
    assert page.traced == [(_named(enrich), None)]


def test_enrich_tracing_off_sends_no_trace_context_to_systems(
    tmp_path: Path, prefix: str
) -> None:
    targets = [Recording(), Recording()]
    with running_nav(tmp_path / "customer.wsdl") as (page, url):
        page.add("C1", "Ada")
        with enriched_route(tmp_path, prefix, soap_system(tmp_path / "customer.wsdl", url),
                            [READ_KEY], target=targets[0]) as soap:
            envelope = update(prefix, "C1")
            envelope.traceparent, envelope.tracestate = CALLER, "vendor=abc"
            soap.route.send(envelope)
            assert wait_until(lambda: len(soap.target.calls) == 1)
    with Peer(crm) as peer, enriched_route(tmp_path, f"{prefix}-rest", system(peer.url),
                                           BOTH, target=targets[1]) as rest:
        rest.route.send(_traced_hook(f"{prefix}-rest", CALLER, "vendor=abc"))
        assert wait_until(lambda: len(rest.target.calls) == 1)
    assert page.traced == [(None, None)]
    assert _sent(peer) == [(None, None), (None, None)]
    # the event's own context still reaches the target unchanged, as without enrich steps
    assert [target.traceparents for target in targets] == [[CALLER], [CALLER]]


HOSTILE = [
    pytest.param(f"{CALLER}\r\nX-Evil: 1", None, id="header-injection"),
    pytest.param(f"ff-{CALLER_TRACE}-00f067aa0ba902b7-01", None, id="version-ff"),
    pytest.param(f"00-{'0' * 32}-00f067aa0ba902b7-01", None, id="zero-trace-id"),
    pytest.param(f"{CALLER}-extra", None, id="extra-field"),
    pytest.param("00-" + "a" * 600, None, id="overlong"),
    pytest.param(CALLER, "vendor=" + "v" * 600, id="overlong-tracestate"),
    pytest.param(CALLER, "vendor=abc\r\nX-Evil: 1", id="tracestate-injection"),
]


@pytest.mark.parametrize(("traceparent", "tracestate"), HOSTILE)
def test_enrich_tracing_hostile_message_context_is_never_forwarded_to_a_system(
    exporter: InMemorySpanExporter, tmp_path: Path, prefix: str,
    traceparent: str, tracestate: str | None
) -> None:
    with Peer(crm) as peer, enriched_route(
            tmp_path, prefix, system(peer.url),
            [{"system": "crm", "get": GET, "into": "contact"}]) as r:
        r.route.send(_traced_hook(prefix, traceparent, tracestate))
        assert wait_until(lambda: len(r.target.calls) == 1)
        spans = _consumed(exporter)
    enrich, _, _ = _under_consume(spans)
    [(_, _, headers, _)] = peer.requests
    # the request names our enrich span, whatever the message claimed, and nothing else
    assert headers["traceparent"] == _named(enrich) != traceparent
    assert "tracestate" not in headers and "x-evil" not in headers
    valid = traceparent == CALLER  # only a valid parent is continued
    assert (enrich.context.trace_id == int(CALLER_TRACE, 16)) is valid


def test_enrich_tracing_a_configured_header_of_the_same_name_wins(
    exporter: InMemorySpanExporter, tmp_path: Path, prefix: str
) -> None:
    own = f"00-{'1' * 32}-{'2' * 16}-01"
    with Peer(crm) as peer, enriched_route(
            tmp_path, prefix, system(peer.url, headers={"TraceParent": own}),
            [{"system": "crm", "get": GET, "into": "contact"}]) as r:
        r.route.send(_traced_hook(prefix, CALLER, None))
        assert wait_until(lambda: len(r.target.calls) == 1)
    [(_, _, headers, _)] = peer.requests
    assert headers["traceparent"] == own


def test_enrich_tracing_a_caller_that_did_not_sample_is_still_propagated_to_systems(
    tmp_path: Path, prefix: str
) -> None:
    unsampled = f"{CALLER[:-2]}00"  # the caller decided not to record
    with traced(ParentBased(ALWAYS_ON)) as exporter, Peer(crm) as peer, enriched_route(
            tmp_path, prefix, system(peer.url), BOTH) as r:
        r.route.send(_traced_hook(prefix, unsampled, None))
        assert wait_until(lambda: len(r.target.calls) == 1)
    assert exporter.get_finished_spans() == ()
    sent = [traceparent for traceparent, _ in _sent(peer)]
    assert len(sent) == 2 and len(set(sent)) == 2  # one enrich span of ours per phase
    assert all(value is not None and value.startswith(f"00-{CALLER_TRACE}-")
               and value.endswith("-00") and value != unsampled for value in sent)
