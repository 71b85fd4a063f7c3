"""Every target carries the trace context on: REST and SOAP as HTTP headers, AMQP in the
envelope and its headers; the context is the worker's deliver span, so the peer's own spans
hang under the call that reached it. A context that is not valid W3C is never sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from middleware.envelope import Envelope
from tests.tracing_helpers import hexid, traced
from tests.unit.pipeline_helpers import take, wait_until
from tests.unit.targets.test_target_contract import (
    ORDER,
    AmqpKind,
    Bench,
    Kind,
    RestKind,
    SoapKind,
    contract_route,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PUBLISH = "00f067aa0ba902b7"


@pytest.fixture(params=[RestKind(), SoapKind(), AmqpKind()], ids=["rest", "soap", "amqp"])
def kind(request: pytest.FixtureRequest) -> Kind:
    chosen: Kind = request.param
    return chosen


def _send(bench: Bench, traceparent: str | None, tracestate: str | None) -> Envelope:
    envelope = Envelope.new(source="crm/test", type=f"{bench.prefix}.customer.updated",
                            subject="C-1", data=dict(ORDER), traceparent=traceparent,
                            tracestate=tracestate)
    bench.route.send(envelope)
    assert wait_until(lambda: bench.route.stores.idempotency.seen(bench.prefix, envelope.id))
    return envelope


def _received(bench: Bench) -> list[dict[str, Any]]:
    """The trace headers (and for AMQP the envelope's attributes) of what the peer got."""
    if bench.peer.requests:
        return [{name.lower(): value for name, value in got.headers.items()
                 if name.lower() in ("traceparent", "tracestate")}
                for got in bench.peer.requests]
    queue = f"{bench.prefix}.out"
    found = []
    for got in take(bench.route.broker, queue, bench.route.broker.depth(queue) or 0):
        body = orjson.loads(got.body)
        found.append({**got.headers, "body": (body.get("traceparent"), body.get("tracestate"))})
    return found


def test_target_sends_the_deliver_span_as_its_trace_context(
    kind: Kind, tmp_path: Path, prefix: str
) -> None:
    with traced() as exporter, contract_route(kind, tmp_path, prefix, "accept") as bench:
        _send(bench, f"00-{TRACE}-{PUBLISH}-01", "vendor=opaque")
        assert wait_until(lambda: any(s.name == "consume"
                                      for s in exporter.get_finished_spans()))
        (deliver,) = [s for s in exporter.get_finished_spans() if s.name == "deliver"]
        received = _received(bench)
    expected = f"00-{TRACE}-{hexid(deliver.context.span_id, 16)}-01"
    headers = {"traceparent": expected, "tracestate": "vendor=opaque"}
    if isinstance(kind, AmqpKind):
        headers["body"] = (expected, "vendor=opaque")
    assert received == [headers]


def test_target_never_sends_a_context_that_is_not_valid(
    kind: Kind, tmp_path: Path, prefix: str
) -> None:
    # tracing off: the envelope's own values (a CloudEvent's attributes) go on only if valid
    with contract_route(kind, tmp_path, prefix, "accept") as bench:
        _send(bench, "00-" + "a" * 5000, "x=" + "y" * 5000)
        received = _received(bench)
    assert len(received) == 1
    assert "traceparent" not in received[0] and "tracestate" not in received[0]


def test_rest_target_configured_trace_header_wins_whatever_its_case(
    tmp_path: Path, prefix: str
) -> None:
    configured = f"00-{TRACE}-{PUBLISH}-01"
    kind = RestKind({"TraceParent": configured})
    with traced(), contract_route(kind, tmp_path, prefix, "accept") as bench:
        _send(bench, f"00-{TRACE}-{'1' * 16}-01", None)
        (got,) = bench.peer.requests
    # one field, the configured one (the config may normalise the name's case)
    assert len([n for n in got.names if n.lower() == "traceparent"]) == 1
    assert {k.lower(): v for k, v in got.headers.items()}["traceparent"] == configured, got
