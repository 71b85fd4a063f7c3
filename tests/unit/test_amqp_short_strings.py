"""Values that become AMQP short strings are refused where envelopes are built (issue 11.1).

pika only refuses a value over 255 bytes while it encodes the frame, on the broker thread; these
tests pin the checks that run earlier, with the field named and nothing of the value lost.
"""

from __future__ import annotations

import pytest

from middleware.broker.properties import Properties
from middleware.broker.shortstr import long_property
from middleware.envelope import Envelope
from middleware.errors import DecodeError, FieldTooLong


def test_envelope_new_refuses_an_id_over_255_bytes_naming_field_and_limit() -> None:
    with pytest.raises(FieldTooLong) as caught:
        Envelope.new(source="crm/x", type="crm.order.created", data={}, id="x" * 300)
    assert caught.value.field == "id"
    assert caught.value.size == 300
    assert "message_id" in str(caught.value) and "255 bytes" in str(caught.value)
    assert not caught.value.retryable


def test_envelope_counts_utf8_bytes_not_characters() -> None:
    # 128 two-byte characters: 128 characters, but 256 bytes on the wire
    with pytest.raises(FieldTooLong) as caught:
        Envelope.new(source="crm/x", type="crm.order.created", data={}, id="é" * 128)
    assert caught.value.size == 256
    # 255 bytes exactly still fits
    assert Envelope.new(source="crm/x", type="crm.order.created", data={}, id="x" * 255)


def test_envelope_refuses_a_long_type_and_correlation_id() -> None:
    with pytest.raises(FieldTooLong) as caught:
        Envelope.new(source="crm/x", type="crm." + "a" * 300 + ".created", data={})
    assert caught.value.field == "type"
    with pytest.raises(FieldTooLong) as caught:
        Envelope.new(source="crm/x", type="crm.order.created", data={},
                     correlationid="c" * 256)
    assert caught.value.field == "correlationid"


def test_envelope_from_json_with_a_long_id_is_a_decode_error_for_the_pipeline() -> None:
    body = Envelope.new(source="crm/x", type="crm.order.created", data={}).to_json(id="y" * 300)
    with pytest.raises(DecodeError):  # the pipeline dead-letters DecodeErrors
        Envelope.from_json(body)


def test_envelope_check_amqp_catches_an_unvalidated_copy() -> None:
    envelope = Envelope.new(source="crm/x", type="crm.order.created", data={}, id="k" * 254)
    copy = envelope.model_copy(update={"id": envelope.id + "#10"})  # no validation on copy
    with pytest.raises(FieldTooLong):
        copy.check_amqp()


def test_long_property_names_the_offending_property_or_header_name() -> None:
    fine = Properties(message_id="m", headers={"x-ok": {"nested": 1}})
    assert long_property("ex", "key", fine) is None
    assert long_property("ex", "k" * 256, fine).field == "routing_key"  # type: ignore[union-attr]
    properties = Properties(message_id="m", app_id="a" * 300)
    assert long_property("ex", "key", properties).field == "app_id"  # type: ignore[union-attr]
    nested = Properties(headers={"x-ok": {"h" * 256: 1}})
    assert long_property("ex", "key", nested).field == "header name"  # type: ignore[union-attr]
