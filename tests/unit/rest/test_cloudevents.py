"""CloudEvents HTTP binding in and out, checked against the official SDK (no network)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event, to_binary_event
from cloudevents.core.v1.event import CloudEvent

from adapters.rest.cloudevents import (
    STRUCTURED,
    binary_headers,
    from_request,
    is_cloudevent,
    structured_body,
)
from middleware.envelope import Envelope
from middleware.errors import Refused

SOURCE = Envelope.new(source="crm/hub spot", type="crm.customer.updated", subject="Zoë 1",
                      id="e-1", time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                      data={"x": 1}, tenant="t7", urgent=True)


def test_cloudevents_binary_headers_are_read_back_by_the_sdk() -> None:
    headers = binary_headers(SOURCE, {"mapped": "ü"})
    event = from_http_event(HTTPMessage(headers, orjson.dumps({"mapped": "ü"})))
    assert (event.get_id(), event.get_source(), event.get_subject()) == (
        "e-1", "crm/hub spot", "Zoë 1")
    assert event.get_time() == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert event.get_extension("causationid") == "e-1"
    assert event.get_extension("urgent") == "true"
    assert event.get_data() == {"mapped": "ü"}
    assert all(value.isascii() and " " not in value for value in headers.values())


def test_cloudevents_structured_body_is_read_back_by_the_sdk() -> None:
    body = structured_body(SOURCE, [1, 2])
    event = from_http_event(HTTPMessage({"content-type": STRUCTURED}, body))
    assert event.get_id() == "e-1" and event.get_data() == [1, 2]
    assert event.get_extension("hops") == 1 and event.get_extension("tenant") == "t7"


def test_cloudevents_binary_request_from_the_sdk_keeps_percent_encoded_values() -> None:
    sdk = CloudEvent(attributes={"id": "42", "source": "/crm", "type": "crm.customer.created",
                                 "subject": "Müller & Söhne", "datacontenttype":
                                 "application/json"}, data={"a": 1})
    message = to_binary_event(sdk)
    headers = {name.lower(): value for name, value in message.headers.items()}
    assert is_cloudevent("application/json", headers)
    envelope = from_request("application/json", headers, orjson.loads(message.body))
    assert envelope.subject == "Müller & Söhne" and envelope.id == "42"
    assert envelope.correlationid == "42" and envelope.data == {"a": 1}


@pytest.mark.parametrize(("content_type", "headers", "document", "path"), [
    (STRUCTURED, {}, {"specversion": "1.0", "source": "s", "type": "t"}, "id"),
    (STRUCTURED, {}, {"specversion": "1.0", "id": "", "source": "s", "type": "t"}, "id"),
    (STRUCTURED, {}, {"specversion": "1.0", "id": "1", "source": "s", "type": "t",
                      "data_base64": "AA=="}, "data_base64"),
    (STRUCTURED, {}, {"specversion": "1.0", "id": "1", "source": "s", "type": "t",
                      "hops": "many"}, "hops"),
    ("application/json", {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s"}, {}, "type"),
])
def test_cloudevents_invalid_events_are_refused_naming_the_attribute(
    content_type: str, headers: dict[str, str], document: object, path: str
) -> None:
    with pytest.raises(Refused) as caught:
        from_request(content_type, headers, document)
    assert caught.value.status == 400 and caught.value.extra["path"] == path


def test_cloudevents_plain_json_is_not_taken_for_an_event() -> None:
    assert not is_cloudevent("application/json", {"x-request-id": "1"})
