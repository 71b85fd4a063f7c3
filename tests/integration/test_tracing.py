"""One trace per business event, on the real ingress, the real RabbitMQ and a loopback target.

A signed-less webhook with the caller's ``traceparent`` becomes, in the SDK's in-memory
exporter, one trace: receive (child of the caller's span) -> publish -> consume -> map ->
deliver (503) -> retry, and, after the retry tier's delay, consume -> map -> deliver (200).
The target receives the deliver span's context as headers; the log lines of the message carry
its ids. Hostile ``traceparent`` values, 50 at once, are ignored: each request starts a trace
of its own, is accepted, and nothing of the value comes back or travels on. The SOAP ingress
continues a caller's trace the same way.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.requests import Request
from starlette.responses import Response

from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from middleware.log import configure_logging
from tests.integration.helpers import drain, wait_until
from tests.integration.rest_helpers import Peer, catch_all_route, endpoint, json_response
from tests.integration.soap_helpers import realworld
from tests.tracing_helpers import hexid, parent_of, traced

pytestmark = pytest.mark.integration

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
MAPPING = """\
mapping: trace-customer-to-erp
fields:
  account_no: customer_no
  name: name
"""


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with traced() as spans:
        yield spans


class FlakyErp:
    """The target: answers 503 to its first call, 201 afterwards; keeps every request's
    trace headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    async def __call__(self, request: Request, body: bytes) -> Response:
        self.headers.append({name: request.headers[name] for name in
                             ("traceparent", "tracestate") if name in request.headers})
        if len(self.headers) == 1:
            return json_response({"error": "busy"}, status=503)
        return json_response({"id": "ERP-1"}, status=201)


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [span for span in spans if span.name == name]
    return span


def _under(spans: list[ReadableSpan], parent: ReadableSpan) -> list[str]:
    return [span.name for span in sorted(spans, key=lambda s: s.start_time or 0)
            if parent_of(span) == parent.context.span_id]


def test_tracing_one_trace_from_the_webhook_to_the_target_call_across_a_retry(
    exporter: InMemorySpanExporter, prefix: str, tmp_path: Path,
    make_config: Callable[..., LoadedConfig],
) -> None:
    (tmp_path / "map.yaml").write_text(MAPPING)
    erp = FlakyErp()
    out = io.StringIO()
    configure_logging(json=True, level="info", stream=out)
    try:
        with Peer(erp) as peer:
            route = {"name": f"{prefix}-erp", "bind": [f"{prefix}.customer.*"],
                     "mapping": "map.yaml", "target": {"type": "rest",
                                                       "url": f"{peer.url}/erp/accounts"}}
            daemon = Daemon(make_config([route], inbound=[endpoint(prefix, "hook")]), Role.ALL)
            daemon.start()
            try:
                assert daemon.ingress is not None
                answer = httpx.post(
                    f"http://127.0.0.1:{daemon.ingress.port}/hooks/{prefix}/hook",
                    json={"customer_no": "C-1", "name": "Ada"},
                    headers={"traceparent": CALLER, "tracestate": "caller=kept"})
                assert answer.status_code == 202, answer.text
                assert wait_until(lambda: sum(s.name == "consume" for s in
                                              exporter.get_finished_spans()) == 2, 20)
            finally:
                daemon.stop()
    finally:
        configure_logging(json=True, level="warning")
    spans = list(exporter.get_finished_spans())
    # one trace, the caller's: continued, not replaced
    assert {hexid(span.context.trace_id, 32) for span in spans} == {CALLER_TRACE}
    receive, publish = _one(spans, "receive"), _one(spans, "publish")
    assert hexid(parent_of(receive) or 0, 16) == CALLER_SPAN
    assert (receive.attributes or {})["silobridge.caller_trace"] == "continued"
    assert (receive.attributes or {})["http.response.status_code"] == 202
    assert _under(spans, receive) == ["publish"]
    assert _under(spans, publish) == ["consume", "consume"]
    first, second = (s for s in sorted(spans, key=lambda s: s.start_time or 0)
                     if s.name == "consume")
    assert _under(spans, first) == ["map", "deliver", "retry"]
    assert _under(spans, second) == ["map", "deliver"]
    assert [(s.attributes or {})["silobridge.outcome"] for s in (first, second)] == [
        "retried", "delivered"]
    assert (_one(spans, "retry").attributes or {})["error.type"] == "DeliveryError"
    # the target received the context of the deliver span that called it, tracestate kept
    delivers = [s for s in sorted(spans, key=lambda s: s.start_time or 0) if s.name == "deliver"]
    assert erp.headers == [
        {"traceparent": f"00-{CALLER_TRACE}-{hexid(d.context.span_id, 16)}-01",
         "tracestate": "caller=kept"} for d in delivers]
    # no payload value in any span
    assert not [s.name for s in spans if "Ada" in repr(dict(s.attributes or {}))]
    # the worker's log line about the retry names the trace and the attempt's span
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    (retry,) = [line for line in lines if line["event"] == "retry scheduled"]
    assert (retry["trace_id"], retry["span_id"]) == (CALLER_TRACE,
                                                    hexid(first.context.span_id, 16))


HOSTILE = [
    "00-" + "f" * 4000,                                     # long
    f"ff-{CALLER_TRACE}-{CALLER_SPAN}-01",                  # version ff is invalid
    f"01-{CALLER_TRACE[:-2]}zz-{CALLER_SPAN}-01",           # not hex
    f"00-{CALLER_TRACE}-{CALLER_SPAN}-01-extra",            # version 00 with more fields
    f"00-{'0' * 32}-{CALLER_SPAN}-01",                      # all-zero trace id
    CALLER.upper(),                                         # upper-case hex
    "-" * 300 + " tail",                                    # junk
]


def test_tracing_hostile_traceparents_fifty_at_once_start_new_traces_and_are_not_echoed(
    exporter: InMemorySpanExporter, amqp_url: str, prefix: str,
    make_config: Callable[..., LoadedConfig],
) -> None:
    daemon = Daemon(make_config([catch_all_route(prefix)],
                                inbound=[endpoint(prefix, "hook")]), Role.INGRESS)
    daemon.start()
    try:
        assert daemon.ingress is not None
        url = f"http://127.0.0.1:{daemon.ingress.port}/hooks/{prefix}/hook"

        def send(n: int) -> httpx.Response:
            value = HOSTILE[n % len(HOSTILE)]
            headers = [("traceparent", value), ("tracestate", "x=" + "y" * 2000)]
            if n % 10 == 9:  # two traceparent fields: ambiguous, so neither is trusted
                headers = [("traceparent", CALLER), ("traceparent", CALLER)]
            return httpx.post(url, json={"customer_no": f"C-{n}"}, headers=headers, timeout=20)

        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(send, range(50)))
    finally:
        daemon.stop()
    assert [answer.status_code for answer in answers] == [202] * 50
    for answer in answers:  # nothing of the values comes back
        assert "traceparent" not in answer.headers
        assert "f" * 40 not in answer.text and CALLER_TRACE not in answer.text
    spans = list(exporter.get_finished_spans())
    receives = [span for span in spans if span.name == "receive"]
    assert len(receives) == 50
    assert all(span.parent is None for span in receives)  # each a new trace of its own
    assert {(span.attributes or {})["silobridge.caller_trace"] for span in receives} == {
        "ignored"}
    assert len({span.context.trace_id for span in receives}) == 50
    assert CALLER_TRACE not in {hexid(span.context.trace_id, 32) for span in spans}
    # what was published carries the publish span's context, in the body and the AMQP headers
    publishes = {hexid(span.context.span_id, 16) for span in spans if span.name == "publish"}
    messages = drain(amqp_url, queue_name(f"{prefix}-r"))
    assert len(messages) == 50
    sent_on = set()
    for properties, body in messages:
        traceparent = orjson.loads(body)["traceparent"]
        assert (properties.headers or {})["traceparent"] == traceparent
        assert "tracestate" not in (properties.headers or {})  # the 2 KB one was dropped
        sent_on.add(traceparent.split("-")[2])
    assert sent_on == publishes


def test_tracing_soap_ingress_continues_the_callers_trace(
    exporter: InMemorySpanExporter, amqp_url: str, prefix: str,
    make_config: Callable[..., LoadedConfig],
) -> None:
    sample = realworld("salesforce-outbound/aspnet-OutboundMessage1.xml").read_bytes()
    section = {"type": "salesforce-om", "name": f"{prefix}-sf", "path": f"/soap/{prefix}/sf",
               "organization_id": "0123456789ABCDENNN", "system": prefix, "entity": "lead",
               "max_body_bytes": 65536, "max_depth": 32}
    daemon = Daemon(make_config([catch_all_route(prefix)], inbound=[section]), Role.INGRESS)
    daemon.start()
    try:
        assert daemon.ingress is not None
        answer = httpx.post(f"http://127.0.0.1:{daemon.ingress.port}/soap/{prefix}/sf",
                            content=sample, timeout=10,
                            headers={"Content-Type": "text/xml; charset=utf-8",
                                     "traceparent": CALLER})
    finally:
        daemon.stop()
    assert answer.status_code == 200, answer.text
    spans = list(exporter.get_finished_spans())
    receive = _one(spans, "receive")
    assert hexid(parent_of(receive) or 0, 16) == CALLER_SPAN
    assert (receive.attributes or {})["silobridge.adapter"] == "soap"
    publishes = [span for span in spans if span.name == "publish"]
    assert len(publishes) == 3 and {parent_of(span) for span in publishes} == {
        receive.context.span_id}
    messages = drain(amqp_url, queue_name(f"{prefix}-r"))
    assert sorted(orjson.loads(body)["traceparent"] for _, body in messages) == sorted(
        f"00-{CALLER_TRACE}-{hexid(span.context.span_id, 16)}-01" for span in publishes)
