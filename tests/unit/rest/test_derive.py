"""Event derivation over real vendor payloads (Salesforce CDC, Dynamics 365, Shopify, HubSpot)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from adapters._derive import DerivationError, Derive, compile_derive, parse_time, resolve_path

REALWORLD = Path(__file__).resolve().parents[4] / "shared" / "realworld" / "crm-events"


def _sample(name: str) -> Any:
    path = REALWORLD / name
    if not path.is_file():
        pytest.skip(f"real-world sample {path} not present")
    return json.loads(path.read_bytes())


def test_derive_salesforce_cdc_maps_change_type_and_record_id() -> None:
    payload = _sample("salesforce-cdc-AccountChangeEvent-cometd.json")
    deriver = compile_derive(Derive.model_validate({
        "entity": {"path": "data.payload.ChangeEventHeader.entityName"},
        "action": {"path": "data.payload.ChangeEventHeader.changeType",
                   "map": {"CREATE": "created", "UPDATE": "updated"}},
        "subject": {"path": "data.payload.ChangeEventHeader.recordIds[0]"},
        "time": {"path": "data.payload.ChangeEventHeader.commitTimestamp"},
        "id": {"cel": "string(payload.data.event.replayId)"},
    }))
    derived = deriver.derive(payload, {})
    assert (derived.entity, derived.action) == ("account", "updated")
    assert derived.subject == "0011X00000mzMB4QAM"
    assert derived.time == datetime(2021, 3, 10, 9, 8, 59, tzinfo=UTC)
    assert derived.id == "2633138"


def test_derive_dynamics_dotnet_date_and_headers() -> None:
    payload = _sample("dynamics365-webhook-RemoteExecutionContext-contact-update.json")
    deriver = compile_derive(Derive.model_validate({
        "entity": {"path": "PrimaryEntityName"},
        "action": {"path": "MessageName", "map": {"Update": "updated", "Create": "created"}},
        "subject": {"path": "PrimaryEntityId"},
        "time": {"path": "OperationCreatedOn"},
        "id": {"header": "X-Request-Id", "default": "none"},
    }))
    derived = deriver.derive(payload, {"x-request-id": "r-1"})
    assert (derived.entity, derived.action) == ("contact", "updated")
    assert derived.subject == "6d81597f-0f9f-e711-8122-000d3aa2331c"
    assert derived.time == datetime.fromtimestamp(1506409448, UTC)
    assert derived.id == "r-1"


def test_derive_hubspot_pattern_splits_subscription_type() -> None:
    event = {"eventId": 1, "subscriptionType": "contact.creation", "objectId": 123,
             "occurredAt": 1564113600000}
    deriver = compile_derive(Derive.model_validate({
        "entity": {"path": "subscriptionType", "pattern": r"^([^.]+)\."},
        "action": {"path": "subscriptionType", "pattern": r"\.(\w+)$",
                   "map": {"creation": "created", "deletion": "deleted"}},
        "subject": {"path": "objectId"},
        "time": {"path": "occurredAt"},
    }))
    derived = deriver.derive(event, {})
    assert (derived.entity, derived.action, derived.subject) == ("contact", "created", "123")
    assert derived.time == datetime(2019, 7, 26, 4, 0, tzinfo=UTC)


def test_derive_header_topic_becomes_routing_key_word() -> None:
    deriver = compile_derive(Derive.model_validate({
        "entity": {"value": "Order"}, "action": {"header": "X-Shopify-Topic"},
    }))
    derived = deriver.derive({}, {"x-shopify-topic": "orders/create"})
    assert (derived.entity, derived.action) == ("order", "orders_create")


def test_derive_missing_value_names_the_field() -> None:
    deriver = compile_derive(Derive.model_validate({
        "entity": {"value": "customer"}, "action": {"path": "op"},
    }))
    with pytest.raises(DerivationError) as caught:
        deriver.derive({"other": 1}, {})
    assert caught.value.field == "action"


def test_derive_unmapped_value_is_an_error_unless_default() -> None:
    rules: dict[str, Any] = {"entity": {"value": "customer"},
                             "action": {"path": "op", "map": {"U": "updated"}}}
    with pytest.raises(DerivationError, match="mapped values"):
        compile_derive(Derive.model_validate(rules)).derive({"op": "X"}, {})
    rules["action"]["default"] = "changed"
    assert compile_derive(Derive.model_validate(rules)).derive({"op": "X"}, {}).action == "changed"


def test_derive_bad_time_is_an_error() -> None:
    deriver = compile_derive(Derive.model_validate({
        "entity": {"value": "a"}, "action": {"value": "b"}, "time": {"path": "t"},
    }))
    with pytest.raises(DerivationError) as caught:
        deriver.derive({"t": "yesterday"}, {})
    assert caught.value.field == "time"


def test_value_rule_rejects_two_sources_and_bad_cel() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        Derive.model_validate({"entity": {"value": "a", "path": "b"}, "action": {"value": "c"}})
    with pytest.raises(ValidationError, match="invalid CEL"):
        Derive.model_validate({"entity": {"cel": "payload.(("}, "action": {"value": "c"}})


def test_resolve_path_handles_lists_and_absence() -> None:
    data = {"a": [{"b": 1}, {"b": 2}]}
    assert resolve_path(data, "a.1.b") == 2
    assert resolve_path(data, "a[0].b") == 1
    assert resolve_path(data, "a.5.b") is None
    assert resolve_path(data, "a.x") is None


def test_parse_time_formats() -> None:
    expected = datetime(2021, 3, 10, 9, 8, 59, tzinfo=UTC)
    assert parse_time("2021-03-10T09:08:59Z") == expected
    assert parse_time("1615367339") == expected
    assert parse_time("1615367339000") == expected
    assert parse_time("/Date(1615367339000)/") == expected
    assert parse_time("2021-03-10T09:08:59") == expected
