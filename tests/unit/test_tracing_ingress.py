"""The ingress's spans on the in-memory broker: a refused request is a receive span that says
why (and its log line names the trace), and a CloudEvent's own trace context becomes a link
while the published envelope carries the publish span, in its body and its AMQP headers."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from starlette.applications import Starlette
from starlette.testclient import TestClient

from adapters.rest import RestInbound
from adapters.rest.inbound_config import RestEndpointConfig
from middleware.adapter import AdapterContext
from middleware.broker.memory import MemoryBroker
from middleware.broker.topology import queue_name, topology_for
from middleware.config.models import BrokerConfig, Config, IngressConfig, StoreConfig
from middleware.ingress import Ingress
from middleware.log import configure_logging
from middleware.stores import open_stores
from tests.tracing_helpers import hexid, traced
from tests.unit.pipeline_helpers import take

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
EVENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def broker(prefix: str) -> Iterator[MemoryBroker]:
    config = Config.model_validate({"routes": [
        {"name": prefix, "bind": ["crm.#"], "target": {"type": "amqp"}}]})
    broker = MemoryBroker(topology_for(config))
    yield broker
    broker.close()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    with traced() as spans:
        yield spans


def _client(broker: MemoryBroker, tmp_path: Path) -> TestClient:
    publisher = broker.publisher()
    publisher.start()
    ingress = Ingress(IngressConfig(port=0))
    stores = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    context = AdapterContext(publisher, BrokerConfig(publish_timeout=2), stores, tmp_path,
                             ingress, messaging=broker)
    RestInbound(RestEndpointConfig.model_validate({
        "type": "rest", "name": "hook", "path": "/hook", "system": "crm",
        "cloudevents": "accept",
        "derive": {"entity": {"value": "customer"}, "action": {"value": "updated"}},
    })).start(context)
    return TestClient(Starlette(routes=ingress.routes))


def test_tracing_a_refused_request_is_a_receive_span_that_says_why(
    exporter: InMemorySpanExporter, broker: MemoryBroker, tmp_path: Path
) -> None:
    client = _client(broker, tmp_path)
    out = io.StringIO()
    configure_logging(json=True, level="info", stream=out)
    try:
        answer = client.post("/hook", content=b"{not json", headers={
            "Content-Type": "application/json",
            "traceparent": f"00-{CALLER_TRACE}-b7ad6b7169203331-01"})
    finally:
        configure_logging(json=True, level="warning")
    assert answer.status_code == 400
    (receive,) = exporter.get_finished_spans()
    attributes = dict(receive.attributes or {})
    assert attributes["silobridge.outcome"] == "refused"
    assert attributes["error.type"] == "bad_json"  # the refusal's reason word, never its detail
    assert attributes["http.response.status_code"] == 400
    assert receive.status.status_code is StatusCode.UNSET  # the sender's fault, not ours
    (line,) = [orjson.loads(line) for line in out.getvalue().splitlines()
               if '"webhook rejected"' in line]
    assert (line["trace_id"], line["span_id"]) == (
        CALLER_TRACE, hexid(receive.context.span_id, 16))


def test_tracing_a_cloudevents_own_context_becomes_a_link_of_its_publish_span(
    exporter: InMemorySpanExporter, broker: MemoryBroker, tmp_path: Path, prefix: str
) -> None:
    client = _client(broker, tmp_path)
    event = {"specversion": "1.0", "id": "evt-1", "source": "crm", "type": "crm.customer.new",
             "data": {"customer_no": "C-1"},
             "traceparent": f"00-{EVENT_TRACE}-00f067aa0ba902b7-01", "tracestate": "crm=1"}
    answer = client.post("/hook", content=orjson.dumps(event),
                         headers={"Content-Type": "application/cloudevents+json"})
    assert answer.status_code == 202, answer.text
    publish = next(s for s in exporter.get_finished_spans() if s.name == "publish")
    (link,) = publish.links
    assert hexid(link.context.trace_id, 32) == EVENT_TRACE
    assert hexid(publish.context.trace_id, 32) != EVENT_TRACE  # no caller header: a new trace
    (delivery,) = take(broker, queue_name(prefix), 1)
    expected = (f"00-{hexid(publish.context.trace_id, 32)}-{hexid(publish.context.span_id, 16)}"
                f"-{int(publish.context.trace_flags):02x}")
    body = orjson.loads(delivery.body)
    assert body["traceparent"] == expected and "tracestate" not in body
    assert delivery.properties.headers == {"traceparent": expected}


@pytest.mark.parametrize(("sent", "kept"), [
    ({"traceparent": "00-" + "a" * 5000, "tracestate": "x=" + "y" * 5000}, {}),
    ({"traceparent": f"00-{EVENT_TRACE}-00f067aa0ba902b7-01", "tracestate": "BAD KEY=1"},
     {"traceparent": f"00-{EVENT_TRACE}-00f067aa0ba902b7-01"}),
    ({"traceparent": f"00-{EVENT_TRACE}-00f067aa0ba902b7-01", "tracestate": "crm=1"},
     {"traceparent": f"00-{EVENT_TRACE}-00f067aa0ba902b7-01", "tracestate": "crm=1"}),
])
def test_tracing_off_a_cloudevents_own_context_goes_on_only_when_valid(
    broker: MemoryBroker, tmp_path: Path, prefix: str, sent: dict[str, str],
    kept: dict[str, str],
) -> None:
    client = _client(broker, tmp_path)
    event = {"specversion": "1.0", "id": "evt-1", "source": "crm", "type": "crm.customer.new",
             "data": {"customer_no": "C-1"}, **sent}
    answer = client.post("/hook", content=orjson.dumps(event),
                         headers={"Content-Type": "application/cloudevents+json"})
    assert answer.status_code == 202, answer.text
    (delivery,) = take(broker, queue_name(prefix), 1)
    body = orjson.loads(delivery.body)
    assert {name: body[name] for name in ("traceparent", "tracestate") if name in body} == kept
    assert delivery.properties.headers == kept
