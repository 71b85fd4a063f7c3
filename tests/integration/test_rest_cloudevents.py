"""CloudEvents over HTTP, checked with the official ``cloudevents`` SDK on both ends.

The SDK produces the events a sender would send, in binary and in structured mode; the ingress
publishes them with their own attributes; a route maps the data and the REST target sends it on
as a CloudEvent in binary or structured mode, which the SDK reads back at the receiving peer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cloudevents.core.bindings.http import (
    HTTPMessage,
    from_http_event,
    to_binary_event,
    to_structured_event,
)
from cloudevents.core.v1.event import CloudEvent
from starlette.requests import Request
from starlette.responses import Response

from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.integration.helpers import drain, wait_until
from tests.integration.rest_helpers import Peer, catch_all_route, json_response

pytestmark = pytest.mark.integration

MAPPING = """\
mapping: ce-customer-to-erp
fields:
  account_no: customer_no
  name: {from: name, transform: [upper]}
"""


def _event(prefix: str, n: int) -> CloudEvent:
    return CloudEvent(attributes={
        "id": f"evt-{n}", "source": "https://crm.example.com/tenants/7",
        "type": f"{prefix}.customer.updated", "subject": f"C-{n}",
        "time": datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC), "datacontenttype": "application/json",
        "tenant": "t7",
    }, data={"customer_no": f"C-{n}", "name": f"Ünïcode {n}"})


def _send(url: str, event: CloudEvent, mode: str) -> httpx.Response:
    message = to_binary_event(event) if mode == "binary" else to_structured_event(event)
    return httpx.post(url, content=message.body, headers=message.headers)


def _endpoint(prefix: str) -> dict[str, Any]:
    return {"type": "rest", "name": f"{prefix}-ce", "path": f"/hooks/{prefix}/ce",
            "system": prefix, "cloudevents": "accept"}


@pytest.fixture
def ingress(
    prefix: str, make_config: Callable[..., LoadedConfig]
) -> Iterator[str]:
    daemon = Daemon(make_config([catch_all_route(prefix)], inbound=[_endpoint(prefix)]),
                    Role.INGRESS)
    daemon.start()
    assert daemon.ingress is not None
    yield f"http://127.0.0.1:{daemon.ingress.port}/hooks/{prefix}/ce"
    daemon.stop()


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_ingress_publishes_a_cloudevent_with_its_own_attributes(
    amqp_url: str, prefix: str, ingress: str, mode: str
) -> None:
    response = _send(ingress, _event(prefix, 1), mode)
    assert response.status_code == 202, response.text
    [(properties, body)] = drain(amqp_url, queue_name(f"{prefix}-r"))
    # the published envelope is the sender's event, readable by the SDK as it is
    published = from_http_event(HTTPMessage(
        {"content-type": "application/cloudevents+json"}, body))
    assert published.get_id() == "evt-1"
    assert published.get_source() == "https://crm.example.com/tenants/7"
    assert published.get_type() == f"{prefix}.customer.updated"
    assert published.get_subject() == "C-1"
    assert published.get_time() == datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    assert published.get_extension("tenant") == "t7"
    assert published.get_data() == {"customer_no": "C-1", "name": "Ünïcode 1"}
    assert properties.message_id == "evt-1" and properties.type == f"{prefix}.customer.updated"


def test_ingress_answers_a_resent_cloudevent_without_publishing_it_again(
    amqp_url: str, prefix: str, ingress: str
) -> None:
    assert _send(ingress, _event(prefix, 2), "binary").status_code == 202
    again = _send(ingress, _event(prefix, 2), "structured")
    assert again.status_code == 200, again.text
    assert len(drain(amqp_url, queue_name(f"{prefix}-r"))) == 1


@pytest.mark.parametrize(("headers", "body", "status", "path"), [
    ({"ce-specversion": "1.0", "ce-id": "x", "ce-type": "a.b.c",
      "Content-Type": "application/json"}, b"{}", 400, "source"),
    ({"ce-specversion": "0.3", "ce-id": "x", "ce-source": "s", "ce-type": "a.b.c",
      "Content-Type": "application/json"}, b"{}", 400, "specversion"),
    ({"Content-Type": "application/cloudevents+json"},
     orjson.dumps({"specversion": "1.0", "id": "x", "source": "s", "type": "a.b.c",
                   "Bad-Name": 1}), 400, "Bad-Name"),
    ({"Content-Type": "application/cloudevents+json"}, b"[1, 2]", 400, "<body>"),
    ({"Content-Type": "application/json"}, b'{"plain": true}', 415, None),
])
def test_ingress_refuses_what_is_not_a_cloudevent_saying_what_is_wrong(
    amqp_url: str, prefix: str, ingress: str, headers: dict[str, str], body: bytes,
    status: int, path: str | None,
) -> None:
    response = httpx.post(ingress, content=body, headers=headers)
    assert response.status_code == status, response.text
    if path is not None:
        assert path in response.text
    assert drain(amqp_url, queue_name(f"{prefix}-r")) == []


class Receiver:
    """The downstream system: records each request and answers 200."""

    def __init__(self) -> None:
        self.events: list[CloudEvent] = []
        self.content_types: list[str] = []

    async def __call__(self, request: Request, body: bytes) -> Response:
        self.content_types.append(request.headers.get("content-type", ""))
        self.events.append(from_http_event(HTTPMessage(dict(request.headers), body)))
        return json_response({"ok": True})


@pytest.mark.parametrize("inbound", ["binary", "structured"])
@pytest.mark.parametrize("outbound", ["binary", "structured"])
def test_cloudevents_in_and_out_through_a_route(
    prefix: str, tmp_path: Path, make_config: Callable[..., LoadedConfig],
    inbound: str, outbound: str,
) -> None:
    (tmp_path / "ce.yaml").write_text(MAPPING)
    receiver = Receiver()
    with Peer(receiver) as peer:
        route = {"name": f"{prefix}-out", "bind": [f"{prefix}.customer.*"],
                 "mapping": "ce.yaml",
                 "target": {"type": "rest", "url": f"{peer.url}/erp/accounts",
                            "cloudevents": outbound}}
        daemon = Daemon(make_config([route], inbound=[_endpoint(prefix)]), Role.ALL)
        daemon.start()
        try:
            assert daemon.ingress is not None
            url = f"http://127.0.0.1:{daemon.ingress.port}/hooks/{prefix}/ce"
            assert _send(url, _event(prefix, 3), inbound).status_code == 202
            assert wait_until(lambda: len(receiver.events) == 1, 20)
        finally:
            daemon.stop()
    [sent] = receiver.events
    expected_type = ("application/cloudevents+json" if outbound == "structured"
                     else "application/json")
    assert receiver.content_types[0].startswith(expected_type)
    assert sent.get_id() == "evt-3"  # the idempotency key downstream
    assert sent.get_source() == "https://crm.example.com/tenants/7"
    assert sent.get_type() == f"{prefix}.customer.updated"
    assert sent.get_subject() == "C-3"
    assert sent.get_time() == datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    assert sent.get_extension("causationid") == "evt-3"
    assert sent.get_extension("tenant") == "t7"
    assert sent.get_data() == {"account_no": "C-3", "name": "ÜNÏCODE 3"}
