"""Mappings applied to real vendor payloads from ../shared/realworld (skipped when absent).

The payloads were not written for silobridge: a Shopify order (money as text, offsets in
timestamps, line items with optional properties, empty strings) and a Salesforce Change Data
Capture event (arrays of ids, epoch milliseconds, vendor header names).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from middleware.errors import MappingError
from middleware.mapping import Mapping

REALWORLD = Path(os.environ.get("SILOBRIDGE_REALWORLD",
                                Path(__file__).parents[4] / "shared" / "realworld"))
Load = Callable[[str], Mapping]


def vendor_payload(name: str) -> Any:
    path = REALWORLD / "crm-events" / name
    if not path.is_file():
        pytest.skip(f"real-world sample {path} not present")
    return json.loads(path.read_text(encoding="utf-8-sig"))


SHOPIFY_ORDER = """
external_ref: {from: id, transform: [str, {prefix: "SHOP-"}]}
order_date:
  from: created_at
  transform:
    - {parse_datetime: iso8601}
    - {timezone: {to: Europe/Berlin}}
    - {format_datetime: "%Y-%m-%d %H:%M:%S"}
currency_code: currency
total: {from: total_price, transform: [decimal, {round: {digits: 2}}, str]}
ship_to:
  fields:
    name:
      from: [shipping_address.first_name, shipping_address.last_name]
      transform: [{join: " "}]
    street:
      from: [shipping_address.address1, shipping_address.address2]
      transform: [{join: " "}, trim]
    city: shipping_address.city
    country: shipping_address.country_code
lines:
  each: line_items
  fields:
    material: {from: sku, required: true}
    qty: {from: quantity, transform: [int]}
    unit_price: {from: price, transform: [decimal, {round: {digits: 2}}, str]}
    engraving: {when: "size(item.properties) > 0", expr: "item.properties[0].value"}
"""


def test_realworld_shopify_order_maps_to_erp_sales_order(mapping: Load) -> None:
    order = vendor_payload("shopify-order-rest-fixture.json")["order"]
    result = mapping(SHOPIFY_ORDER).apply(order)
    assert result["external_ref"] == "SHOP-450789469"
    assert result["order_date"] == "2008-01-10 17:00:00"  # -05:00 -> CET
    assert result["total"] == "409.94"
    assert result["ship_to"] == {"name": "Bob Norman", "street": "Chestnut Street 92",
                                 "city": "Louisville", "country": "US"}
    assert [line["material"] for line in result["lines"]] == [
        "IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK"]
    assert result["lines"][0] == {"material": "IPOD2008GREEN", "qty": 1, "unit_price": "199.00",
                                  "engraving": "Happy Birthday"}
    assert "engraving" not in result["lines"][1]


def test_realworld_shopify_error_does_not_leak_customer_data(mapping: Load) -> None:
    order = vendor_payload("shopify-order-rest-fixture.json")["order"]
    broken = mapping("email_domain: {from: email, transform: [int]}")
    with pytest.raises(MappingError) as caught:
        broken.apply(order)
    assert order["email"] not in str(caught.value)
    assert caught.value.details == {"mapping": "t", "rule": "email_domain", "path": "email"}


SALESFORCE_CDC = """
account_ref: {from: "data.payload.ChangeEventHeader.recordIds[0]", required: true}
action:
  from: data.payload.ChangeEventHeader.changeType
  map: {CREATE: upsert, UPDATE: upsert, DELETE: delete, UNDELETE: upsert}
changed: {from: data.payload.ChangeEventHeader.changedFields, transform: [{join: ","}]}
committed_at:
  from: data.payload.ChangeEventHeader.commitTimestamp
  transform: [{parse_datetime: epoch_ms}, {format_datetime: iso8601}]
description: data.payload.Description
replay_id: {from: data.event.replayId, transform: [str]}
"""


def test_realworld_salesforce_cdc_event_maps_to_account_change(mapping: Load) -> None:
    event = vendor_payload("salesforce-cdc-AccountChangeEvent-cometd.json")
    result = mapping(SALESFORCE_CDC).apply(event)
    assert result == {
        "account_ref": "0011X00000mzMB4QAM",
        "action": "upsert",
        "changed": "Description,LastModifiedDate",
        "description": "This is a test account.",
        "replay_id": "2633138",
        "committed_at": "2021-03-10T09:08:59+00:00",
    }
