"""The canonical envelope: CloudEvents 1.0 structured JSON, checked against the official SDK."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from middleware.envelope import CONTENT_TYPE, Envelope
from middleware.errors import DecodeError


def sample() -> Envelope:
    return Envelope.new(
        source="crm/salesforce", type="crm.customer.updated", subject="C-1001",
        id="evt-1", time=datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
        data={"customer_no": "C-1001", "name": "Müller GmbH", "lines": [1, 2]},
        partitionkey="C-1001",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )


def test_envelope_round_trips_through_the_official_cloudevents_sdk() -> None:
    envelope = sample()
    event = JSONFormat().read(CloudEvent, envelope.to_json())
    attributes = event.get_attributes()
    assert attributes["id"] == "evt-1"
    assert attributes["type"] == "crm.customer.updated"
    assert attributes["subject"] == "C-1001"
    assert attributes["partitionkey"] == "C-1001"
    assert attributes["time"] == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert event.get_data() == envelope.data
    # and what the SDK writes, we read back to the same envelope
    assert Envelope.from_json(JSONFormat().write(event)) == envelope


def test_envelope_new_fills_id_time_and_correlation() -> None:
    envelope = Envelope.new(source="crm/x", type="crm.order.created", data={})
    assert envelope.id and envelope.correlationid == envelope.id
    assert envelope.time is not None and envelope.time.tzinfo is not None
    assert envelope.hops == 0


def test_envelope_json_leaves_out_absent_optional_attributes() -> None:
    body = Envelope(id="1", source="s", type="a.b.c").to_json()
    assert b"dataschema" not in body and b"causationid" not in body


def test_envelope_amqp_properties_mirror_key_attributes() -> None:
    props = sample().amqp_properties()
    assert props == {
        "message_id": "evt-1", "correlation_id": "evt-1",
        "timestamp": int(datetime(2026, 3, 29, 1, 30, tzinfo=UTC).timestamp()),
        "type": "crm.customer.updated", "content_type": CONTENT_TYPE,
    }


def test_envelope_keeps_unknown_extensions() -> None:
    body = b'{"specversion":"1.0","id":"1","source":"s","type":"a.b.c","tenant":"acme"}'
    assert Envelope.from_json(body).model_extra == {"tenant": "acme"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not JSON"),
        (b"[1, 2]", "body is JSON list, expected a CloudEvent object"),
        (b'{"id": "1", "source": "s"}', "missing attribute(s) type"),
        (b'{"id": "1", "source": "s", "type": "t", "specversion": "0.3"}',
         "invalid CloudEvent attribute specversion"),
        (b'{"id": "1", "source": "s", "type": "t", "time": "yesterday"}',
         "invalid CloudEvent attribute time"),
        (b'{"id": "1", "source": "s", "type": "t", "Bad_Name": 1}', "extension attribute"),
    ],
)
def test_envelope_from_json_rejects_non_cloudevents_precisely(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=r".*") as caught:
        Envelope.from_json(body)
    assert message in str(caught.value)
    assert caught.value.stage == "decode" and not caught.value.retryable
